//! The consumer: feed each scored batch to the learner, sync the generator's weights, log
//! the step, checkpoint, and let the producer go on. [`Consumer::run`] reads as the loop.

use super::actors::Actors;
use super::checkpoint::{self, PpoCursor};
use super::metrics::{self, StepTimes};
use super::produce::Produced;
use super::prompts::ptx_batches;
use super::weights::WeightBoard;
use crate::stages::progress::Progress;
use crate::stages::resume::last_good;
use crate::stages::run_dir::RunDir;
use crate::stages::supervised::non_finite;
use crate::system::learner::PpoMsg;
use crate::system::rpc::ask;
use crate::system::telemetry;
use rlhf::checkpoint::Checkpoints;
use rlhf::config::{OnNan, PpoStage};
use rlhf::data::SftSequence;
use rlhf::metric_names::{SKIPPED_STEPS, STAGE_PROGRESS, TRAINED_TOKENS};
use rlhf::ppo::learner::PpoStats;
use rlhf::rng::Rng;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tracing::info;

/// The pretraining batches' random stream, derived from the run's seed.
const PTX_STREAM: u64 = 0x9e3;

/// A non-finite update stopped the run (`on_nan = "stop"`): the message says where to
/// resume from.
#[derive(Debug)]
pub struct NonFiniteStop(String);

impl std::fmt::Display for NonFiniteStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NonFiniteStop {}

/// What became of one update.
enum Update {
    Trained(Box<PpoStats>),
    /// A non-finite update the learner rolled back (`on_nan = "skip"`).
    Skipped(anyhow::Error),
}

/// The consumer side of one run.
pub struct Consumer<'a> {
    /// The run's name: the `stage` label of its metrics.
    pub name: &'a str,
    pub stage: &'a PpoStage,
    pub pad_id: i64,
    pub ptx: Option<&'a [SftSequence]>,
    pub seed: u64,
    pub from: Option<PpoCursor>,
    pub states: Checkpoints,
}

impl Consumer<'_> {
    /// Runs until the configured steps are done, a shutdown signal arrives (the current step
    /// finishes first), or an actor fails (an error naming it). Trains on the `pending`
    /// batches (a checkpoint's in-flight ones) before the inbox's. Returns the steps done.
    pub async fn run(
        &self,
        actors: &Actors,
        (mut pending, inbox): (VecDeque<Produced>, &mut mpsc::Receiver<Produced>),
        board: &WeightBoard,
        dir: &mut RunDir,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<u64> {
        let stage = self.stage;
        let mut ptx_rng = Rng::new(self.from.map_or(self.seed ^ PTX_STREAM, |c| c.ptx_rng));
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
            // 1. The next scored batch (the producer's error, if it stopped, is the caller's).
            let wait = Instant::now();
            let next = match pending.pop_front() {
                Some(saved) => Some(saved),
                None => inbox.recv().await,
            };
            let Some(produced) = next else {
                break;
            };
            let queue_wait = wait.elapsed().as_secs_f64();
            metrics::queue_depth(self.name, inbox.len());
            // 2. PPO-ptx's pretraining batches: a fresh one for every optimizer step.
            let (ptx, ptx_tokens) = match self.ptx {
                Some(seqs) if stage.algo.ptx_coef > 0.0 => {
                    let steps = stage.algo.optimizer_steps(produced.batch.len() as usize);
                    let size = stage.ptx_batch_size;
                    ptx_batches(seqs, steps, size, self.pad_id, &mut ptx_rng)
                }
                _ => (Vec::new(), 0),
            };
            // 3. The update.
            let (episodes, figures, times) =
                (produced.batch.len(), produced.figures, produced.times);
            let update = Instant::now();
            let updated = ask(&actors.learner, "learner", |r| {
                PpoMsg::Update(produced.batch, ptx, r)
            })
            .await;
            let learner = update.elapsed().as_secs_f64();
            let mut record = json!({
                "stage": "ppo", "step": step, "episodes": episodes,
                "generate_seconds": times.generate, "reference_seconds": times.reference,
                "reward_seconds": times.reward, "weight_load_seconds": times.weight_load,
                "learner_seconds": learner,
                "queue_wait_seconds": queue_wait,
            });
            // 4. A trained update's weights are copied out for the generators (published
            // after the checkpoint); a skipped one changed nothing.
            let mut publish = None;
            match self.outcome(updated)? {
                Update::Trained(stats) => {
                    let (weights, weight_sync) = actors.weights().await?;
                    publish = Some(weights);
                    let times = StepTimes {
                        queue_wait,
                        learner,
                        weight_sync,
                        step: wait.elapsed().as_secs_f64(),
                    };
                    metrics::learned(self.name, &stats, figures.monitor_score_mean, &times);
                    // Rollout tokens once per epoch; each ptx batch's loss tokens once.
                    let epochs = stage.algo.ppo_epochs;
                    let trained = figures.trained_tokens(epochs) + ptx_tokens;
                    telemetry::add(&TRAINED_TOKENS, self.name, trained);
                    record["weight_sync_seconds"] = json!(weight_sync);
                    merge(&mut record, &stats)?;
                    if let Some(mean) = figures.monitor_score_mean {
                        record["monitor_score_mean"] = json!(mean);
                    }
                    progress.inc(&format!(
                        "score {:.3} kl {:.3} staleness {}",
                        stats.score_mean, stats.kl_per_sequence, stats.staleness
                    ));
                }
                Update::Skipped(e) => {
                    telemetry::add(&SKIPPED_STEPS, self.name, 1);
                    tracing::warn!(step, "ppo: skipped: {e:#}");
                    record["skipped"] = json!(format!("{e:#}"));
                    progress.inc("skipped a non-finite update");
                }
            }
            // 5. Log the step, checkpoint when due, and let the producer go on.
            telemetry::set(&STAGE_PROGRESS, self.name, step as f64 / stage.steps as f64);
            record["elapsed_seconds"] = json!(started.elapsed().as_secs_f64());
            dir.log(&record)?;
            done = step;
            let queued = (&mut pending, &mut *inbox);
            if self
                .checkpoint(actors, (step, &ptx_rng), queued, dir, &stop)
                .await?
            {
                break;
            }
            match publish {
                Some(weights) => board.publish(step, weights),
                None => board.republish(step),
            }
        }
        progress.finish();
        Ok(done)
    }

    /// An update's result as `on_nan` says: a non-finite update is skipped (the learner
    /// rolled it back) or stops the run naming the last good checkpoint; any other error
    /// ends the run.
    fn outcome(&self, updated: anyhow::Result<PpoStats>) -> anyhow::Result<Update> {
        match (updated, self.stage.algo.on_nan) {
            (Ok(stats), _) => Ok(Update::Trained(Box::new(stats))),
            (Err(e), OnNan::Skip) if non_finite(&e) => Ok(Update::Skipped(e)),
            (Err(e), OnNan::Stop) if non_finite(&e) => {
                let last = last_good(&self.states);
                Err(NonFiniteStop(format!(
                    "learner: {e:#}; stopping (on_nan = \"stop\"); the last good checkpoint is {last}"
                ))
                .into())
            }
            (Err(e), _) => Err(e.context("learner")),
        }
    }

    /// After `step`: a training-state checkpoint when one is due or a signal asks to stop;
    /// true when stopping. Call it before the producer hears of the step: the batches it
    /// may generate with the older weights (the next `max_staleness`, up to the last step)
    /// are taken from the inbox into `pending` and saved with the checkpoint.
    async fn checkpoint(
        &self,
        actors: &Actors,
        (step, ptx_rng): (u64, &Rng),
        (pending, inbox): (&mut VecDeque<Produced>, &mut mpsc::Receiver<Produced>),
        dir: &RunDir,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let stopping = *stop.borrow();
        let every = self.stage.checkpoint_every;
        if stopping || (every > 0 && step.is_multiple_of(every) && step < self.stage.steps) {
            let inflight = self.stage.max_staleness.min(self.stage.steps - step) as usize;
            while pending.len() < inflight {
                let produced = inbox.recv().await.ok_or_else(|| {
                    anyhow::anyhow!("the rollout producer stopped before a checkpoint")
                })?;
                pending.push_back(produced);
            }
            let at = (step, ptx_rng.state());
            let saved =
                checkpoint::save(actors, &self.states, at, pending.make_contiguous(), dir).await?;
            if stopping {
                info!(step, checkpoint = %saved.display(), "ppo: stopping on a signal after a checkpoint; continue with --resume");
            }
        }
        Ok(stopping)
    }
}

/// The update's figures into the step's record.
fn merge(record: &mut Value, stats: &PpoStats) -> anyhow::Result<()> {
    for (k, v) in serde_json::to_value(stats)?
        .as_object()
        .expect("stats object")
    {
        record[k] = v.clone();
    }
    Ok(())
}
