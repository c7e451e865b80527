//! Exact resume: training-state checkpoints under `<stage>/state/`. For a supervised stage
//! they hold the learner's weights and optimizer state (hence the schedule position) and
//! the loop's cursor: epoch, batches done in it, the data-order random state at the epoch's
//! start, the best held-out figures so far, and how many metrics lines were written. A
//! resumed run replays the same batch order from the same state, so its weights and
//! metrics match an uninterrupted run's.

use super::run_dir::RunDir;
use crate::system::learner::{ask_common, Common, LearnerMsg};
use anyhow::Context;
use ractor::ActorRef;
use rlhf::checkpoint::Checkpoints;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const CURSOR: &str = "cursor.json";

/// Where the loop stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Optimizer steps done.
    pub step: u64,
    pub epoch: u64,
    /// Batches of `epoch` done.
    pub done_in_epoch: u64,
    /// The data-order rng's state when `epoch` began.
    pub rng_at_epoch: u64,
    /// The best held-out figures so far (loss, accuracy), if an epoch has ended.
    pub best: Option<(f64, Option<f64>)>,
    /// Lines of metrics.jsonl written up to this point.
    pub metrics_lines: u64,
}

/// Where a stage's loop stands, saved beside the learner's state.
pub trait Position: Serialize + DeserializeOwned {
    /// Steps done.
    fn step(&self) -> u64;
    /// Lines of metrics.jsonl written up to this point.
    fn metrics_lines(&self) -> u64;
}

impl Position for Cursor {
    fn step(&self) -> u64 {
        self.step
    }

    fn metrics_lines(&self) -> u64 {
        self.metrics_lines
    }
}

/// The checkpoint a stopped stage can continue from, for its error message.
pub fn last_good(checkpoints: &Checkpoints) -> String {
    match checkpoints.list().pop() {
        Some(p) => format!("{} (continue with --resume)", p.display()),
        None => "none yet: rerun from the start".to_string(),
    }
}

/// Write a training-state checkpoint at the cursor, with the files `extra` writes into
/// its folder.
pub async fn save<M: LearnerMsg>(
    learner: &ActorRef<M>,
    checkpoints: &Checkpoints,
    cursor: &impl Position,
    extra: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let staging = checkpoints.begin(cursor.step())?;
    let dir = staging.dir.clone();
    let written = async {
        ask_common(learner, |r| Common::SaveState(dir.clone(), r)).await?;
        extra(&dir)?;
        let text = serde_json::to_string_pretty(cursor).expect("cursors serialise");
        std::fs::write(dir.join(CURSOR), text).context("writing the cursor")
    }
    .await
    .map_err(|e| rlhf::Error::Invalid(format!("{e:#}")));
    Ok(checkpoints.finish(staging, written)?)
}

/// Restore the newest valid checkpoint into the learner and cut metrics.jsonl back to it;
/// returns its cursor and folder, None when there is none. Says which checkpoint it took and which it skipped.
pub async fn load<C: Position>(
    learner: &ActorRef<impl LearnerMsg>,
    checkpoints: &Checkpoints,
    dir: &mut RunDir,
) -> anyhow::Result<Option<(C, PathBuf)>> {
    let (found, skipped) = checkpoints.latest_valid();
    for line in skipped {
        tracing::warn!("resume: {line}");
    }
    let Some((path, _)) = found else {
        tracing::info!("resume: no valid checkpoint yet; starting from the beginning");
        return Ok(None);
    };
    let cursor_path = path.join(CURSOR);
    let text = std::fs::read_to_string(&cursor_path)
        .with_context(|| format!("reading {}", cursor_path.display()))?;
    let cursor: C = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a training cursor", cursor_path.display()))?;
    let state = path.clone();
    ask_common(learner, |r| Common::LoadState(state, r)).await?;
    dir.truncate_metrics(cursor.metrics_lines())?;
    tracing::info!(
        checkpoint = %path.display(),
        step = cursor.step(),
        "resume: continuing from the newest valid checkpoint"
    );
    Ok(Some((cursor, path)))
}
