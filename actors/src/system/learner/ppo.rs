//! The PPO learner: policy and value model (a `PpoLearner`), the rng that shuffles its
//! minibatches and the learning rate, on their own thread.

use super::common::{span, Common, Engine, LearnerArgs};
use crate::system::rpc::Reply;
use crate::system::telemetry;
use crate::system::worker::Worker;
use anyhow::anyhow;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::data::SftBatch;
use rlhf::metric_names::POLICY_VERSION;
use rlhf::ppo::learner::{PpoLearner, PpoStats};
use rlhf::rng::Rng;
use rlhf::rollout::RolloutBatch;
use std::path::Path;
use tch::Tensor;
use tracing::Instrument;

/// The PPO learner's minibatch rng state in a checkpoint folder.
const RNG_STATE: &str = "learner-rng.txt";

/// What the PPO learner thread owns.
pub struct PpoEngine {
    pub learner: PpoLearner,
    /// Shuffles each update's minibatches.
    pub minibatch_rng: Rng,
    /// The learning rate of both optimizers.
    pub lr: f64,
}

impl PpoEngine {
    /// One PPO update on a scored rollout batch, with PPO-ptx's pretraining batches (one
    /// per optimizer step, or none).
    pub fn update(&mut self, batch: &RolloutBatch, ptx: &[SftBatch]) -> rlhf::Result<PpoStats> {
        self.learner
            .update(batch, ptx, &mut self.minibatch_rng, self.lr)
    }
}

impl Engine for PpoEngine {
    fn weights(&self) -> (u64, Vec<(String, Tensor)>) {
        (self.learner.version(), self.learner.policy_weights())
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        self.learner.policy().export(dir)?;
        // The value model beside it, if there is one: `<dir>-value`.
        if let Some(value) = self.learner.value() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            value.export(&dir.with_file_name(format!("{name}-value")))?;
        }
        Ok(())
    }

    /// The learner's state plus its minibatch rng.
    fn save_state(&self, dir: &Path) -> anyhow::Result<()> {
        self.learner.save_state(dir)?;
        std::fs::write(dir.join(RNG_STATE), self.minibatch_rng.state().to_string())?;
        Ok(())
    }

    fn load_state(&mut self, dir: &Path) -> anyhow::Result<()> {
        self.learner.load_state(dir)?;
        let path = dir.join(RNG_STATE);
        let text = std::fs::read_to_string(&path)?;
        let state = text
            .trim()
            .parse()
            .map_err(|_| anyhow!("{}: not an rng state", path.display()))?;
        self.minibatch_rng = Rng::new(state);
        Ok(())
    }
}

pub enum PpoMsg {
    /// One PPO update on a scored rollout batch, with PPO-ptx's pretraining batches: one
    /// per optimizer step of the update, or none.
    Update(RolloutBatch, Vec<SftBatch>, Reply<PpoStats>),
    Common(Common),
}

// Local only: with ractor's cluster feature on, messages say whether they cross nodes.
impl ractor::Message for PpoMsg {}

impl From<Common> for PpoMsg {
    fn from(common: Common) -> Self {
        PpoMsg::Common(common)
    }
}

/// Empty: the state is the engine's worker.
pub struct PpoLearnerActor;

impl Actor for PpoLearnerActor {
    type Msg = PpoMsg;
    type State = Worker<PpoEngine>;
    type Arguments = LearnerArgs<PpoEngine>;

    async fn pre_start(
        &self,
        _: ActorRef<PpoMsg>,
        args: LearnerArgs<PpoEngine>,
    ) -> Result<Worker<PpoEngine>, ActorProcessingErr> {
        Ok(Worker::spawn("learner", args.threads, args.build).await?)
    }

    async fn handle(
        &self,
        _: ActorRef<PpoMsg>,
        msg: PpoMsg,
        worker: &mut Worker<PpoEngine>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PpoMsg::Update(batch, ptx, reply) => {
                let span = span("ppo_update");
                span.record("batch", batch.id);
                span.record("policy_version", batch.policy_version);
                let rows = batch.len();
                let result = worker
                    .call(move |engine| Ok(engine.update(&batch, &ptx)?))
                    .instrument(span)
                    .await;
                if let Ok(stats) = &result {
                    telemetry::processed("learner", rows);
                    telemetry::set(&POLICY_VERSION, "learner", stats.policy_version as f64);
                }
                let _ = reply.send(result);
            }
            PpoMsg::Common(common) => {
                let span = span(common.name());
                common.handle(worker, span).await;
            }
        }
        Ok(())
    }
}
