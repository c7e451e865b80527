//! `rlhf plan`: the memory plan of a configuration (see [`rlhf::plan`]), per stage, actor
//! and device, against each device's budget; and [`check`], which every training command
//! runs before it loads a model.

use anyhow::Context;
use rlhf::config::{canonical_device, RunConfig, StageConfig};
use rlhf::model::ModelConfig;
use rlhf::plan::{self, gib, Plan};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The stages `rlhf plan` knows, in the order the pipeline runs them.
const STAGES: [&str; 5] = ["pretrain", "sft", "rm", "dpo", "ppo"];
/// The most responses a ranking may have (the data format's K).
const MAX_RESPONSES: usize = 9;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Run configuration (TOML).
    #[arg(long, default_value = "configs/default.toml")]
    pub config: PathBuf,
    /// Plan this stage only (pretrain, sft, rm, dpo or ppo); default: every stage the
    /// config has.
    #[arg(long)]
    pub stage: Option<String>,
}

/// `rlhf plan`: print every stage's table; a stage that does not fit is the error.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config)?;
    let wanted: Vec<&str> = match &args.stage {
        Some(stage) => {
            anyhow::ensure!(
                STAGES.contains(&stage.as_str()),
                "--stage: unknown stage `{stage}`: expected one of {}",
                STAGES.join(", ")
            );
            vec![stage.as_str()]
        }
        None => STAGES.to_vec(),
    };
    let plans = stage_plans(&config, &args.config, &wanted)?;
    anyhow::ensure!(
        !plans.is_empty(),
        "{}: no stage to plan: the config has none of [{}]",
        args.config.display(),
        wanted.join("], [")
    );
    let mut first_error = None;
    for (stage, plan) in &plans {
        println!("[{stage}]");
        print!("{}", table(plan));
        let budgets = budgets(&config, plan);
        print!("{}", device_table(plan, &budgets));
        for note in &plan.notes {
            println!("note: {note}");
        }
        println!();
        if let Err(e) = fits(stage, plan, budgets) {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The check of a training command: each of `stages` the config has must fit its devices.
pub fn check(config_path: &Path, stages: &[&str]) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    for (stage, plan) in stage_plans(&config, config_path, stages)? {
        let budgets = budgets(&config, &plan);
        let known: Vec<(String, u64)> = budgets
            .iter()
            .filter_map(|(device, budget)| Some((device.clone(), *budget.as_ref().ok()?)))
            .collect();
        fits(&stage, &plan, budgets)?;
        let needs = plan.per_device();
        for (device, have) in known {
            tracing::info!(
                "plan: {stage} needs {} on {device} of {}",
                gib(needs[&device]),
                gib(have)
            );
        }
    }
    Ok(())
}

/// Whether `plan` fits: the shortfall, or a device without a budget, is the error.
fn fits(
    stage: &str,
    plan: &Plan,
    budgets: BTreeMap<String, anyhow::Result<u64>>,
) -> anyhow::Result<()> {
    let mut known = BTreeMap::new();
    for (device, budget) in budgets {
        known.insert(device, budget?);
    }
    plan.check(|device| known.get(device).copied())
        .map_err(|shortfall| anyhow::anyhow!("{shortfall} in stage {stage}"))
}

/// The plan of each of `stages` present in the config.
fn stage_plans(
    config: &RunConfig,
    path: &Path,
    stages: &[&str],
) -> anyhow::Result<Vec<(String, Plan)>> {
    let mut plans = Vec::new();
    let supervised = [
        ("pretrain", &config.pretrain),
        ("sft", &config.sft),
        ("rm", &config.rm),
        ("dpo", &config.dpo),
    ];
    for (name, section) in supervised {
        let Some(stage) = section.as_ref().filter(|_| stages.contains(&name)) else {
            continue;
        };
        let (model, mut notes) = model_config(config, &stage.init, path)?;
        let (k, note) = responses(name, stage, config);
        notes.extend(note);
        let mut plan = plan::supervised(name, stage, &model, k);
        plan.notes.splice(0..0, notes);
        plans.push((name.to_string(), plan));
    }
    if let Some(ppo) = config.ppo.as_ref().filter(|_| stages.contains(&"ppo")) {
        let (policy, mut notes) = model_config(config, &ppo.policy, path)?;
        let (reward, reward_notes) = model_config(config, &ppo.reward_model, path)?;
        notes.extend(reward_notes);
        let mut plan = plan::ppo(ppo, &policy, &reward);
        plan.notes.splice(0..0, notes);
        plans.push(("ppo".to_string(), plan));
        // The pipeline's PPO-ptx run adds a pretraining batch to each learner step.
        if let Some(pipeline) = config.pipeline.as_ref().filter(|p| p.ptx_coef > 0.0) {
            let mut ptx = ppo.clone();
            ptx.algo.ptx_coef = pipeline.ptx_coef;
            plans.push(("ppo_ptx".to_string(), plan::ppo(&ptx, &policy, &reward)));
        }
    }
    Ok(plans)
}

/// A model folder's `config.json`; before the pipeline has written the folder, the
/// `[model]` section's shape (with a note).
fn model_config(
    config: &RunConfig,
    folder: &Path,
    path: &Path,
) -> anyhow::Result<(ModelConfig, Vec<String>)> {
    let file = folder.join("config.json");
    if file.exists() {
        return Ok((ModelConfig::load(&file)?.0, Vec::new()));
    }
    let Some(model) = &config.model else {
        anyhow::bail!(
            "plan: {} not found (and {} has no [model] section to plan from)",
            file.display(),
            path.display()
        );
    };
    let vocab = config.tokenizer.vocab_size as i64;
    let raw = ModelConfig::new_json(&model.shape(vocab, vocab - 1));
    let model = ModelConfig::from_json(&raw, &file)?;
    let note = format!(
        "{} not written yet: planned with the [model] shape",
        folder.display()
    );
    Ok((model, vec![note]))
}

/// K, the responses per prompt of an rm or dpo stage: the most in its data file, or the
/// pipeline's `responses_per_prompt` before the pipeline has written it, or the format's
/// maximum.
fn responses(stage: &str, section: &StageConfig, config: &RunConfig) -> (usize, Option<String>) {
    if !matches!(stage, "rm" | "dpo") {
        return (1, None);
    }
    if let Ok(text) = std::fs::read_to_string(&section.data) {
        let k = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|record| match record.get("responses") {
                Some(serde_json::Value::Array(responses)) => responses.len(),
                _ => 2,
            })
            .max();
        if let Some(k) = k {
            return (k, None);
        }
    }
    let (k, source) = match &config.pipeline {
        Some(pipeline) => (
            pipeline.responses_per_prompt,
            "pipeline.responses_per_prompt",
        ),
        None => (MAX_RESPONSES, "the format's maximum"),
    };
    let note = format!(
        "{stage}: {} unreadable, K = {k} from {source}",
        section.data.display()
    );
    (k, Some(note))
}

/// Each device's budget: `[devices] memory`, else the machine's (CPU: MemTotal; CUDA:
/// nvidia-smi's total, as tch has no call for it); an error where neither is known.
fn budgets(config: &RunConfig, plan: &Plan) -> BTreeMap<String, anyhow::Result<u64>> {
    plan.per_device()
        .into_keys()
        .map(|device| {
            let budget = match config.devices.memory(&device) {
                Some(bytes) => Ok(bytes),
                None if device == "cpu" => physical_memory(),
                None => cuda_memory(&device),
            };
            (device, budget)
        })
        .collect()
}

/// MemTotal of /proc/meminfo.
fn physical_memory() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .context("plan: cannot read /proc/meminfo: set [devices] memory = { cpu = \"<size>\" }")?;
    text.lines()
        .find_map(|line| {
            let kb = line.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
            kb.trim().parse::<u64>().ok().map(|kb| kb * 1024)
        })
        .context("plan: no MemTotal in /proc/meminfo: set [devices] memory = { cpu = \"<size>\" }")
}

/// Total memory of `cuda:N` from nvidia-smi (N mapped through CUDA_VISIBLE_DEVICES).
fn cuda_memory(device: &str) -> anyhow::Result<u64> {
    let missing = || {
        format!(
            "plan: no memory figure for {device} (nvidia-smi cannot tell it): set [devices] \
             memory = {{ \"{device}\" = \"<size>\" }}"
        )
    };
    let index: usize = canonical_device(device)
        .strip_prefix("cuda:")
        .and_then(|n| n.parse().ok())
        .with_context(missing)?;
    let physical = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .nth(index)
            .map(|s| s.trim().to_string())
            .with_context(missing)?,
        _ => index.to_string(),
    };
    let output = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.total",
            "--format=csv,noheader,nounits",
            "-i",
            &physical,
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .with_context(missing)?;
    let mib: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()
        .with_context(missing)?;
    Ok(mib << 20)
}

/// One line per actor: its bytes by kind.
fn table(plan: &Plan) -> String {
    let mut out = format!(
        "{:<14} {:<8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10} {:>10}\n",
        "actor",
        "device",
        "weights",
        "grads",
        "optimizer",
        "kv cache",
        "activations",
        "other",
        "total"
    );
    for e in &plan.entries {
        let b = &e.bytes;
        let cell = |bytes: u64| if bytes == 0 { "-".into() } else { gib(bytes) };
        out += &format!(
            "{:<14} {:<8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10} {:>10}\n",
            e.actor,
            e.device,
            cell(b.weights),
            cell(b.grads),
            cell(b.optimizer),
            cell(b.kv_cache),
            cell(b.activations),
            cell(b.other),
            gib(b.total())
        );
    }
    out
}

/// One line per device: the plan's sum against the budget.
fn device_table(plan: &Plan, budgets: &BTreeMap<String, anyhow::Result<u64>>) -> String {
    let mut out = String::new();
    for (device, need) in plan.per_device() {
        let verdict = match budgets.get(&device) {
            Some(Ok(have)) if need <= *have => {
                format!("of {} ({} free)", gib(*have), gib(have - need))
            }
            Some(Ok(have)) => format!("of {} (short by {})", gib(*have), gib(need - have)),
            Some(Err(e)) => format!("(no budget: {e:#})"),
            None => String::new(),
        };
        out += &format!("{device:<8} total {} {verdict}\n", gib(need));
    }
    out
}
