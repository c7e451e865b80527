//! The reference-policy and reward actors: each adds one field to a rollout batch. Rewards
//! are pluggable behind [`crate::system::reward::Reward`].

use crate::system::reward::{checked_scores, Decoder, Reward, ScoreRequest};
use crate::system::rpc::Reply;
use crate::system::telemetry;
use crate::system::worker::Worker;
use anyhow::Context;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::model::Model;
use rlhf::rollout::{response_logprobs, RolloutBatch};
use rlhf::sampling::Sampling;
use tch::{Device, Tensor};
use tracing::Instrument;

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

// Local only: with ractor's cluster feature on, messages say whether they cross nodes.
impl ractor::Message for ScorerMsg {}

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
/// scores are only logged (the gold labeler beside a learned reward model); the decoder
/// turns rollout batches into the contract's requests.
pub struct RewardEngine {
    pub reward: Box<dyn Reward>,
    pub monitor: Option<Box<dyn Reward>>,
    pub decoder: Decoder,
}

impl RewardEngine {
    pub fn new(reward: impl Reward + 'static) -> RewardEngine {
        RewardEngine {
            reward: Box::new(reward),
            monitor: None,
            decoder: Decoder::ids_only(),
        }
    }
}

/// `apply` for the reward actor.
pub fn reward_apply(r: &mut RewardEngine, mut batch: RolloutBatch) -> anyhow::Result<RolloutBatch> {
    // The fault-injection seam (nothing without the `fault-injection` feature): tests fail
    // the reward actor mid-run and watch the run end cleanly.
    if rlhf::faults::fail_reward_at_batch() == Some(batch.id) {
        anyhow::bail!(
            "injected failure on rollout batch {} (RLHF_FAIL_REWARD_AT_BATCH)",
            batch.id
        );
    }
    let request = r.decoder.request(&batch)?;
    batch.scores = Some(scores(r.reward.as_mut(), &request)?);
    if let Some(monitor) = r.monitor.as_mut() {
        batch.monitor_scores = Some(scores(monitor.as_mut(), &request)?);
    }
    Ok(batch)
}

/// One checked f32 score per row, on the CPU.
fn scores(reward: &mut dyn Reward, request: &ScoreRequest) -> anyhow::Result<Tensor> {
    let name = reward.name();
    let scores = reward
        .score(request)
        .with_context(|| format!("{name}: rollout batch {}", request.batch_id))?;
    Ok(Tensor::from_slice(&checked_scores(&name, request, scores)?))
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
