//! Exact resume of a PPO run. A training-state checkpoint is taken at a step boundary,
//! after the weight sync and before the producer may start the next batch: the learner's
//! policy, value model, both optimizers, KL coefficient, version and minibatch rng; the
//! generator's rng and next batch id; the pretraining-batch rng; the step; and the metrics
//! lines written. The prompt order is replayed from the seed. With `max_staleness = 0`
//! nothing is in flight at that point, so a resumed run repeats the uninterrupted one; with
//! 1, the batch generated during the checkpoint is generated again from a later rng state
//! (valid PPO, not the same samples).

use super::actors::Actors;
use crate::stages::resume::{self, Position};
use crate::stages::run_dir::RunDir;
use crate::system::generator::{GeneratorMsg, SamplerState};
use crate::system::rpc::ask;
use anyhow::Context;
use rlhf::checkpoint::Checkpoints;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a PPO run stands at a step boundary.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PpoCursor {
    /// PPO steps done.
    pub step: u64,
    /// The rng that picks pretraining batches (PPO-ptx).
    pub ptx_rng: u64,
    pub sampler: SamplerState,
    pub metrics_lines: u64,
}

impl Position for PpoCursor {
    fn step(&self) -> u64 {
        self.step
    }

    fn metrics_lines(&self) -> u64 {
        self.metrics_lines
    }
}

/// Checkpoint the run after `step` (the generator must be idle: call it before the
/// producer learns of the new weights).
pub async fn save(
    actors: &Actors,
    states: &Checkpoints,
    step: u64,
    ptx_rng: u64,
    dir: &RunDir,
) -> anyhow::Result<PathBuf> {
    let sampler = ask(&actors.generator, "generator", GeneratorMsg::Snapshot)
        .await
        .context("generator")?;
    let cursor = PpoCursor {
        step,
        ptx_rng,
        sampler,
        metrics_lines: dir.lines(),
    };
    resume::save(&actors.learner, states, &cursor).await
}

/// Restore the newest valid checkpoint into the actors (the learner's state, then the
/// generator's weights and rng); None when there is none.
pub async fn restore(
    actors: &Actors,
    states: &Checkpoints,
    dir: &mut RunDir,
) -> anyhow::Result<Option<PpoCursor>> {
    let Some(cursor) = resume::load::<PpoCursor>(&actors.learner, states, dir).await? else {
        return Ok(None);
    };
    actors.sync_generator().await?;
    ask(&actors.generator, "generator", |r| {
        GeneratorMsg::Restore(cursor.sampler, r)
    })
    .await
    .context("generator")?;
    Ok(Some(cursor))
}
