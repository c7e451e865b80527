//! A dedicated OS thread per actor for tensor work, so the tokio runtime (and with it the
//! metrics endpoint and supervision) never waits on libtorch.
//!
//! The engine object `T` is built on the thread and never leaves it; the actor sends
//! closures and awaits their results.

use anyhow::{anyhow, Context};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

type Job<T> = Box<dyn FnOnce(&mut T) + Send>;

pub struct Worker<T> {
    jobs: Option<crossbeam_channel::Sender<Job<T>>>,
    thread: Option<JoinHandle<()>>,
    name: String,
}

impl<T: 'static> Worker<T> {
    /// Start the thread with `threads` libtorch intra-op threads and build `T` on it.
    pub async fn spawn<F>(name: &str, threads: i32, build: F) -> anyhow::Result<Worker<T>>
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
        Ok(Worker {
            jobs: Some(jobs),
            thread: Some(thread),
            name: name.to_string(),
        })
    }

    /// Run `f` on the worker thread and wait (asynchronously) for its result.
    pub async fn run<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut T) -> R + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job<T> = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        let jobs = self.jobs.as_ref().expect("worker is running");
        jobs.send(job)
            .map_err(|_| anyhow!("the {} thread has stopped", self.name))?;
        result
            .await
            .map_err(|_| anyhow!("the {} thread panicked", self.name))
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
