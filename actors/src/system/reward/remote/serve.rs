//! The node's side: the reward actor the trainer calls, and the session that keeps the node
//! in the trainer's cluster until either side goes away.

use super::cluster::{self, Roster, Side};
use super::wire::{self, RewardNodeMsg};
use crate::system::reward::contract::Reward;
use crate::system::worker::Worker;
use anyhow::{anyhow, bail};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus};
use ractor_cluster::ClientConnectErr;
use rustls_pki_types::ServerName;
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

/// How long a node keeps trying to reach a trainer that is not listening yet.
const CONNECT_WAIT: Duration = Duration::from_secs(60);
/// How long the handshake may take once connected.
const AUTH_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Where the node connects, as whom, with which secret.
pub struct Session<'a> {
    pub connect: &'a str,
    pub secret: &'a str,
    pub name: &'a str,
    /// libtorch intra-op threads of the reward's thread.
    pub threads: i32,
    /// Connect over TLS, checking the trainer's certificate against this name.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// Serve `reward` to the trainer at `session.connect` until the trainer goes away (Ok) or a
/// signal asks the node to stop (Ok); a refused handshake or an unreachable trainer is an
/// error.
pub async fn serve(reward: Box<dyn Reward>, session: Session<'_>) -> anyhow::Result<()> {
    let what = reward.name();
    let (actor, _) = Actor::spawn(None, RewardNode, (reward, session.threads))
        .await
        .map_err(|e| anyhow!("starting the reward actor: {e}"))?;
    // Joined before connecting, so the handshake's group sync carries it to the trainer.
    ractor::pg::join(wire::GROUP.to_string(), vec![actor.get_cell()]);
    let roster = Roster::new(Side::Node);
    // The node's own listener accepts nothing useful; keep it on a free loopback port.
    let local = "127.0.0.1:0".parse().expect("a socket address");
    let server = cluster::start_server(
        local,
        session.secret.to_string(),
        session.name,
        roster.clone(),
        None,
    )
    .await?;
    let result = async {
        connect(&server, session.connect, session.tls.as_ref()).await?;
        authenticate(&roster, session.connect).await?;
        info!(
            node = session.name,
            "serving {what} to the trainer at {} as node {:?}", session.connect, session.name
        );
        until_done(&roster, &actor, session.connect).await
    }
    .await;
    server.stop(None);
    actor.stop(None);
    result
}

async fn connect(
    server: &ActorRef<ractor_cluster::NodeServerMessage>,
    addr: &str,
    tls: Option<&(TlsConnector, ServerName<'static>)>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONNECT_WAIT;
    loop {
        let connected = match tls {
            Some((connector, name)) => {
                ractor_cluster::client_connect_enc(server, addr, connector.clone(), name.clone())
                    .await
            }
            None => ractor_cluster::client_connect(server, addr).await,
        };
        match connected {
            Ok(()) => return Ok(()),
            // A certificate the CA does not vouch for will not change by waiting.
            Err(ClientConnectErr::Encryption(e)) => {
                bail!("TLS with the trainer at {addr} failed: {e}")
            }
            Err(e) if Instant::now() >= deadline => bail!(
                "could not reach the trainer at {addr} within {}s: {e}",
                CONNECT_WAIT.as_secs()
            ),
            Err(e) => {
                debug!("the trainer at {addr} is not reachable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn authenticate(roster: &Roster, addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + AUTH_WAIT;
    while roster.authenticated().is_empty() {
        if !roster.refused().is_empty() {
            // The trainer closed the session during the challenge: the secrets differ.
            bail!(
                "the trainer at {addr} refused this node: wrong cluster secret (authentication failed)"
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no handshake with the trainer at {addr} within {}s",
                AUTH_WAIT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Until the trainer's session closes, a signal arrives, or the reward actor stops.
async fn until_done(
    roster: &Roster,
    actor: &ActorRef<RewardNodeMsg>,
    addr: &str,
) -> anyhow::Result<()> {
    let stop = crate::system::shutdown::listen();
    loop {
        tokio::time::sleep(POLL).await;
        if *stop.borrow() {
            info!("stopping on a signal");
            return Ok(());
        }
        if roster.authenticated().is_empty() {
            info!("the trainer at {addr} went away; the node is done");
            return Ok(());
        }
        if matches!(
            actor.get_status(),
            ActorStatus::Stopping | ActorStatus::Stopped
        ) {
            bail!("the reward actor stopped");
        }
    }
}

/// The actor the trainer calls; the reward itself runs on the worker's thread.
struct RewardNode;

struct RewardNodeState {
    worker: Worker<Box<dyn Reward>>,
}

impl Actor for RewardNode {
    type Msg = RewardNodeMsg;
    type State = RewardNodeState;
    type Arguments = (Box<dyn Reward>, i32);

    async fn pre_start(
        &self,
        _: ActorRef<RewardNodeMsg>,
        (reward, threads): (Box<dyn Reward>, i32),
    ) -> Result<RewardNodeState, ActorProcessingErr> {
        let worker = Worker::spawn("reward", threads, move || Ok(reward)).await?;
        Ok(RewardNodeState { worker })
    }

    async fn handle(
        &self,
        _: ActorRef<RewardNodeMsg>,
        msg: RewardNodeMsg,
        state: &mut RewardNodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RewardNodeMsg::Score(bytes, reply) => {
                let answer = answer(&state.worker, &bytes).await;
                // A trainer that stopped waiting has closed the port: nothing to do.
                let _ = reply.send(wire::encode_reply(&answer)?);
            }
        }
        Ok(())
    }
}

/// The scores for one encoded request, or the error the trainer will report.
async fn answer(worker: &Worker<Box<dyn Reward>>, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let request = wire::decode_request(bytes).map_err(|e| format!("{e:#}"))?;
    let (batch, rows) = (request.batch_id, request.len());
    let started = Instant::now();
    let scores = worker.call(move |reward| reward.score(&request)).await;
    match &scores {
        Ok(_) => debug!(
            batch,
            rows,
            seconds = started.elapsed().as_secs_f64(),
            "scored a rollout batch"
        ),
        Err(e) => warn!("rollout batch {batch}: {e:#}"),
    }
    scores.map_err(|e| format!("{e:#}"))
}
