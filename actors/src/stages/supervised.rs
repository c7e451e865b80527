//! The supervised stages (pretraining, SFT and RM) share one loop on the learner actor: epochs of
//! shuffled batches split into micro-batches, a held-out evaluation after each epoch, the
//! last and the best checkpoint kept, every figure in metrics.jsonl.

use super::progress::Progress;
use super::resume;
use super::run_dir::RunDir;
use crate::system::learner::{
    ask_common, Common, LearnerArgs, LearnerMsg, SupervisedLearner, SupervisedMsg,
};
use crate::system::rpc::ask;
use crate::system::telemetry;
use anyhow::Context;
use ractor::{Actor, ActorRef};
use rlhf::checkpoint::Checkpoints;
use rlhf::config::{OnNan, StageConfig};
use rlhf::data::batches;
use rlhf::device::parse_device;
use rlhf::metric_names as m;
use rlhf::model::{Head, Model};
use rlhf::rng::Rng;
use rlhf::text_side::TextSide;
use rlhf::train::{Batch, Stats, Trainer};
use serde_json::json;
use std::time::Instant;
use tracing::info;

/// Tokenized examples of one stage that can be collated into batches.
pub trait Examples: Send + Sync {
    fn len(&self) -> usize;
    fn collate(&self, indices: &[usize]) -> Batch;
}

/// Which held-out figure picks the best checkpoint.
#[derive(Clone, Copy)]
pub enum Best {
    /// Lowest held-out loss (SFT).
    LowestLoss,
    /// Highest held-out pairwise accuracy, then lowest loss (RM).
    HighestAccuracy,
}

impl Best {
    fn better(self, new: &Stats, old: &Stats) -> bool {
        match self {
            Best::LowestLoss => new.loss < old.loss,
            Best::HighestAccuracy => {
                let (a, b) = (new.accuracy.unwrap_or(0.0), old.accuracy.unwrap_or(0.0));
                a > b || (a == b && new.loss < old.loss)
            }
        }
    }
}

pub async fn spawn_learner(
    stage: &StageConfig,
    build: impl FnOnce() -> anyhow::Result<Trainer> + Send + 'static,
) -> anyhow::Result<ActorRef<SupervisedMsg>> {
    let args = LearnerArgs {
        threads: stage.threads,
        build: Box::new(build),
    };
    let (learner, _) = Actor::spawn(None, SupervisedLearner, args)
        .await
        .map_err(crate::system::worker::spawn_error)?;
    Ok(learner)
}

/// Spawn the learner for a supervised stage over `train` examples, with a fresh `head`
/// whose new tensors are initialised from `seed`.
pub async fn start_learner(
    name: &str,
    stage: &StageConfig,
    head: rlhf::model::Head,
    (train, validation): (usize, usize),
    seed: u64,
) -> anyhow::Result<ActorRef<SupervisedMsg>> {
    let (per_epoch, total) = step_counts(stage, train);
    let learner = spawn_learner(stage, {
        let stage = stage.clone();
        move || {
            // libtorch's generator initialises new heads: seeded, every run starts alike.
            tch::manual_seed(seed as i64);
            let mut trainer = build_trainer(&stage, head, per_epoch, total)?;
            // And each step reseeds it for its dropout masks (see rlhf::train::dropout_seed).
            trainer.set_seed(seed);
            Ok(trainer)
        }
    })
    .await?;
    tracing::info!(stage = name, train, validation, steps = total, "training");
    Ok(learner)
}

/// Load the stage's initial model with the given head and wrap it in a trainer.
pub fn build_trainer(
    stage: &StageConfig,
    head: Head,
    per_epoch: u64,
    total: u64,
) -> anyhow::Result<Trainer> {
    let device = parse_device(&stage.device)?;
    let lora = stage.lora.as_ref();
    let (mut model, report) = Model::load_with_lora(&stage.init, head, stage.dtype, device, lora)?;
    if !report.initialized.is_empty() {
        info!(tensors = ?report.initialized, "initialised new tensors");
    }
    if let Some(p) = stage.dropout {
        model.set_dropout(p);
    }
    model.set_gradient_checkpointing(stage.gradient_checkpointing);
    Ok(Trainer::new(
        model,
        &stage.optimizer,
        &stage.schedule,
        per_epoch,
        total,
    ))
}

/// Steps per epoch and in total for a stage over `examples` items.
fn step_counts(stage: &StageConfig, examples: usize) -> (u64, u64) {
    let per_epoch = examples.div_ceil(stage.batch_size).max(1) as u64;
    (per_epoch, per_epoch * stage.epochs)
}

/// What a supervised stage trains with.
pub struct Session<'a> {
    pub name: &'static str,
    pub stage: &'a StageConfig,
    /// Seeds the batch order.
    pub seed: u64,
    pub learner: &'a ActorRef<SupervisedMsg>,
    /// Saved beside every checkpoint (tokenizer, chat template, generation config).
    pub text: &'a TextSide,
    /// Continue from the newest valid training-state checkpoint, if any.
    pub resume: bool,
}

/// Train for the configured epochs; returns the best held-out figures, or None when a
/// SIGINT or SIGTERM stopped the stage (after a checkpoint, to continue with `--resume`).
pub async fn train(
    session: Session<'_>,
    dir: &mut RunDir,
    data: (&dyn Examples, &dyn Examples),
    best_by: Best,
) -> anyhow::Result<Option<Stats>> {
    let Session {
        name,
        stage,
        seed,
        learner,
        text,
        resume,
    } = session;
    let (train_set, held_out) = data;
    anyhow::ensure!(
        train_set.len() > 0,
        "{name}: no training examples left after tokenization"
    );
    let (_, total_steps) = step_counts(stage, train_set.len());
    let states = Checkpoints::new(dir.path("state"), stage.keep_checkpoints);
    let resumed = match resume {
        true => resume::load::<resume::Cursor>(learner, &states, dir)
            .await?
            .map(|(cursor, _)| cursor),
        false => None,
    };
    let mut at = resumed.clone().unwrap_or(resume::Cursor {
        rng_at_epoch: seed,
        ..Default::default()
    });
    let mut best: Option<Stats> = at.best.map(|(loss, accuracy)| Stats {
        loss,
        accuracy,
        ..Stats::default()
    });
    let mut progress = Progress::new(name, total_steps);
    progress.skip(at.step);
    // Present from the start, so dashboards show 0 rather than nothing.
    telemetry::add(&m::SKIPPED_STEPS, name, 0);
    if resumed.is_none() {
        // Where the curve starts: the initial model on the held-out set.
        let initial = evaluate(learner, held_out, stage.batch_size).await?;
        let mut record = json!({"stage": name, "step": 0, "split": "validation"});
        merge(&mut record, &initial);
        dir.log(&record)?;
    }
    let stop = crate::system::shutdown::listen();
    let mut rng = Rng::new(at.rng_at_epoch);
    for epoch in at.epoch..stage.epochs {
        at.epoch = epoch;
        at.rng_at_epoch = rng.state();
        let order = batches(train_set.len(), stage.batch_size, Some(&mut rng));
        for batch in order.iter().skip(at.done_in_epoch as usize) {
            if *stop.borrow() {
                at.metrics_lines = dir.lines();
                let saved = resume::save(learner, &states, &at, |_| Ok(())).await?;
                progress.finish();
                tracing::info!(
                    stage = name,
                    step = at.step,
                    checkpoint = %saved.display(),
                    "stopping on a signal after a checkpoint; continue with --resume"
                );
                return Ok(None);
            }
            let started = Instant::now();
            let micro: Vec<Batch> = batch
                .chunks(stage.micro_batch_size())
                .map(|idx| train_set.collate(idx))
                .collect();
            let tokens: i64 = micro.iter().map(|b| b.rows_and_tokens().1).sum();
            let learning = Instant::now();
            let trained = ask(learner, "learner", |reply| {
                SupervisedMsg::Train(micro, reply)
            })
            .await;
            let learner_seconds = learning.elapsed().as_secs_f64();
            at.step += 1;
            at.done_in_epoch += 1;
            let stats = match (trained, stage.on_nan) {
                (Ok(stats), _) => stats,
                (Err(e), OnNan::Skip) if non_finite(&e) => {
                    // The batch is consumed, the weights and optimizer are as before.
                    telemetry::add(&m::SKIPPED_STEPS, name, 1);
                    tracing::warn!(stage = name, step = at.step, "skipped: {e:#}");
                    dir.log(&json!({"stage": name, "epoch": epoch, "step": at.step, "skipped": format!("{e:#}")}))?;
                    progress.inc("skipped a non-finite step");
                    continue;
                }
                (Err(e), OnNan::Stop) if non_finite(&e) => {
                    let last = resume::last_good(&states);
                    anyhow::bail!(
                        "{name}: {e:#}; stopping (on_nan = \"stop\"); the last good checkpoint is {last}"
                    );
                }
                (Err(e), _) => return Err(e),
            };
            let seconds = started.elapsed().as_secs_f64();
            export_step(name, &stats, tokens, (learner_seconds, seconds));
            telemetry::set(
                &m::STAGE_PROGRESS,
                name,
                at.step as f64 / total_steps as f64,
            );
            let mut record =
                json!({"stage": name, "epoch": epoch, "step": at.step, "seconds": seconds});
            merge(&mut record, &stats);
            if let Some(pairs) = stats.comparisons {
                record["comparisons_per_second"] = json!(pairs as f64 / seconds);
            } else {
                record["tokens_per_second"] = json!(stats.tokens as f64 / seconds);
            }
            dir.log(&record)?;
            progress.inc(&format!("loss {:.4}", stats.loss));
            if stage.checkpoint_every > 0 && at.step.is_multiple_of(stage.checkpoint_every) {
                at.metrics_lines = dir.lines();
                resume::save(learner, &states, &at, |_| Ok(())).await?;
            }
        }
        let eval = evaluate(learner, held_out, stage.batch_size).await?;
        let mut record =
            json!({"stage": name, "epoch": epoch, "step": at.step, "split": "validation"});
        merge(&mut record, &eval);
        dir.log(&record)?;
        tracing::info!(stage = name, epoch, loss = eval.loss, accuracy = ?eval.accuracy, "held-out evaluation");
        save(learner, text, &dir.path("checkpoints/last")).await?;
        if best.as_ref().is_none_or(|b| best_by.better(&eval, b)) {
            save(learner, text, &dir.path("checkpoints/best")).await?;
            best = Some(eval);
        }
        // The next epoch starts here: a resume from this point redoes nothing.
        at = resume::Cursor {
            epoch: epoch + 1,
            done_in_epoch: 0,
            rng_at_epoch: rng.state(),
            best: best.as_ref().map(|b| (b.loss, b.accuracy)),
            metrics_lines: dir.lines(),
            ..at
        };
        resume::save(learner, &states, &at, |_| Ok(())).await?;
    }
    progress.finish();
    best.map(Some)
        .ok_or_else(|| anyhow::anyhow!("{name}: no epoch was trained"))
}

pub async fn evaluate(
    learner: &ActorRef<SupervisedMsg>,
    set: &dyn Examples,
    batch_size: usize,
) -> anyhow::Result<Stats> {
    if set.len() == 0 {
        return Ok(Stats::default());
    }
    let all: Vec<Batch> = batches(set.len(), batch_size, None)
        .iter()
        .map(|idx| set.collate(idx))
        .collect();
    ask(learner, "learner", |reply| {
        SupervisedMsg::Evaluate(all, reply)
    })
    .await
}

/// Model, tokenizer (with the chat template used) and generation config into one Hugging
/// Face folder. config.json gets the tokenizer's pad id where it has none: transformers'
/// sequence classification (a reward model) needs it at batch > 1.
pub async fn save<M: LearnerMsg>(
    learner: &ActorRef<M>,
    text: &TextSide,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let target = dir.to_path_buf();
    ask_common(learner, |reply| Common::Save(target, reply)).await?;
    rlhf::model::config::fill_pad_token_id(dir, text.tokenizer.pad_id())?;
    text.save(dir)
        .with_context(|| format!("saving the tokenizer into {}", dir.display()))
}

/// One supervised step's figures to Prometheus; `seconds`: (learner, whole step).
fn export_step(stage: &str, stats: &Stats, tokens: i64, seconds: (f64, f64)) {
    telemetry::add(&m::STEPS, stage, 1);
    telemetry::add(&m::TRAINED_TOKENS, stage, tokens.max(0) as u64);
    telemetry::observe(&m::LEARNER_DURATION, stage, seconds.0);
    telemetry::observe(&m::STEP_DURATION, stage, seconds.1);
    telemetry::set(&m::LOSS, stage, stats.loss);
    let optional = [
        (&m::ACCURACY, stats.accuracy),
        (&m::REWARD_MARGIN, stats.margin),
        (&m::CHOSEN_REWARD, stats.chosen_reward),
        (&m::REJECTED_REWARD, stats.rejected_reward),
        (&m::IMPLICIT_KL, stats.implicit_kl),
        (&m::GRAD_NORM, stats.grad_norm),
        (&m::LEARNING_RATE, stats.lr),
    ];
    for (metric, value) in optional {
        if let Some(value) = value {
            telemetry::set(metric, stage, value);
        }
    }
}

/// Whether a learner error is a NaN or infinite loss or gradient norm.
pub fn non_finite(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<rlhf::Error>(),
        Some(rlhf::Error::NonFinite { .. })
    )
}

/// The figures into a metrics record; a held-out record of a stage whose loss is a
/// negative log-likelihood per token (pretraining, SFT) gets its perplexity too.
fn merge(record: &mut serde_json::Value, stats: &Stats) {
    let fields = serde_json::to_value(stats).expect("stats serialise");
    for (k, v) in fields.as_object().expect("stats are an object") {
        record[k] = v.clone();
    }
    if record["split"] == "validation" && stats.comparisons.is_none() {
        record["perplexity"] = json!(stats.loss.exp());
    }
}
