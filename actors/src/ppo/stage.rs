//! The PPO stage: build the four actors, run the pipeline, log every step.

use super::checkpoint::{self, PpoCursor};
use super::generator::{Generator, GeneratorArgs, GeneratorMsg, Sampler};
use super::metrics;
use super::scorers::{
    reference_apply, reward_apply, Reference, RewardEngine, Scorer, ScorerArgs, ScorerMsg,
};
use crate::learner::{Engine, Learner, LearnerArgs, LearnerMsg};
use crate::progress::Progress;
use crate::reward::{BuildContext, Decoder, LoadModel};
use crate::run_dir::RunDir;
use crate::stages::ask;
use crate::telemetry;
use anyhow::{anyhow, Context};
use ractor::{Actor, ActorRef};
use rlhf::checkpoint::Checkpoints;
use rlhf::config::{OnNan, PpoStage, RewardConfig, RunConfig};
use rlhf::data::{collate_sft, read_pretrain, read_prompts, SftSequence};
use rlhf::device::parse_device;
use rlhf::generate::GenerateOptions;
use rlhf::metric_names::{SKIPPED_STEPS, STAGE_PROGRESS, TRAINED_TOKENS};
use rlhf::model::{Head, Model};
use rlhf::ppo::learner::PpoLearner;
use rlhf::rng::Rng;
use rlhf::rollout::RolloutBatch;
use rlhf::template::ChatTemplate;
use rlhf::tokenizer::Tokenizer;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tracing::info;

/// Random streams derived from the run's seed, one per consumer of randomness.
pub const LEARNER_STREAM: u64 = 0x1ea;
const PROMPT_STREAM: u64 = 0x51a;
const PTX_STREAM: u64 = 0x9e3;

/// Prompts in a fresh shuffled order each pass over the set.
pub struct PromptCycle {
    rng: Rng,
    order: Vec<usize>,
}

impl PromptCycle {
    pub fn new(seed: u64) -> PromptCycle {
        PromptCycle {
            rng: Rng::new(seed ^ PROMPT_STREAM),
            order: Vec::new(),
        }
    }

    /// The next `size` prompts of the cycle, each repeated `samples` times in a row (the
    /// learner's leave-one-out groups): `size * samples` rows.
    pub fn next(&mut self, prompts: &[Vec<i64>], size: usize, samples: usize) -> Vec<Vec<i64>> {
        let mut rows = Vec::with_capacity(size * samples);
        for _ in 0..size {
            if self.order.is_empty() {
                self.order = (0..prompts.len()).collect();
                self.rng.shuffle(&mut self.order);
            }
            let prompt = &prompts[self.order.pop().expect("refilled")];
            rows.extend(std::iter::repeat_n(prompt, samples).cloned());
        }
        rows
    }
}

/// A scored batch with the seconds each producer phase took.
struct Produced {
    batch: RolloutBatch,
    times: metrics::ProducerTimes,
}

pub struct Actors {
    pub generator: ActorRef<GeneratorMsg>,
    pub reference: ActorRef<ScorerMsg>,
    pub reward: ActorRef<ScorerMsg>,
    pub learner: ActorRef<LearnerMsg>,
    pad_id: i64,
}

impl Actors {
    pub fn stop(&self) {
        self.generator.stop(None);
        self.reference.stop(None);
        self.reward.stop(None);
        self.learner.stop(None);
    }
}

/// What the actors need to know about tokens: EOS (None: always generate max_new_tokens),
/// padding, and how the reward actor turns rollouts into text.
#[derive(Clone)]
pub struct Tokens {
    pub eos: Option<i64>,
    pub pad: i64,
    pub decoder: Decoder,
}

type Build = LoadModel;
/// Builds the reward actor's engine on a device.
pub type BuildScorers = Arc<dyn Fn(&str) -> anyhow::Result<RewardEngine> + Send + Sync>;

/// Where the actors' models come from, given a device: the policy (LM head), the reward
/// model (scalar head; it also initialises the value model) and the reward actor's scorers
/// (by default the reward model itself). Folders for runs, in-memory random models for
/// benchmarks.
pub struct ModelSource {
    pub policy: Build,
    pub reward: Build,
    pub scorers: BuildScorers,
}

impl ModelSource {
    /// The reward is `reward` (the config's `[ppo.reward]`), built on the reward actor's
    /// thread; its `kind = "model"` is the `reward` model.
    pub fn new(policy: Build, reward_model: Build, reward: RewardConfig) -> ModelSource {
        let context = BuildContext {
            model: reward_model.clone(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        let scorers: BuildScorers = Arc::new(move |device: &str| {
            Ok(RewardEngine {
                reward: crate::reward::build(&reward, device, &context)?,
                monitor: None,
                decoder: Decoder::ids_only(),
            })
        });
        ModelSource {
            policy,
            reward: reward_model,
            scorers,
        }
    }

    pub fn from_folders(stage: &PpoStage) -> ModelSource {
        let dtype = stage.dtype;
        let load = move |path: PathBuf, head: Head| -> Build {
            Arc::new(move |device: &str| {
                Ok(Model::load(&path, head, dtype, parse_device(device)?)?.0)
            })
        };
        ModelSource::new(
            load(stage.policy.clone(), Head::LanguageModel),
            load(stage.reward_model.clone(), Head::Scalar),
            stage.reward.clone(),
        )
    }
}

pub async fn run(config_path: &Path, resume: bool) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    let stage = RunConfig::section(&config.ppo, "ppo", config_path)?.clone();
    let source = ModelSource::from_folders(&stage);
    run_variant(&config, &stage, "ppo", &source, resume).await
}

/// One PPO run of `stage` with the models of `source`, into `<run_dir>/<name>/`,
/// continuing from its newest valid training-state checkpoint when `resume`; the policy's
/// last weights go to `checkpoints/last` even when the run fails.
pub async fn run_variant(
    config: &RunConfig,
    stage: &PpoStage,
    name: &str,
    source: &ModelSource,
    resume: bool,
) -> anyhow::Result<()> {
    let stage = stage.clone();
    let mut dir = RunDir::create(&config.run_dir.join(name), config)?;
    let tokenizer = Tokenizer::from_dir(&stage.policy)?;
    let (prompts, raw) = tokenize_prompts(&stage, &tokenizer, &mut dir)?;
    let ptx = match (&stage.pretrain, stage.algo.ptx_coef > 0.0) {
        (Some(path), true) => Some(pretrain_sequences(path, &tokenizer, stage.ptx_seq_len)?),
        _ => None,
    };
    let tokens = Tokens {
        eos: Some(tokenizer.eos_id()),
        pad: tokenizer.pad_id(),
        decoder: Decoder::new(tokenizer.clone(), prompts.iter().cloned().zip(raw)),
    };
    let actors = spawn(&stage, tokens, config.seed, source).await?;
    let from = match resume {
        true => {
            let states = Checkpoints::new(dir.path("state"), stage.keep_checkpoints);
            checkpoint::restore(&actors, &states, &mut dir).await?
        }
        false => None,
    };
    info!(
        run = name,
        prompts = prompts.len(),
        steps = stage.steps,
        max_staleness = stage.max_staleness,
        "ppo: training"
    );
    let run = Run {
        name,
        stage: &stage,
        seed: config.seed,
        from,
    };
    let outcome = pipeline(&run, &actors, prompts, ptx.as_deref(), &mut dir).await;
    let last = dir.path("checkpoints/last");
    if outcome.as_ref().is_err_and(|e| e.is::<NonFiniteStop>()) {
        // The learner may hold part of the failed update (on_nan = "stop" keeps no copy to
        // roll back to): the training-state checkpoint the error names is the last good one.
        info!(
            run = name,
            "ppo: not saving the policy of a stopped non-finite update"
        );
    } else {
        match crate::stages::save(&actors.learner, &tokenizer, &last).await {
            Ok(()) => info!(run = name, dir = %last.display(), "ppo: saved the policy"),
            Err(e) => tracing::error!("ppo: could not save a checkpoint: {e:#}"),
        }
    }
    actors.stop();
    outcome.map(|_| ())
}

/// One PPO run: its name (the `stage` label of its metrics), settings, seed, and the
/// checkpoint it continues from.
pub struct Run<'a> {
    pub name: &'a str,
    pub stage: &'a PpoStage,
    pub seed: u64,
    pub from: Option<PpoCursor>,
}

/// Run the producer and the consumer until the steps are done, a signal arrives, or an
/// actor fails. Returns the steps completed (counting those before a resume).
pub async fn pipeline(
    run: &Run<'_>,
    actors: &Actors,
    prompts: Vec<Vec<i64>>,
    ptx: Option<&[SftSequence]>,
    dir: &mut RunDir,
) -> anyhow::Result<u64> {
    let Run {
        name,
        stage,
        seed,
        from,
    } = *run;
    let start = from.map_or(0, |c| c.step);
    let (queue, mut inbox) = mpsc::channel::<Produced>(stage.max_staleness.max(1) as usize);
    // Steps done whose weights the generator holds (a skipped step leaves the weights as
    // they were, so they count as synced): `start` when the producer begins.
    let (synced, synced_rx) = watch::channel(start);
    let producer = tokio::spawn(produce(
        name.to_string(),
        actors.generator.clone(),
        actors.reference.clone(),
        actors.reward.clone(),
        prompts,
        stage.clone(),
        (seed, start),
        queue,
        synced_rx,
    ));
    let steps = Loop {
        name,
        stage,
        pad_id: actors.pad_id,
        ptx,
        seed,
        from,
        states: Checkpoints::new(dir.path("state"), stage.keep_checkpoints),
    };
    let consumed = steps
        .consume(actors, &mut inbox, &synced, dir, crate::shutdown::listen())
        .await;
    // The producer either finished, or waits on a queue or a version nobody will send.
    producer.abort();
    let produced = match producer.await {
        Ok(result) => result,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(anyhow!("the rollout producer panicked: {e}")),
    };
    // A producer failure shows on the consumer's side only as a closed queue: report it.
    produced.and(consumed)
}

/// A non-finite update stopped the run (`on_nan = "stop"`): the message says where to
/// resume from.
#[derive(Debug)]
struct NonFiniteStop(String);

impl std::fmt::Display for NonFiniteStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NonFiniteStop {}

/// The consumer side: feed the learner, sync weights, log.
struct Loop<'a> {
    /// The run's name: the `stage` label of its metrics.
    name: &'a str,
    stage: &'a PpoStage,
    pad_id: i64,
    ptx: Option<&'a [SftSequence]>,
    seed: u64,
    from: Option<PpoCursor>,
    states: Checkpoints,
}

impl Loop<'_> {
    /// Runs until the configured steps are done, a shutdown signal arrives (the current step
    /// finishes first), or an actor fails (an error naming it).
    async fn consume(
        &self,
        actors: &Actors,
        inbox: &mut mpsc::Receiver<Produced>,
        synced: &watch::Sender<u64>,
        dir: &mut RunDir,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<u64> {
        let stage = self.stage;
        let mut rng = Rng::new(self.from.map_or(self.seed ^ PTX_STREAM, |c| c.ptx_rng));
        let mut progress = Progress::new("ppo", stage.steps);
        let started = Instant::now();
        let mut done = self.from.map_or(0, |c| c.step);
        progress.skip(done);
        // Present from the start, so dashboards show 0 rather than nothing.
        telemetry::add(&SKIPPED_STEPS, self.name, 0);
        for step in done + 1..=stage.steps {
            if *stop.borrow() {
                info!(
                    step = done,
                    "ppo: shutdown requested; stopping after the finished step"
                );
                break;
            }
            let wait = Instant::now();
            let Some(produced) = inbox.recv().await else {
                // The producer stopped early: its error is reported by the caller.
                break;
            };
            let queue_wait = wait.elapsed().as_secs_f64();
            metrics::queue_depth(self.name, inbox.len());
            let episodes = produced.batch.len();
            let trained = metrics::trained_tokens(&produced.batch, stage.algo.ppo_epochs);
            let monitor = produced
                .batch
                .monitor_scores
                .as_ref()
                .map(|t| t.mean(tch::Kind::Double).double_value(&[]));
            let ptx_batch = self.ptx.map(|seqs| {
                let picked: Vec<&SftSequence> = (0..stage.ptx_batch_size)
                    .map(|_| &seqs[rng.below(seqs.len())])
                    .collect();
                collate_sft(&picked, self.pad_id, true)
            });
            let ptx_batch_tokens = ptx_batch.as_ref().map_or(0, |b| {
                b.valid.sum(tch::Kind::Int64).int64_value(&[]).max(0) as u64
            });
            let times_in = produced.times;
            let update = Instant::now();
            let updated = ask(&actors.learner, |r| {
                LearnerMsg::PpoUpdate(produced.batch, ptx_batch, r)
            })
            .await;
            let update_seconds = update.elapsed().as_secs_f64();
            // What every step logs, trained or skipped.
            let mut record = json!({
                "stage": "ppo", "step": step, "episodes": episodes,
                "generate_seconds": times_in.generate, "reference_seconds": times_in.reference,
                "reward_seconds": times_in.reward, "learner_seconds": update_seconds,
                "queue_wait_seconds": queue_wait,
            });
            match (updated, stage.algo.on_nan) {
                (Ok(stats), _) => {
                    let sync = Instant::now();
                    let (version, weights) = ask(&actors.learner, LearnerMsg::Weights)
                        .await
                        .context("learner")?;
                    call_generator(&actors.generator, |r| {
                        GeneratorMsg::SetWeights(version, weights, r)
                    })
                    .await
                    .context("generator")?;
                    let weight_sync = sync.elapsed().as_secs_f64();
                    let times = metrics::StepTimes {
                        queue_wait,
                        learner: update_seconds,
                        weight_sync,
                        step: wait.elapsed().as_secs_f64(),
                    };
                    metrics::learned(self.name, &stats, monitor, &times);
                    let ptx_tokens = ptx_batch_tokens * stage.algo.ppo_epochs as u64;
                    telemetry::add(&TRAINED_TOKENS, self.name, trained + ptx_tokens);
                    record["weight_sync_seconds"] = json!(weight_sync);
                    for (k, v) in serde_json::to_value(&stats)?
                        .as_object()
                        .expect("stats object")
                    {
                        record[k] = v.clone();
                    }
                    if let Some(mean) = monitor {
                        record["monitor_score_mean"] = json!(mean);
                    }
                    progress.inc(&format!(
                        "score {:.3} kl {:.3} staleness {}",
                        stats.score_mean, stats.kl_per_sequence, stats.staleness
                    ));
                }
                (Err(e), OnNan::Skip) if crate::stages::non_finite(&e) => {
                    // The learner rolled the update back: its weights are the generator's,
                    // so there is nothing to sync.
                    telemetry::add(&SKIPPED_STEPS, self.name, 1);
                    tracing::warn!(step, "ppo: skipped: {e:#}");
                    record["skipped"] = json!(format!("{e:#}"));
                    progress.inc("skipped a non-finite update");
                }
                (Err(e), OnNan::Stop) if crate::stages::non_finite(&e) => {
                    let last = crate::stages::resume::last_good(&self.states);
                    return Err(NonFiniteStop(format!(
                        "learner: {e:#}; stopping (on_nan = \"stop\"); the last good checkpoint is {last}"
                    ))
                    .into());
                }
                (Err(e), _) => return Err(e.context("learner")),
            }
            telemetry::set(&STAGE_PROGRESS, self.name, step as f64 / stage.steps as f64);
            record["elapsed_seconds"] = json!(started.elapsed().as_secs_f64());
            dir.log(&record)?;
            done = step;
            if self.checkpoint(actors, step, &rng, dir, &stop).await? {
                break;
            }
            let _ = synced.send(step);
        }
        progress.finish();
        Ok(done)
    }

    /// After `step`: a training-state checkpoint when one is due or a signal asks to stop;
    /// true when stopping. Call it before the producer hears of the step: the generator is
    /// idle then, the one moment a checkpoint captures everything (with max_staleness 0).
    async fn checkpoint(
        &self,
        actors: &Actors,
        step: u64,
        ptx_rng: &Rng,
        dir: &RunDir,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let stopping = *stop.borrow();
        let every = self.stage.checkpoint_every;
        if stopping || (every > 0 && step.is_multiple_of(every) && step < self.stage.steps) {
            let saved = checkpoint::save(actors, &self.states, step, ptx_rng.state(), dir).await?;
            if stopping {
                info!(step, checkpoint = %saved.display(), "ppo: stopping on a signal after a checkpoint; continue with --resume");
            }
        }
        Ok(stopping)
    }
}

/// Generate, add reference log-probs and scores, queue; wait for weights as the
/// staleness bound requires.
#[allow(clippy::too_many_arguments)]
async fn produce(
    name: String,
    generator: ActorRef<GeneratorMsg>,
    reference: ActorRef<ScorerMsg>,
    reward: ActorRef<ScorerMsg>,
    prompts: Vec<Vec<i64>>,
    stage: PpoStage,
    (seed, start): (u64, u64),
    queue: mpsc::Sender<Produced>,
    mut synced: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let mut cycle = PromptCycle::new(seed);
    // A resumed run draws the prompts an uninterrupted one would: replay the order.
    let samples = stage.algo.samples_per_prompt;
    let distinct = stage.rollout_batch_size / samples;
    for _ in 0..start {
        cycle.next(&prompts, distinct, samples);
    }
    for k in start..stage.steps {
        let needed = k.saturating_sub(stage.max_staleness);
        synced
            .wait_for(|&v| v >= needed)
            .await
            .map_err(|_| anyhow!("the learner loop ended"))?;
        let batch_prompts = cycle.next(&prompts, distinct, samples);
        let t = Instant::now();
        let batch = call_generator(&generator, |r| GeneratorMsg::Generate(batch_prompts, r))
            .await
            .context("generator")?;
        let generate = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let batch = call_scorer(&reference, batch)
            .await
            .context("reference policy")?;
        let reference_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let batch = call_scorer(&reward, batch).await.context("reward actor")?;
        let reward_seconds = t.elapsed().as_secs_f64();
        let times = metrics::ProducerTimes {
            generate,
            reference: reference_seconds,
            reward: reward_seconds,
        };
        metrics::produced(&name, &batch, &times);
        let produced = Produced { batch, times };
        if queue.send(produced).await.is_err() {
            break;
        }
        metrics::queue_depth(&name, queue.max_capacity() - queue.capacity());
    }
    Ok(())
}

pub(super) async fn call_generator<T: Send + 'static>(
    generator: &ActorRef<GeneratorMsg>,
    message: impl FnOnce(crate::learner::Reply<T>) -> GeneratorMsg,
) -> anyhow::Result<T> {
    match generator
        .call(message, None)
        .await
        .map_err(|e| anyhow!("generator unreachable: {e}"))?
    {
        ractor::rpc::CallResult::Success(result) => result,
        _ => Err(anyhow!("the generator stopped without answering")),
    }
}

async fn call_scorer(
    actor: &ActorRef<ScorerMsg>,
    batch: RolloutBatch,
) -> anyhow::Result<RolloutBatch> {
    match actor
        .call(|r| ScorerMsg::Score(batch, r), None)
        .await
        .map_err(|e| anyhow!("scorer unreachable: {e}"))?
    {
        ractor::rpc::CallResult::Success(result) => result,
        _ => Err(anyhow!("a scoring actor stopped without answering")),
    }
}

pub async fn spawn(
    stage: &PpoStage,
    tokens: Tokens,
    seed: u64,
    source: &ModelSource,
) -> anyhow::Result<Actors> {
    // Test hook: a NaN loss in the N-th update (its last minibatch step).
    let poison = std::env::var("RLHF_NAN_AT_STEP").ok();
    let poison = poison.and_then(|v| v.parse::<u64>().ok());
    spawn_poisoned(stage, tokens, seed, source, poison).await
}

/// [`spawn`], with the learner's `poison`-th update made NaN (see
/// [`PpoLearner::poison_update`]) when given.
async fn spawn_poisoned(
    stage: &PpoStage,
    tokens: Tokens,
    seed: u64,
    source: &ModelSource,
    poison: Option<u64>,
) -> anyhow::Result<Actors> {
    let a = &stage.actors;
    let options = GenerateOptions {
        sampling: stage.sampling.clone(),
        max_new_tokens: stage.max_new_tokens,
        eos_token_id: tokens.eos,
        pad_token_id: tokens.pad,
    };
    let (policy, device) = (source.policy.clone(), a.generator.device.clone());
    let generator = spawn_actor(
        Generator,
        GeneratorArgs {
            threads: a.generator.threads,
            pad_id: tokens.pad,
            build: Box::new(move || Ok(Sampler::new(policy(&device)?, options, seed))),
        },
    )
    .await?;
    let (policy, device, sampling) = (
        source.policy.clone(),
        a.reference.device.clone(),
        stage.sampling.clone(),
    );
    let reference = spawn_actor(
        Scorer::new(),
        ScorerArgs {
            name: "reference",
            threads: a.reference.threads,
            build: Box::new(move || {
                Ok(Reference {
                    model: policy(&device)?,
                    sampling,
                })
            }),
            apply: reference_apply,
        },
    )
    .await?;
    let (scorers, device, decoder) = (
        source.scorers.clone(),
        a.reward.device.clone(),
        tokens.decoder.clone(),
    );
    let reward = spawn_actor(
        Scorer::new(),
        ScorerArgs {
            name: "reward",
            threads: a.reward.threads,
            build: Box::new(move || {
                let mut engine = scorers(&device)?;
                engine.decoder = decoder;
                Ok(engine)
            }),
            apply: reward_apply,
        },
    )
    .await?;
    let (policy, rm, device, s) = (
        source.policy.clone(),
        source.reward.clone(),
        a.learner.device.clone(),
        stage.clone(),
    );
    let learner = spawn_actor(
        Learner,
        LearnerArgs {
            threads: a.learner.threads,
            build: Box::new(move || {
                let mut learner = PpoLearner::new(
                    policy(&device)?,
                    rm(&device)?,
                    &s.optimizer,
                    &s.algo,
                    s.sampling.clone(),
                );
                if let Some(n) = poison {
                    learner.poison_update(n);
                }
                Ok(Engine::Ppo(
                    Box::new(learner),
                    Rng::new(seed ^ LEARNER_STREAM),
                    s.optimizer.lr,
                ))
            }),
        },
    )
    .await?;
    Ok(Actors {
        generator,
        reference,
        reward,
        learner,
        pad_id: tokens.pad,
    })
}

async fn spawn_actor<A: Actor>(actor: A, args: A::Arguments) -> anyhow::Result<ActorRef<A::Msg>> {
    let (actor, _) = Actor::spawn(None, actor, args)
        .await
        .map_err(crate::worker::spawn_error)?;
    Ok(actor)
}

/// Prompt token ids (templated) and raw texts; prompts over `max_prompt_len` tokens are
/// skipped and counted.
fn tokenize_prompts(
    stage: &PpoStage,
    tokenizer: &Tokenizer,
    dir: &mut RunDir,
) -> anyhow::Result<(Vec<Vec<i64>>, Vec<String>)> {
    let prompts = read_prompts(&stage.prompts, &ChatTemplate::default())?;
    let (mut kept, mut raw) = (Vec::with_capacity(prompts.len()), Vec::new());
    for p in prompts.iter() {
        let ids = tokenizer.encode(&p.text)?;
        if ids.len() <= stage.max_prompt_len {
            kept.push(ids);
            raw.push(p.raw.clone());
        }
    }
    let skipped = prompts.len() - kept.len();
    if skipped > 0 {
        info!(
            skipped,
            max_prompt_len = stage.max_prompt_len,
            "skipped over-long prompts"
        );
    }
    dir.log(&json!({"stage": "ppo", "prompts": kept.len(), "skipped_too_long": skipped}))?;
    anyhow::ensure!(
        !kept.is_empty(),
        "{}: no prompt fits ppo.max_prompt_len",
        stage.prompts.display()
    );
    Ok((kept, raw))
}

/// Pretraining documents as token chunks of at most `len` tokens.
fn pretrain_sequences(
    path: &Path,
    tokenizer: &Tokenizer,
    len: usize,
) -> anyhow::Result<Vec<SftSequence>> {
    let seqs = crate::stages::pretrain::text_sequences(&read_pretrain(path)?, tokenizer, len)?;
    anyhow::ensure!(!seqs.is_empty(), "{}: no pretraining text", path.display());
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppo::scorers::{reference_apply, reward_apply};
    use rlhf::config::{Actors as Placements, Placement};
    use rlhf::device::DType;
    use rlhf::model::{Architecture, ModelConfig, ModelShape};
    use rlhf::optim::OptimizerConfig;
    use rlhf::ppo::PpoConfig;
    use rlhf::sampling::Sampling;

    #[test]
    fn a_cycle_repeats_each_prompt_for_its_samples_and_covers_the_set_once_per_pass() {
        let prompts: Vec<Vec<i64>> = (0..5).map(|i| vec![i]).collect();
        let mut cycle = PromptCycle::new(3);
        let rows = cycle.next(&prompts, 5, 3);
        assert_eq!(rows.len(), 15);
        for group in rows.chunks(3) {
            assert!(group.iter().all(|r| r == &group[0]), "{rows:?}");
        }
        let mut firsts: Vec<i64> = rows.chunks(3).map(|g| g[0][0]).collect();
        firsts.sort_unstable();
        assert_eq!(firsts, vec![0, 1, 2, 3, 4]);
    }

    fn source() -> ModelSource {
        let build = |head: Head| -> Build {
            Arc::new(move |device: &str| {
                let shape = ModelShape {
                    arch: Architecture::Gpt2,
                    vocab_size: 64,
                    hidden_size: 32,
                    num_layers: 2,
                    num_heads: 4,
                    num_kv_heads: 4,
                    max_positions: 64,
                    eos_token_id: 63,
                };
                tch::manual_seed(3);
                Ok(Model::new(
                    ModelConfig::new_json(&shape),
                    head,
                    DType::F32,
                    parse_device(device)?,
                )?)
            })
        };
        ModelSource::new(
            build(Head::LanguageModel),
            build(Head::Scalar),
            RewardConfig::Model,
        )
    }

    fn stage() -> PpoStage {
        let place = Placement {
            device: "cpu".into(),
            threads: 1,
        };
        PpoStage {
            policy: "mem".into(),
            reward_model: "mem".into(),
            prompts: "mem".into(),
            pretrain: None,
            steps: 3,
            rollout_batch_size: 4,
            max_prompt_len: 8,
            max_new_tokens: 6,
            max_staleness: 0,
            ptx_batch_size: 1,
            ptx_seq_len: 1,
            sampling: Sampling::default(),
            algo: PpoConfig {
                ppo_epochs: 2,
                minibatches: 2,
                ..PpoConfig::default()
            },
            optimizer: OptimizerConfig {
                lr: 1e-2,
                ..OptimizerConfig::default()
            },
            dtype: DType::F32,
            actors: Placements {
                generator: place.clone(),
                reference: place.clone(),
                reward: place.clone(),
                learner: place,
            },
            reward: RewardConfig::Model,
            checkpoint_every: 0,
            keep_checkpoints: 1,
        }
    }

    /// A PPO-ptx run exports every PPO metric under its documented name and labels, and
    /// nothing else.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ppo_run_exports_its_metrics_under_the_documented_names() {
        use crate::telemetry::tests::{endpoint, families, scrape};
        use rlhf::metric_names as m;
        let addr = endpoint();
        let mut stage = stage();
        stage.algo.ptx_coef = 0.5;
        let tokens = Tokens {
            eos: Some(63),
            pad: 0,
            decoder: Decoder::ids_only(),
        };
        let dir = std::env::temp_dir().join(format!("rlhf-ppo-metrics-{}", std::process::id()));
        let config = RunConfig::for_ppo(dir.clone(), 5, stage.clone());
        let mut run_dir = RunDir::create(&dir, &config).unwrap();
        let actors = spawn(&stage, tokens, 5, &source()).await.unwrap();
        let prompts = vec![vec![5, 6, 7], vec![9, 10]];
        let ptx = [SftSequence {
            ids: vec![3, 4, 5, 6, 7],
            prompt_len: 0,
        }];
        let run = "ppo_metrics_test";
        let spec = Run {
            name: run,
            stage: &stage,
            seed: 5,
            from: None,
        };
        pipeline(&spec, &actors, prompts, Some(&ptx), &mut run_dir)
            .await
            .unwrap();
        actors.stop();
        let body = tokio::task::spawn_blocking(move || scrape(addr))
            .await
            .unwrap();
        let exported = families(&body).unwrap_or_else(|p| panic!("{p:#?}\n{body}"));
        let supervised_or_monitor = [m::LOSS.name, m::ACCURACY.name, m::MONITOR_SCORE_MEAN.name];
        for metric in m::ALL
            .iter()
            .filter(|x| !supervised_or_monitor.contains(&x.name))
        {
            assert!(
                exported.iter().any(|e| e.name == metric.name),
                "{} is not exported",
                metric.name
            );
            let series = match metric.kind {
                m::Kind::Histogram => format!("{}_count", metric.name),
                _ => metric.name.to_string(),
            };
            let labelled = match metric.labels {
                ["stage"] => vec![format!("{series}{{stage=\"{run}\"}}")],
                ["actor"] => ["generator", "reference", "reward", "learner"]
                    .iter()
                    .filter(|a| {
                        metric.name != m::POLICY_VERSION.name
                            || ["generator", "learner"].contains(a)
                    })
                    .map(|a| format!("{series}{{actor=\"{a}\"}}"))
                    .collect(),
                _ => vec![format!("{series} ")],
            };
            for s in labelled {
                assert!(body.contains(&s), "no {s} in\n{body}");
            }
        }
        assert!(body.contains(&format!("rlhf_steps_total{{stage=\"{run}\"}} 3")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// on_nan = "skip": a NaN in the last minibatch step of update 2 (after its first three
    /// were applied) is counted in rlhf_skipped_steps_total and metrics.jsonl, and rolled
    /// back: step 3 trains from the weights the generator holds (no weight sync after the
    /// skip), so their log-probs agree.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_skipped_nan_update_is_counted_and_changes_nothing() {
        use crate::telemetry::tests::{endpoint, scrape};
        let addr = endpoint();
        let mut stage = stage();
        stage.algo.on_nan = OnNan::Skip;
        let tokens = Tokens {
            eos: Some(63),
            pad: 0,
            decoder: Decoder::ids_only(),
        };
        let dir = std::env::temp_dir().join(format!("rlhf-ppo-skip-{}", std::process::id()));
        let config = RunConfig::for_ppo(dir.clone(), 5, stage.clone());
        let mut run_dir = RunDir::create(&dir, &config).unwrap();
        let actors = spawn_poisoned(&stage, tokens, 5, &source(), Some(2))
            .await
            .unwrap();
        let prompts = vec![vec![5, 6, 7], vec![9, 10], vec![11], vec![12, 13, 14, 15]];
        let run = "ppo_skip_test";
        let spec = Run {
            name: run,
            stage: &stage,
            seed: 5,
            from: None,
        };
        let done = pipeline(&spec, &actors, prompts, None, &mut run_dir).await;
        let (version, _) = ask(&actors.learner, LearnerMsg::Weights).await.unwrap();
        actors.stop();
        assert_eq!(done.unwrap(), 3);
        assert_eq!(version, 2, "two updates applied");
        let records: Vec<serde_json::Value> =
            std::fs::read_to_string(run_dir.path("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        let skipped: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r.get("skipped").is_some())
            .collect();
        assert_eq!(skipped.len(), 1, "{records:?}");
        assert_eq!(skipped[0]["step"], 2);
        let what = skipped[0]["skipped"].as_str().unwrap();
        assert!(
            what.contains("non-finite PPO loss (policy NaN")
                && what.contains("in minibatch step 4 of 4 at step 2"),
            "{what}"
        );
        let steps: Vec<&serde_json::Value> = records
            .iter()
            .filter(|r| r.get("policy_version").is_some())
            .collect();
        assert_eq!(steps.len(), 2);
        let third = steps[1];
        assert_eq!(
            (third["step"].as_u64(), third["batch_version"].as_u64()),
            (Some(3), Some(1))
        );
        assert_eq!(third["staleness"], 0);
        let gap = third["logprob_gap"].as_f64().unwrap();
        assert!(
            gap < 1e-5,
            "the skipped update moved the learner: logprob gap {gap}"
        );
        let body = tokio::task::spawn_blocking(move || scrape(addr))
            .await
            .unwrap();
        for series in [
            format!("rlhf_skipped_steps_total{{stage=\"{run}\"}} 1"),
            format!("rlhf_steps_total{{stage=\"{run}\"}} 2"),
        ] {
            assert!(body.contains(&series), "no {series} in\n{body}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The invariant that makes the actor system trustworthy: with max_staleness 0 it is
    /// exactly PPO, the same rollouts and updates as a plain loop over the same functions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn synchronous_actor_system_equals_a_plain_loop() {
        let (stage, seed, tokens) = (
            stage(),
            5,
            Tokens {
                eos: Some(63),
                pad: 0,
                decoder: Decoder::ids_only(),
            },
        );
        let prompts: Vec<Vec<i64>> = vec![
            vec![5, 6, 7],
            vec![9],
            vec![10, 11, 12, 13, 14],
            vec![20, 21],
            vec![30, 31, 32, 33],
            vec![40],
        ];
        let dir = std::env::temp_dir().join(format!("rlhf-ppo-invariant-{}", std::process::id()));
        let config = RunConfig::for_ppo(dir.clone(), seed, stage.clone());
        let mut run_dir = RunDir::create(&dir, &config).unwrap();
        let source = source();
        let actors = spawn(&stage, tokens, seed, &source).await.unwrap();
        assert_eq!(
            pipeline(
                &Run {
                    name: "ppo",
                    stage: &stage,
                    seed,
                    from: None
                },
                &actors,
                prompts.clone(),
                None,
                &mut run_dir
            )
            .await
            .unwrap(),
            3
        );
        let (version, weights) = ask(&actors.learner, LearnerMsg::Weights).await.unwrap();
        actors.stop();

        // The same libtorch thread count as the actors, so reductions run in the same order.
        tch::set_num_threads(1);
        let options = GenerateOptions {
            sampling: stage.sampling.clone(),
            max_new_tokens: 6,
            eos_token_id: Some(63),
            pad_token_id: 0,
        };
        let mut sampler = Sampler::new((source.policy)("cpu").unwrap(), options, seed);
        let mut reference = Reference {
            model: (source.policy)("cpu").unwrap(),
            sampling: stage.sampling.clone(),
        };
        let mut reward = (source.scorers)("cpu").unwrap();
        let (policy, value) = (
            (source.policy)("cpu").unwrap(),
            (source.reward)("cpu").unwrap(),
        );
        let mut learner = PpoLearner::new(
            policy,
            value,
            &stage.optimizer,
            &stage.algo,
            stage.sampling.clone(),
        );
        let (mut rng, mut cycle) = (Rng::new(seed ^ LEARNER_STREAM), PromptCycle::new(seed));
        let mut plain_stats = Vec::new();
        for _ in 0..3 {
            let batch = sampler.rollout(&cycle.next(&prompts, 4, 1), 0).unwrap();
            let batch =
                reward_apply(&mut reward, reference_apply(&mut reference, batch).unwrap()).unwrap();
            plain_stats.push(
                learner
                    .update(&batch, None, &mut rng, stage.optimizer.lr)
                    .unwrap(),
            );
            sampler
                .set_weights(learner.version(), &learner.policy_weights())
                .unwrap();
        }
        assert_eq!(version, learner.version());
        // The same rollouts: every step's scores are bit-identical, and the update's figures
        // agree to float precision.
        let metrics = std::fs::read_to_string(run_dir.path("metrics.jsonl")).unwrap();
        let actor_stats: Vec<serde_json::Value> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r.get("policy_version").is_some())
            .collect();
        assert_eq!(actor_stats.len(), plain_stats.len());
        for (a, p) in actor_stats.iter().zip(&plain_stats) {
            assert_eq!(
                a["score_mean"].as_f64().unwrap(),
                p.score_mean,
                "rollout scores differ: {a}"
            );
            assert_eq!(
                a["response_length_mean"].as_f64().unwrap(),
                p.response_length_mean
            );
            for (key, value) in [
                ("policy_loss", p.policy_loss),
                ("value_loss", p.value_loss),
                ("grad_norm_policy", p.grad_norm_policy),
            ] {
                let diff = (a[key].as_f64().unwrap() - value).abs();
                assert!(diff < 1e-5, "{key}: {} vs {value}", a[key]);
            }
        }
        // The same updated weights. libtorch's CPU kernels are not bitwise reproducible run to
        // run (about 1e-7 relative), and Adam turns that noise on near-zero gradients into
        // steps of up to lr, so single entries can differ by ~1e-4 while the mean is ~1e-7.
        let plain = learner.policy_weights();
        assert_eq!(weights.len(), plain.len());
        let initial = (source.policy)("cpu").unwrap().var_store().variables();
        let (mut diff_sum, mut count, mut worst, mut moved) = (0.0f64, 0i64, 0.0f64, 0.0f64);
        for ((name, a), (other, b)) in weights.iter().zip(&plain) {
            assert_eq!(name, other);
            let diff = (a - b).abs();
            diff_sum += diff.sum(tch::Kind::Double).double_value(&[]);
            count += diff.numel() as i64;
            worst = worst.max(diff.max().double_value(&[]));
            moved = moved.max((b - &initial[name]).abs().max().double_value(&[]));
        }
        let mean = diff_sum / count as f64;
        assert!(mean < 1e-5, "mean |weight difference| {mean}");
        assert!(
            worst < 10.0 * stage.optimizer.lr,
            "max |weight difference| {worst}"
        );
        assert!(moved > 1e-3, "the updates should move the weights");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
