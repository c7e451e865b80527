//! The generator actor: a policy copy that samples responses with the KV cache, stamps
//! each rollout with the version of the weights that produced it, and takes new weights
//! between batches. Each episode samples from its own stream, keyed by the run's seed, the
//! prompt's index in the run and the sample's index ([`EpisodeKey`]): its tokens depend on
//! its prompt, its key and the weights only.

use crate::system::rpc::Reply;
use crate::system::telemetry;
use crate::system::worker::Worker;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::generate::{cache_shape, generate, left_pad, GenerateOptions};
use rlhf::metric_names::POLICY_VERSION;
use rlhf::model::{KvCache, Model};
use rlhf::ppo::learner::load_weights;
use rlhf::rng::Rng;
use rlhf::rollout::RolloutBatch;
use tch::Tensor;
use tracing::Instrument;

/// Which episode of the run a row is: the prompt's index among the prompts the run has
/// drawn (a prompt drawn again gets a new index) and the sample's index for that prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpisodeKey {
    pub prompt: u64,
    pub sample: u64,
}

impl EpisodeKey {
    /// The keys of rollout batch `batch` (0-based): `prompts` prompts, each sampled
    /// `samples` times in a row.
    pub fn of_batch(batch: u64, prompts: usize, samples: usize) -> Vec<EpisodeKey> {
        let first = batch * prompts as u64;
        (0..prompts * samples)
            .map(|row| EpisodeKey {
                prompt: first + (row / samples) as u64,
                sample: (row % samples) as u64,
            })
            .collect()
    }
}

/// The generator's engine: synchronous, owned by its thread.
pub struct Sampler {
    model: Model,
    options: GenerateOptions,
    /// The root of every episode's stream.
    seed: u64,
    version: u64,
    cache: Option<KvCache>,
}

impl Sampler {
    pub fn new(model: Model, options: GenerateOptions, seed: u64) -> Sampler {
        Sampler {
            model,
            options,
            seed,
            version: 0,
            cache: None,
        }
    }

    /// Sample one response per prompt (token ids), row i from the stream of `keys[i]`, into
    /// (a chunk of) rollout batch `id`.
    pub fn rollout(
        &mut self,
        prompts: &[Vec<i64>],
        keys: &[EpisodeKey],
        id: u64,
        pad_id: i64,
    ) -> anyhow::Result<RolloutBatch> {
        anyhow::ensure!(
            prompts.len() == keys.len(),
            "{} prompts with {} episode keys",
            prompts.len(),
            keys.len()
        );
        let mut streams: Vec<Rng> = keys
            .iter()
            .map(|k| Rng::stream(self.seed, &[k.prompt, k.sample]))
            .collect();
        let (rows, columns) = cache_shape(prompts, self.options.max_new_tokens, prompts.len());
        // Keep the cache across batches; reallocate only when a batch does not fit.
        let kind = self.model.var_store().kind();
        let cache = match self.cache.take() {
            Some(c) if c.fits(self.model.config(), rows, columns, kind) => c,
            _ => self.model.new_cache(rows, columns),
        };
        let cache = self.cache.insert(cache);
        let out = generate(&self.model, cache, prompts, &self.options, &mut streams)?;
        let (ids, mask) = left_pad(prompts, pad_id);
        Ok(RolloutBatch::from_generation(
            id,
            self.version,
            ids,
            mask,
            out,
            &self.options.eos_token_ids,
        ))
    }

    pub fn set_weights(
        &mut self,
        version: u64,
        weights: &[(String, Tensor)],
    ) -> anyhow::Result<()> {
        load_weights(&mut self.model, weights)?;
        self.version = version;
        Ok(())
    }
}

pub enum GeneratorMsg {
    /// Sample responses for these tokenized prompts, one episode each, as (a chunk of)
    /// rollout batch `id`.
    Generate(Vec<Vec<i64>>, Vec<EpisodeKey>, u64, Reply<RolloutBatch>),
    /// Load new policy weights (applied between batches); answers the bytes loaded (or
    /// sent, for a replica on a node).
    SetWeights(u64, Vec<(String, Tensor)>, Reply<u64>),
}

// Local only: with ractor's cluster feature on, messages say whether they cross nodes.
impl ractor::Message for GeneratorMsg {}

pub struct Generator;

pub struct GeneratorState {
    /// The replica's name: the `actor` label of its metrics.
    name: &'static str,
    worker: Worker<Sampler>,
    pad_id: i64,
    /// The version of the weights the sampler holds.
    version: u64,
}

pub struct GeneratorArgs {
    pub name: &'static str,
    pub threads: i32,
    pub pad_id: i64,
    pub build: Box<dyn FnOnce() -> anyhow::Result<Sampler> + Send>,
}

impl Actor for Generator {
    type Msg = GeneratorMsg;
    type State = GeneratorState;
    type Arguments = GeneratorArgs;

    async fn pre_start(
        &self,
        _: ActorRef<GeneratorMsg>,
        args: GeneratorArgs,
    ) -> Result<GeneratorState, ActorProcessingErr> {
        let worker = Worker::spawn(args.name, args.threads, args.build).await?;
        telemetry::set(&POLICY_VERSION, args.name, 0.0);
        Ok(GeneratorState {
            name: args.name,
            worker,
            pad_id: args.pad_id,
            version: 0,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<GeneratorMsg>,
        msg: GeneratorMsg,
        state: &mut GeneratorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GeneratorMsg::Generate(prompts, keys, id, reply) => {
                let span = tracing::debug_span!(
                    "generator",
                    actor = state.name,
                    message = "generate",
                    policy_version = state.version,
                    batch = tracing::field::Empty,
                );
                let (pad, rows) = (state.pad_id, prompts.len() as i64);
                let result = state
                    .worker
                    .call(move |s| s.rollout(&prompts, &keys, id, pad))
                    .instrument(span.clone())
                    .await;
                if let Ok(batch) = &result {
                    span.record("batch", batch.id);
                    telemetry::processed(state.name, rows);
                }
                let _ = reply.send(result);
            }
            GeneratorMsg::SetWeights(version, weights, reply) => {
                let span = tracing::debug_span!(
                    "generator",
                    actor = state.name,
                    message = "set_weights",
                    policy_version = version,
                );
                let bytes = weights
                    .iter()
                    .map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as u64)
                    .sum();
                let result = state
                    .worker
                    .call(move |s| s.set_weights(version, &weights))
                    .instrument(span)
                    .await
                    .map(|()| bytes);
                if result.is_ok() {
                    state.version = version;
                    telemetry::set(&POLICY_VERSION, state.name, version as f64);
                }
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}
