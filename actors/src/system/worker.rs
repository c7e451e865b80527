//! A dedicated OS thread per actor for tensor work, so the tokio runtime (and with it the
//! metrics endpoint and supervision) never waits on libtorch.
//!
//! The engine object `T` is built on the thread and never leaves it; the actor sends
//! closures and awaits their results.

use crate::system::telemetry;
use anyhow::{anyhow, Context};
use rlhf::metric_names::{ERRORS, RESTARTS, WORK_DURATION};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

type Job<T> = Box<dyn FnOnce(&mut T) + Send>;

pub struct Worker<T> {
    jobs: Option<crossbeam_channel::Sender<Job<T>>>,
    thread: Option<JoinHandle<()>>,
    /// The actor's name: the `actor` label of its metrics.
    name: &'static str,
}

impl<T: 'static> Worker<T> {
    /// Start the thread with `threads` libtorch intra-op threads and build `T` on it.
    pub async fn spawn<F>(name: &'static str, threads: i32, build: F) -> anyhow::Result<Worker<T>>
    where
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let (jobs, inbox) = crossbeam_channel::unbounded::<Job<T>>();
        let (ready, built) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // Intra-op parallelism is per OS thread: each actor gets its own budget.
                tch::set_num_threads(threads);
                let mut state = match build() {
                    Ok(state) => {
                        let _ = ready.send(Ok(()));
                        state
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                for job in inbox {
                    job(&mut state);
                }
            })
            .with_context(|| format!("starting the {name} thread"))?;
        built
            .await
            .map_err(|_| anyhow!("the {name} thread died while starting"))??;
        // Present from the start, so a rate over it has data before the first error.
        telemetry::add(&ERRORS, name, 0);
        telemetry::add(&RESTARTS, name, 0);
        Ok(Worker {
            jobs: Some(jobs),
            thread: Some(thread),
            name,
        })
    }

    /// Run `f` on the worker thread and wait (asynchronously) for its result; the time it
    /// takes counts as the actor's work.
    pub async fn run<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut T) -> R + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let name = self.name;
        let job: Job<T> = Box::new(move |state| {
            let started = Instant::now();
            let answer = f(state);
            telemetry::observe(&WORK_DURATION, name, started.elapsed().as_secs_f64());
            let _ = reply.send(answer);
        });
        let jobs = self.jobs.as_ref().expect("worker is running");
        jobs.send(job)
            .map_err(|_| anyhow!("the {} thread has stopped", self.name))?;
        result
            .await
            .map_err(|_| anyhow!("the {} thread panicked", self.name))
    }

    /// [`Worker::run`] for fallible work: one result, an error counted against the actor.
    pub async fn call<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut T) -> anyhow::Result<R> + Send + 'static,
    {
        let result = self.run(f).await.and_then(|r| r);
        if result.is_err() {
            telemetry::add(&ERRORS, self.name, 1);
        }
        result
    }
}

/// An actor that failed to start, as the error it returned (ractor words every startup
/// failure as a panic, which would mislead a user whose config is wrong).
pub fn spawn_error(e: ractor::SpawnErr) -> anyhow::Error {
    match e {
        ractor::SpawnErr::StartupFailed(cause) => anyhow!("{cause:#}"),
        other => anyhow!("{other}"),
    }
}

impl<T> Drop for Worker<T> {
    /// Closing the queue ends the thread after its current job.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
