//! A run's supervisor: the PPO actors are spawned linked to it, so the end of any of them (a
//! panic in a handler, a kill, a stop nobody asked for) is known at once and by the actor's
//! name, even while no request waits on that actor. The run watches [`Supervised::failed`]
//! and ends with an error naming the actor.

use anyhow::anyhow;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The supervisor of one run's actors, and what it saw.
pub struct Supervised {
    supervisor: ActorRef<()>,
    /// The actors' names, by id, for the reports.
    names: Arc<Mutex<HashMap<ActorId, &'static str>>>,
    /// Set before the run stops its actors: their ends are then not failures.
    stopping: Arc<AtomicBool>,
    failed: watch::Receiver<Option<String>>,
}

impl Supervised {
    pub async fn start() -> anyhow::Result<Supervised> {
        let names = Arc::new(Mutex::new(HashMap::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (report, failed) = watch::channel(None);
        let state = SupervisorState {
            names: names.clone(),
            stopping: stopping.clone(),
            report,
        };
        let (supervisor, _) = Actor::spawn(None, Supervisor, state)
            .await
            .map_err(|e| anyhow!("starting the supervisor: {e}"))?;
        Ok(Supervised {
            supervisor,
            names,
            stopping,
            failed,
        })
    }

    /// Start `actor`, linked to the supervisor, as `name`.
    pub async fn spawn<A: Actor>(
        &self,
        name: &'static str,
        actor: A,
        args: A::Arguments,
    ) -> anyhow::Result<ActorRef<A::Msg>> {
        let cell: ActorCell = self.supervisor.get_cell();
        let (actor, _) = Actor::spawn_linked(None, actor, args, cell)
            .await
            .map_err(crate::system::worker::spawn_error)?;
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(actor.get_id(), name);
        Ok(actor)
    }

    /// The first actor that failed or stopped on its own: waits until one does.
    pub async fn failure(&self) -> String {
        let mut failed = self.failed.clone();
        let report = match failed.wait_for(Option::is_some).await {
            Ok(report) => report.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        };
        report
    }

    /// From now on the actors' ends are the run's own doing; stops the supervisor.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.supervisor.stop(None);
    }
}

struct Supervisor;

struct SupervisorState {
    names: Arc<Mutex<HashMap<ActorId, &'static str>>>,
    stopping: Arc<AtomicBool>,
    report: watch::Sender<Option<String>>,
}

impl Actor for Supervisor {
    type Msg = ();
    type State = SupervisorState;
    type Arguments = SupervisorState;

    async fn pre_start(
        &self,
        _: ActorRef<()>,
        state: SupervisorState,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, what) = match event {
            SupervisionEvent::ActorFailed(cell, e) => (cell, format!("failed: {e}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.map_or(String::new(), |r| format!(" ({r})"));
                (cell, format!("stopped unasked{reason}"))
            }
            _ => return Ok(()),
        };
        if state.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let names = state.names.lock().unwrap_or_else(|e| e.into_inner());
        let name = names.get(&cell.get_id()).copied().unwrap_or("an actor");
        let report = format!("the {name} actor {what}");
        tracing::error!("{report}");
        state.report.send_if_modified(|first| {
            // Keep the first: later ends may only be its consequences.
            first.get_or_insert(report);
            true
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Idle;

    impl Actor for Idle {
        type Msg = ();
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_actor_that_ends_unasked_is_reported_by_name() {
        let supervised = Supervised::start().await.unwrap();
        let a = supervised.spawn("generator.1", Idle, ()).await.unwrap();
        let _b = supervised.spawn("reward", Idle, ()).await.unwrap();
        a.kill();
        let report = tokio::time::timeout(Duration::from_secs(10), supervised.failure())
            .await
            .expect("the kill is reported");
        assert!(
            report.starts_with("the generator.1 actor stopped unasked"),
            "{report}"
        );
        supervised.stopping();
    }

    #[tokio::test]
    async fn ends_the_run_asked_for_are_not_failures() {
        let supervised = Supervised::start().await.unwrap();
        let a = supervised.spawn("learner", Idle, ()).await.unwrap();
        supervised.stopping();
        a.stop(None);
        let quiet = tokio::time::timeout(Duration::from_millis(300), supervised.failure()).await;
        assert!(quiet.is_err(), "reported {quiet:?}");
    }
}
