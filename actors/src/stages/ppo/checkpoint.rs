//! Exact resume of a PPO run. A training-state checkpoint is taken at a step boundary,
//! after the weight sync and before the producer may start the next batch: the learner's
//! policy, value model, both optimizers, KL coefficient, version and minibatch rng; the
//! pretraining-batch rng; the step; the metrics lines
//! written; and, with `max_staleness` > 0, the batches already generated with older weights
//! ([`inflight`](super::inflight)). The prompt order is replayed from the seed, and every
//! episode samples from a stream keyed by its place in the run, so a resumed run repeats the
//! uninterrupted one at any staleness.

use super::actors::Actors;
use super::inflight;
use super::produce::Produced;
use crate::stages::resume::{self, Position};
use crate::stages::run_dir::RunDir;
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

/// Checkpoint the run after `step` with the batches in flight (call it before the producer
/// learns of the new weights).
pub async fn save(
    actors: &Actors,
    states: &Checkpoints,
    (step, ptx_rng): (u64, u64),
    inflight: &[Produced],
    dir: &RunDir,
) -> anyhow::Result<PathBuf> {
    let cursor = PpoCursor {
        step,
        ptx_rng,
        metrics_lines: dir.lines(),
    };
    resume::save(&actors.learner, states, &cursor, |dir| {
        inflight::save(dir, inflight)
    })
    .await
}

/// A checkpoint's cursor and the batches that were in flight, to continue from.
pub struct Resumed {
    pub cursor: PpoCursor,
    pub inflight: Vec<Produced>,
}

/// Restore the newest valid checkpoint into the learner; None when there is none. The
/// generator replicas load its weights from the run's weight board.
pub async fn restore(
    actors: &Actors,
    states: &Checkpoints,
    dir: &mut RunDir,
) -> anyhow::Result<Option<Resumed>> {
    let Some((cursor, path)) = resume::load::<PpoCursor>(&actors.learner, states, dir).await?
    else {
        return Ok(None);
    };
    let inflight = inflight::load(&path)?;
    Ok(Some(Resumed { cursor, inflight }))
}
