//! The reference-policy and reward-model actors: each adds one field to a rollout batch.
//! Reward models are pluggable behind [`RewardScorer`].

use crate::learner::Reply;
use crate::telemetry;
use crate::worker::Worker;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::model::Model;
use rlhf::rollout::{response_logprobs, sequence_scores, RolloutBatch};
use rlhf::sampling::Sampling;
use tch::{Device, Tensor};
use tracing::Instrument;

/// What a reward actor does: one score per response of a rollout batch ([B] f32).
pub trait RewardScorer {
    fn score(&mut self, batch: &RolloutBatch) -> anyhow::Result<Tensor>;
}

/// The neural reward model from stage 2, read at each sequence's last token.
pub struct NeuralReward {
    pub model: Model,
}

impl RewardScorer for NeuralReward {
    fn score(&mut self, batch: &RolloutBatch) -> anyhow::Result<Tensor> {
        Ok(sequence_scores(
            &self.model,
            &batch.to_device(self.model.device()),
        ))
    }
}

/// The frozen SFT policy, scoring tokens the way the generator sampled them.
pub struct Reference {
    pub model: Model,
    pub sampling: Sampling,
}

impl Reference {
    pub fn add_ref_logprobs(&self, mut batch: RolloutBatch) -> RolloutBatch {
        let on_device = batch.to_device(self.model.device());
        let logp = response_logprobs(&self.model, &on_device, &self.sampling, false);
        batch.ref_logprobs = Some(logp.to_device(Device::Cpu));
        batch
    }
}

/// Messages of both scoring actors: the batch goes in, comes back with its field set.
pub enum ScorerMsg {
    Score(RolloutBatch, Reply<RolloutBatch>),
}

/// A scoring actor over an engine `E` (the reference or a reward scorer).
pub struct Scorer<E>(std::marker::PhantomData<fn() -> E>);

impl<E> Scorer<E> {
    pub fn new() -> Self {
        Scorer(std::marker::PhantomData)
    }
}

pub struct ScorerState<E: 'static> {
    name: &'static str,
    worker: Worker<E>,
    apply: fn(&mut E, RolloutBatch) -> anyhow::Result<RolloutBatch>,
}

pub struct ScorerArgs<E> {
    pub name: &'static str,
    pub threads: i32,
    pub build: Box<dyn FnOnce() -> anyhow::Result<E> + Send>,
    pub apply: fn(&mut E, RolloutBatch) -> anyhow::Result<RolloutBatch>,
}

/// `apply` for the reference actor.
pub fn reference_apply(r: &mut Reference, batch: RolloutBatch) -> anyhow::Result<RolloutBatch> {
    Ok(r.add_ref_logprobs(batch))
}

/// What the reward actor runs: the reward PPO maximises and, optionally, a monitor whose
/// scores are only logged (the gold labeler beside a learned reward model).
pub struct RewardEngine {
    pub reward: Box<dyn RewardScorer + Send>,
    pub monitor: Option<Box<dyn RewardScorer + Send>>,
}

impl RewardEngine {
    pub fn new(reward: impl RewardScorer + Send + 'static) -> RewardEngine {
        RewardEngine {
            reward: Box::new(reward),
            monitor: None,
        }
    }
}

/// `apply` for the reward actor.
pub fn reward_apply(r: &mut RewardEngine, mut batch: RolloutBatch) -> anyhow::Result<RolloutBatch> {
    // Test hook: lets tests fail the reward actor mid-run and watch the run end cleanly.
    if std::env::var("RLHF_FAIL_REWARD_AT_BATCH")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        == Some(batch.id)
    {
        anyhow::bail!(
            "injected failure on rollout batch {} (RLHF_FAIL_REWARD_AT_BATCH)",
            batch.id
        );
    }
    batch.scores = Some(checked(r.reward.as_mut(), &batch)?);
    if let Some(monitor) = r.monitor.as_mut() {
        batch.monitor_scores = Some(checked(monitor.as_mut(), &batch)?);
    }
    Ok(batch)
}

/// One f32 score per row, on the CPU, or an error saying what came back.
fn checked(scorer: &mut (dyn RewardScorer + Send), batch: &RolloutBatch) -> anyhow::Result<Tensor> {
    let scores = scorer.score(batch)?;
    anyhow::ensure!(
        scores.size() == [batch.len()],
        "reward actor returned {:?} scores for a batch of {}",
        scores.size(),
        batch.len()
    );
    Ok(scores.to_device(Device::Cpu).to_kind(tch::Kind::Float))
}

impl<E: 'static> Actor for Scorer<E> {
    type Msg = ScorerMsg;
    type State = ScorerState<E>;
    type Arguments = ScorerArgs<E>;

    async fn pre_start(
        &self,
        _: ActorRef<ScorerMsg>,
        args: ScorerArgs<E>,
    ) -> Result<ScorerState<E>, ActorProcessingErr> {
        let worker = Worker::spawn(args.name, args.threads, args.build).await?;
        Ok(ScorerState {
            name: args.name,
            worker,
            apply: args.apply,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<ScorerMsg>,
        msg: ScorerMsg,
        state: &mut ScorerState<E>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ScorerMsg::Score(batch, reply) => {
                let span = tracing::debug_span!(
                    "scorer",
                    actor = state.name,
                    message = "score",
                    policy_version = batch.policy_version,
                    batch = batch.id,
                );
                let (apply, rows) = (state.apply, batch.len());
                let result = state
                    .worker
                    .call(move |e| apply(e, batch))
                    .instrument(span)
                    .await;
                if result.is_ok() {
                    telemetry::processed(state.name, rows);
                }
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}
