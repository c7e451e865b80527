//! What both learners share: the engine contract, the requests every learner answers,
//! how a learner starts, and its log spans.

use crate::system::rpc::{ask, Reply};
use crate::system::worker::Worker;
use std::path::{Path, PathBuf};
use tch::Tensor;
use tracing::Instrument;

/// What a learner thread owns: trainable weights it can hand out, save and checkpoint.
pub trait Engine: Send + 'static {
    /// The weights' version and detached copies of them (for the generator).
    fn weights(&self) -> (u64, Vec<(String, Tensor)>);
    /// The model(s) in Hugging Face layout into `dir`.
    fn save(&self, dir: &Path) -> anyhow::Result<()>;
    /// The complete training state into a checkpoint folder.
    fn save_state(&self, dir: &Path) -> anyhow::Result<()>;
    /// Restores what [`Engine::save_state`] wrote.
    fn load_state(&mut self, dir: &Path) -> anyhow::Result<()>;
}

/// What every learner answers.
pub enum Common {
    /// Save the model in Hugging Face layout into the folder (PPO: the policy; the value
    /// model goes to `<folder>-value`).
    Save(PathBuf, Reply<()>),
    /// Write the complete training state into a checkpoint folder.
    SaveState(PathBuf, Reply<()>),
    /// Restore what `SaveState` wrote.
    LoadState(PathBuf, Reply<()>),
    /// Copies of the (policy) weights and their version, for the generator.
    Weights(Reply<(u64, Vec<(String, Tensor)>)>),
}

impl Common {
    /// The request's kind, for log spans.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Common::Save(..) => "save",
            Common::SaveState(..) => "save_state",
            Common::LoadState(..) => "load_state",
            Common::Weights(..) => "weights",
        }
    }

    /// Answer on the engine's thread.
    pub(super) async fn handle<E: Engine>(self, worker: &Worker<E>, span: tracing::Span) {
        match self {
            Common::Save(dir, reply) => {
                let result = worker.call(move |e| e.save(&dir)).instrument(span).await;
                let _ = reply.send(result);
            }
            Common::SaveState(dir, reply) => {
                let result = worker
                    .call(move |e| e.save_state(&dir))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            Common::LoadState(dir, reply) => {
                let result = worker
                    .call(move |e| e.load_state(&dir))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            Common::Weights(reply) => {
                let _ = reply.send(worker.run(|e| e.weights()).instrument(span).await);
            }
        }
    }
}

/// A learner's message type: its engine's own requests plus the [`Common`] ones.
pub trait LearnerMsg: ractor::Message + From<Common> {}

impl<M: ractor::Message + From<Common>> LearnerMsg for M {}

/// How a learner actor starts.
pub struct LearnerArgs<E> {
    /// libtorch intra-op threads for the learner thread.
    pub threads: i32,
    /// Builds the engine on the learner thread (loading the models there).
    pub build: Box<dyn FnOnce() -> anyhow::Result<E> + Send>,
}

/// A log span for one learner message.
pub(super) fn span(message: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "learner",
        actor = "learner",
        message,
        policy_version = tracing::field::Empty,
        batch = tracing::field::Empty,
    )
}

/// Ask a learner, supervised or PPO, one of the [`Common`] requests.
pub async fn ask_common<M: LearnerMsg, T: Send + 'static>(
    learner: &ractor::ActorRef<M>,
    request: impl FnOnce(Reply<T>) -> Common,
) -> anyhow::Result<T> {
    ask(learner, "learner", |reply| request(reply).into()).await
}
