//! `rlhf pipeline`: the whole method on the embedded world in one command. World and
//! tokenizer -> pretraining on prose -> SFT on the labeler's demonstrations -> K sampled
//! responses per prompt ranked by the labeler -> reward model -> PPO, PPO-ptx and PPO
//! against the gold labeler itself (and, when configured, DPO on the rankings and GRPO
//! against the reward model) -> evaluation by the gold labeler with report.md.
//!
//! Each stage writes `<run_dir>/<stage>/done.json` when it finishes; a rerun skips the
//! finished stages and redoes an unfinished one from its start.

pub mod data;
pub mod eval;
pub mod gold;
pub mod init;
pub mod label;
pub mod layout;
mod world;

use crate::stages;
use crate::stages::ppo::{run_variant, ModelSource};
use anyhow::{bail, Context};
use gold::GoldReward;
use layout::Layout;
use rlhf::config::{PipelineConfig, PpoStage, RunConfig};
use rlhf::world::labeler::Labeler;
use serde_json::json;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tracing::info;
use world::world_of_run;

pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    match stages(config_path).await {
        Err(e) if e.is::<Stopped>() => {
            info!("pipeline: stopped on a signal after a checkpoint; rerun to continue");
            Ok(())
        }
        outcome => outcome,
    }
}

/// A stage stopped early on SIGINT or SIGTERM (after checkpointing): not an error, but
/// nothing after it may run.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped on a signal")
    }
}

impl std::error::Error for Stopped {}

async fn stages(config_path: &Path) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    let pipeline = RunConfig::section(&config.pipeline, "pipeline", config_path)?.clone();
    let layout = Layout::new(&config.run_dir);
    layout.check(&config, config_path)?;
    guard_config(&config, config_path)?;
    let started = Instant::now();
    let cfg = &config;
    step(&layout, "data", Partial::Remove, async {
        let (config, path) = (config.clone(), config_path.to_path_buf());
        blocking(move || data::build(&config, &path)).await
    })
    .await?;
    step(
        &layout,
        "pretrain",
        Partial::Resume,
        stages::pretrain::run(config_path, true),
    )
    .await?;
    step(
        &layout,
        "sft",
        Partial::Resume,
        stages::sft::run(config_path, true),
    )
    .await?;
    step(&layout, "label", Partial::Remove, async {
        let config = config.clone();
        blocking(move || label::run(&config)).await
    })
    .await?;
    step(
        &layout,
        "rm",
        Partial::Resume,
        stages::rm::run(config_path, true),
    )
    .await?;
    if cfg.dpo.is_some() {
        step(
            &layout,
            "dpo",
            Partial::Resume,
            stages::dpo::run(config_path, true),
        )
        .await?;
    }
    let ppo = cfg.ppo.clone().expect("checked by the layout");
    let gold = gold_source(cfg);
    for (name, variant) in variants(&ppo, &pipeline) {
        step(&layout, name, Partial::Resume, async {
            let mut source = ModelSource::from_folders(&variant);
            let reward = source.scorers.clone();
            let gold = gold.clone();
            source.scorers = if name == "ppo_gold" {
                Arc::new(move |_device: &str| {
                    Ok(crate::system::scorers::RewardEngine::new(gold()?))
                })
            } else {
                // The learned reward drives PPO; the gold labeler watches (over-optimisation).
                Arc::new(move |device: &str| {
                    let mut engine = reward(device)?;
                    engine.monitor = Some(Box::new(gold()?));
                    Ok(engine)
                })
            };
            run_variant(cfg, &variant, name, &source, true).await
        })
        .await?;
    }
    let before_eval = started.elapsed().as_secs_f64();
    step(&layout, "eval", Partial::Remove, async {
        let config = config.clone();
        blocking(move || eval::run(&config, before_eval)).await
    })
    .await?;
    let report = layout.root.join("eval").join("report.md");
    info!(
        seconds = started.elapsed().as_secs_f64(),
        report = %report.display(),
        "pipeline finished"
    );
    let summary = layout.root.join("eval").join("summary.txt");
    if let Ok(table) = std::fs::read_to_string(&summary) {
        println!("{table}");
    }
    Ok(())
}

/// The PPO runs: plain PPO, PPO-ptx, (if asked) PPO against the gold labeler, and (if
/// asked) GRPO.
fn variants(ppo: &PpoStage, pipeline: &PipelineConfig) -> Vec<(&'static str, PpoStage)> {
    let mut plain = ppo.clone();
    plain.algo.ptx_coef = 0.0;
    let mut ptx = ppo.clone();
    ptx.algo.ptx_coef = pipeline.ptx_coef;
    let mut out = vec![("ppo", plain.clone()), ("ppo_ptx", ptx)];
    if pipeline.gold_reference {
        out.push(("ppo_gold", plain.clone()));
    }
    if let Some(grpo) = &pipeline.grpo {
        out.push(("grpo", grpo.apply(plain)));
    }
    out
}

type GoldBuild = Arc<dyn Fn() -> anyhow::Result<GoldReward> + Send + Sync>;

/// Builds the gold labeler as a reward scorer over the PPO prompts.
fn gold_source(config: &RunConfig) -> GoldBuild {
    let config = config.clone();
    Arc::new(move || {
        let (world, pools) = world_of_run(&config)?;
        let labeler = Labeler { disagreement: 0.0 };
        Ok(GoldReward::new(world, labeler, pools.ppo))
    })
}

/// What happens to an unfinished earlier attempt of a stage.
#[derive(Clone, Copy)]
enum Partial {
    /// The stage resumes from its newest valid training-state checkpoint, if any.
    Resume,
    /// The stage starts over.
    Remove,
}

/// Run a stage unless its done marker exists.
async fn step(
    layout: &Layout,
    name: &str,
    partial: Partial,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let marker = layout.done(name);
    if marker.exists() {
        info!(stage = name, marker = %marker.display(), "already done; delete the stage's folder to redo it");
        return Ok(());
    }
    let dir = layout.root.join(name);
    // Resume only from a valid checkpoint; without one, a partial attempt is garbage.
    let resumable = rlhf::checkpoint::Checkpoints::new(dir.join("state"), 1)
        .latest_valid()
        .0
        .is_some();
    match partial {
        Partial::Resume if resumable => {
            info!(stage = name, "pipeline: resuming the unfinished stage")
        }
        _ if dir.exists() => std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the unfinished {}", dir.display()))?,
        _ => {}
    }
    info!(stage = name, "pipeline: starting");
    let started = Instant::now();
    work.await
        .with_context(|| format!("pipeline stage `{name}`"))?;
    if crate::system::shutdown::requested() {
        // The stage stopped early on a signal, after a checkpoint: not done.
        return Err(Stopped.into());
    }
    let seconds = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        &marker,
        json!({"stage": name, "seconds": seconds}).to_string(),
    )
    .with_context(|| format!("writing {}", marker.display()))?;
    info!(stage = name, seconds, "pipeline: done");
    Ok(())
}

/// A run directory belongs to one configuration: reusing finished stages made with other
/// settings would mix two experiments.
fn guard_config(config: &RunConfig, config_path: &Path) -> anyhow::Result<()> {
    // Where metrics are served does not change what the run computes.
    let comparable = |c: &RunConfig| {
        let mut c = c.clone();
        c.metrics = Default::default();
        toml::to_string_pretty(&c).context("serialising the resolved config")
    };
    let resolved = comparable(config)?;
    let path = config.run_dir.join("config.toml");
    let previous = std::fs::read_to_string(&path)
        .ok()
        .map(|text| toml::from_str::<RunConfig>(&text).map(|c| comparable(&c)));
    match previous {
        Some(Ok(Ok(previous))) if previous != resolved => bail!(
            "{} was made with a different configuration than {}; choose another run_dir or delete it",
            config.run_dir.display(),
            config_path.display()
        ),
        Some(Ok(Ok(_))) => Ok(()),
        Some(_) => bail!(
            "{} is not a readable run configuration; choose another run_dir or delete it",
            path.display()
        ),
        None => crate::pipeline::init::write_resolved(config),
    }
}

/// Tensor work off the async runtime.
async fn blocking(
    work: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| anyhow::anyhow!("a pipeline stage panicked: {e}"))?
}
