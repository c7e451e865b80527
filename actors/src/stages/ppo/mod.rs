//! Stage 3, `rlhf ppo`: PPO (and PPO-ptx) as an actor system.
//!
//! ```text
//! prompts -> Generators -> ReferencePolicies -> RewardModels -> bounded channel -> Learner
//! Learner --(weights after step j)--> weight board --> Generators (for batch j + max_staleness)
//! ```
//! A producer task splits each rollout batch into chunks and streams them through the
//! generator, reference and reward replicas (each stage works on a different chunk or batch
//! at the same time), gathering each batch in order; the consumer feeds the learner and
//! publishes its weights. Batch k is sampled with the weights after step k - max_staleness
//! exactly, so `max_staleness = 0` is synchronous PPO and 1 lets batch k+1 be generated while
//! batch k trains; no batch is ever more than `max_staleness` versions old, and neither timing
//! nor the replica layout changes what is sampled. Each step records its staleness.
//!
//! The files, in the order a step runs through them: [`actors`] (the actors, their replicas,
//! and where their models come from), [`prompts`] (what is sampled), [`produce`] (chunk,
//! generate, score, gather, queue), [`consume`] (update, log, checkpoint, publish), [`weights`]
//! (the published weights), [`run`] (both sides of one run), [`checkpoint`] (exact resume at a
//! step boundary, with the [`inflight`] batches) and [`metrics`] (what a step exports).

mod actors;
mod checkpoint;
mod consume;
mod inflight;
mod metrics;
mod nodes;
mod produce;
mod prompts;
mod replica;
#[cfg(test)]
mod replica_tests;
mod run;
#[cfg(test)]
mod stale_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;
mod weights;
mod work_queue;

pub use actors::{shared_bases, spawn, ModelSource, Tokens};
pub use run::{pipeline, Run};

use crate::stages::resume::last_good;
use crate::stages::run_dir::RunDir;
use crate::stages::supervised::save;
use consume::NonFiniteStop;
use rlhf::checkpoint::Checkpoints;
use rlhf::config::{PpoStage, RunConfig};
use rlhf::text_side::TextSide;
use std::path::Path;
use tracing::info;

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
    let text = TextSide::load(&stage.policy, &config.chat)?;
    let tokenizer = &text.tokenizer;
    let (prompts, raw) = prompts::tokenize_prompts(&stage, &text, &mut dir)?;
    let ptx = match (&stage.pretrain, stage.algo.ptx_coef > 0.0) {
        (Some(path), true) => Some(prompts::pretrain_sequences(
            path,
            &stage.keys,
            tokenizer,
            stage.ptx_seq_len,
        )?),
        _ => None,
    };
    let tokens = Tokens {
        eos: text.eos_token_ids().to_vec(),
        pad: tokenizer.pad_id(),
        decoder: crate::system::reward::Decoder::new(
            tokenizer.clone(),
            text.eos_token_ids().to_vec(),
            prompts.iter().cloned().zip(raw),
        ),
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
    let outcome = pipeline(run, &actors, prompts, ptx.as_deref(), &mut dir).await;
    let last = dir.path("checkpoints/last");
    if outcome.as_ref().is_err_and(|e| e.is::<NonFiniteStop>()) {
        // The learner may hold part of the failed update (on_nan = "stop" keeps no copy to
        // roll back to): the training-state checkpoint the error names is the last good one.
        info!(
            run = name,
            "ppo: not saving the policy of a stopped non-finite update"
        );
    } else {
        match save(&actors.learner, &text, &last).await {
            Ok(()) => info!(run = name, dir = %last.display(), "ppo: saved the policy"),
            Err(e) => tracing::error!("ppo: could not save a checkpoint: {e:#}"),
        }
    }
    actors.stop();
    outcome.map(|_| ()).map_err(|e| {
        if e.is::<NonFiniteStop>() {
            return e;
        }
        // An actor failed: say where the run can continue from.
        let states = Checkpoints::new(dir.path("state"), stage.keep_checkpoints);
        anyhow::anyhow!(
            "{e:#}; the last training-state checkpoint is {}",
            last_good(&states)
        )
    })
}
