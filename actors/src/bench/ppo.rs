//! `rlhf bench ppo`: the PPO actor system on random models of a given shape or on
//! Hugging Face folders, synchronous (max_staleness 0) and asynchronous (1) in one
//! invocation, `--repeats` times each (alternating, each after an optional idle wait).

use super::nodes::NodeProcs;
use super::shape::{load_folder, merge, ShapeArgs};
use super::sys::{self, PpoWork};
use crate::stages::ppo::{pipeline, shared_bases, spawn, ModelSource, Run, Tokens};
use crate::stages::run_dir::RunDir;
use crate::system::reward::Decoder;
use crate::system::reward::LoadModel;
use clap::Args;
use rlhf::config::{Actors, ChatConfig, DataKeys, Placement, PpoStage, RewardConfig, RunConfig};
use rlhf::data::read_prompts;
use rlhf::device::DType;
use rlhf::model::Head;
use rlhf::optim::OptimizerConfig;
use rlhf::ppo::PpoConfig;
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use rlhf::text_side::TextSide;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Settings of `rlhf bench ppo` besides the model shape.
#[derive(Args)]
pub struct PpoBench {
    /// Reward model folder (scalar head; it also initialises the value model). Defaults
    /// to --model, with a fresh scalar head, or to a random model of the shape flags.
    #[arg(long, value_name = "DIR")]
    pub reward_model: Option<PathBuf>,
    /// Prompts (episodes) per rollout batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub prompt_len: i64,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: i64,
    /// PPO steps per setting and repeat; the first is a warm-up and not counted.
    #[arg(long, default_value_t = 6)]
    pub steps: u64,
    #[arg(long, default_value_t = 1)]
    pub ppo_epochs: usize,
    #[arg(long, default_value_t = 1)]
    pub minibatches: usize,
    /// libtorch threads of each actor (the generator and the learner run in parallel).
    #[arg(long, default_value_t = 1)]
    pub actor_threads: i32,
    /// libtorch threads of the learner alone (default: --actor-threads).
    #[arg(long)]
    pub learner_threads: Option<i32>,
    /// Real prompts with real lengths: this JSONL file's prompts (the PPO prompt forms,
    /// cycled), rendered with --model's chat template; responses stop at the model's EOS
    /// ids. Needs --model; --prompt-len is then ignored.
    #[arg(long, value_name = "FILE", requires = "model")]
    pub prompts: Option<PathBuf>,
    /// Generator replicas (local, each with --actor-threads threads on --device).
    #[arg(long, default_value_t = 1)]
    pub generators: usize,
    /// Reference-policy replicas.
    #[arg(long, default_value_t = 1)]
    pub references: usize,
    /// Reward replicas.
    #[arg(long, default_value_t = 1)]
    pub rewards: usize,
    /// Generator replicas as node processes on loopback (`rlhf node --role generator`),
    /// besides --generators local ones (which may then be 0).
    #[arg(long, default_value_t = 0)]
    pub generator_nodes: usize,
    /// Reference replicas as node processes on loopback, besides --references local ones.
    #[arg(long, default_value_t = 0)]
    pub reference_nodes: usize,
    /// Chunks each rollout batch is split into (`ppo.rollout_chunks`; default: the most
    /// replicas of any kind).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Recompute each block in the learner's backward pass (`ppo.gradient_checkpointing`).
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

/// Mean seconds of each phase over the timed steps, and the steady-state rate.
struct Timing {
    samples_per_second: f64,
    producer: f64,
    consumer: f64,
    phases: Value,
    /// Mean prompt and response tokens of an episode.
    prompt_tokens: f64,
    response_tokens: f64,
}

pub async fn run(shape: &ShapeArgs, settings: &PpoBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.steps >= 2,
        "--steps must be at least 2 (the first is a warm-up)"
    );
    anyhow::ensure!(settings.batch > 0, "--batch must be at least 1");
    let positions = settings.prompt_len + settings.new_tokens;
    let policy_config = shape
        .build_model(Head::LanguageModel, positions, "cpu")?
        .config()
        .clone();
    let value_config = match &settings.reward_model {
        Some(dir) => load_folder(dir, Head::Scalar, (&shape.dtype, "cpu"), positions, None)?
            .config()
            .clone(),
        None => policy_config.clone(),
    };
    let source = {
        let policy_shape = Arc::new(shape.clone());
        let reward_shape = policy_shape.clone();
        let (reward_dir, dtype, lora) = (
            settings.reward_model.clone(),
            shape.dtype.clone(),
            shape.lora(),
        );
        let policy =
            move |device: &str| policy_shape.build_model(Head::LanguageModel, positions, device);
        let reward = move |device: &str| match &reward_dir {
            Some(dir) => {
                let on = (dtype.as_str(), device);
                load_folder(dir, Head::Scalar, on, positions, lora.clone())
            }
            None => reward_shape.build_model(Head::Scalar, positions, device),
        };
        // With LoRA every actor on a device shares one base, as `rlhf ppo` loads them.
        let (policy, reward): (LoadModel, LoadModel) = match shape.lora_rank > 0 {
            true => (shared_bases(policy), shared_bases(reward)),
            false => (Arc::new(policy), Arc::new(reward)),
        };
        ModelSource::new(policy, reward, RewardConfig::Model)
    };
    let peak = shape.peak()?;
    let vocab = policy_config.vocab_size;
    let mut results: [Vec<Timing>; 2] = [Vec::new(), Vec::new()];
    for repeat in 1..=shape.repeats {
        for staleness in [0u64, 1] {
            let idle = shape.idle().wait();
            let timing = run_once(shape, settings, staleness, vocab, &source).await?;
            let mut line = json!({"repeat": repeat, "max_staleness": staleness, "samples_per_second": timing.samples_per_second, "phases_seconds": timing.phases});
            merge(&mut line, &idle.json());
            println!("{line}");
            results[staleness as usize].push(timing);
        }
    }
    for runs in &mut results {
        runs.sort_by(|a, b| a.samples_per_second.total_cmp(&b.samples_per_second));
    }
    let median = |runs: &[Timing]| runs.len() / 2;
    let (sync, overlapped) = (
        &results[0][median(&results[0])],
        &results[1][median(&results[1])],
    );
    let rates = |runs: &[Timing]| {
        (
            runs[0].samples_per_second,
            runs[runs.len() - 1].samples_per_second,
        )
    };
    let ((sync_min, sync_max), (async_min, async_max)) = (rates(&results[0]), rates(&results[1]));
    let ideal = (sync.producer + sync.consumer) / sync.producer.max(sync.consumer);
    let chunks = stage(shape, settings, 0)?.actors.chunks(settings.chunks);
    // With real prompts, the lengths the episodes had (responses stop at EOS).
    let step_flops = sys::ppo_step_flops(&PpoWork {
        policy_params: policy_config.num_parameters(),
        value_params: value_config.num_parameters(),
        batch: settings.batch as i64,
        prompt_len: sync.prompt_tokens.round() as i64,
        new_tokens: sync.response_tokens.round() as i64,
        ppo_epochs: settings.ppo_epochs as i64,
    });
    let flops = |samples_per_second: f64| step_flops * samples_per_second / settings.batch as f64;
    let mut summary = shape.describe(&policy_config);
    merge(
        &mut summary,
        &json!({
            "bench": "ppo", "batch": settings.batch, "prompt_len": settings.prompt_len,
            "new_tokens": settings.new_tokens, "ppo_epochs": settings.ppo_epochs, "minibatches": settings.minibatches,
            "actor_threads": settings.actor_threads,
            "generators": settings.generators, "references": settings.references,
            "generator_nodes": settings.generator_nodes, "reference_nodes": settings.reference_nodes,
            "rewards": settings.rewards, "rollout_chunks": chunks,
            "learner_threads": settings.learner_threads.unwrap_or(settings.actor_threads), "timed_steps": settings.steps - 1,
            "reward_model": settings.reward_model.as_ref().map(|d| d.display().to_string()),
            "prompts": settings.prompts.as_ref().map(|f| f.display().to_string()),
            "value_params": value_config.num_parameters(),
            "mean_prompt_tokens": sync.prompt_tokens, "mean_response_tokens": sync.response_tokens,
            "samples_per_second_sync": sync.samples_per_second,
            "samples_per_second_sync_min": sync_min,
            "samples_per_second_sync_max": sync_max,
            "samples_per_second_async": overlapped.samples_per_second,
            "samples_per_second_async_min": async_min,
            "samples_per_second_async_max": async_max,
            "phases_seconds_sync": sync.phases,
            "phases_seconds_async": overlapped.phases,
            "speedup": overlapped.samples_per_second / sync.samples_per_second,
            "ideal_speedup": ideal,
            "share_of_ideal": (overlapped.samples_per_second / sync.samples_per_second - 1.0) / (ideal - 1.0),
            "flops_per_step": step_flops,
            "flops_per_second_sync": flops(sync.samples_per_second),
            "flops_per_second_async": flops(overlapped.samples_per_second),
            "matmul_peak_flops_per_second": peak.flops_per_second,
            "peak_fraction_sync": sys::peak_fraction(flops(sync.samples_per_second), &peak),
            "peak_fraction_async": sys::peak_fraction(flops(overlapped.samples_per_second), &peak),
            "peak_rss_bytes": sys::peak_rss_bytes(),
        }),
    );
    println!("{summary}");
    Ok(())
}

/// One PPO run of `settings.steps` steps at `staleness`, timed from its metrics log.
async fn run_once(
    shape: &ShapeArgs,
    settings: &PpoBench,
    staleness: u64,
    vocab: i64,
    source: &ModelSource,
) -> anyhow::Result<Timing> {
    let mut stage = stage(shape, settings, staleness)?;
    let dir =
        std::env::temp_dir().join(format!("rlhf-bench-ppo-{}-{staleness}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let nodes = match stage.has_nodes() {
        true => {
            // The nodes load the policy from a folder: --model's, or this shape's, saved.
            let policy = match &shape.model {
                Some(dir) => dir.clone(),
                None => {
                    let folder = dir.join("node-policy");
                    (source.policy)("cpu")?.save(&folder)?;
                    folder
                }
            };
            let counts = (settings.generator_nodes, settings.reference_nodes);
            Some(NodeProcs::start(&dir, &mut stage, &policy, counts)?)
        }
        false => None,
    };
    let config = RunConfig::for_ppo(dir.clone(), 0, stage.clone());
    let mut run_dir = RunDir::create(&dir, &config)?;
    let episodes = settings.steps as usize * settings.batch;
    let (prompts, tokens) = match (&settings.prompts, &shape.model) {
        (Some(file), Some(model)) => real_prompts(model, file, episodes)?,
        _ => {
            let mut rng = Rng::new(staleness);
            let prompts = (0..episodes)
                .map(|_| {
                    (0..settings.prompt_len)
                        .map(|_| rng.below(vocab as usize - 1) as i64)
                        .collect()
                })
                .collect();
            // No EOS: every response is new_tokens long, as in the peers' benchmarks.
            let tokens = Tokens {
                eos: Vec::new(),
                pad: 0,
                decoder: Decoder::ids_only(),
            };
            (prompts, tokens)
        }
    };
    let actors = spawn(&stage, tokens, 0, source).await?;
    let run = Run {
        name: "bench",
        stage: &stage,
        seed: 0,
        from: None,
    };
    let prompt_tokens = prompts.iter().map(Vec::len).sum::<usize>() as f64 / prompts.len() as f64;
    let result = pipeline(run, &actors, prompts, None, &mut run_dir).await;
    actors.stop();
    result?;
    if let Some(nodes) = nodes {
        nodes.finish()?;
    }
    let replicas = (
        settings.generators + settings.generator_nodes,
        settings.references + settings.reference_nodes,
        settings.rewards,
    );
    let timing = timing(
        &dir.join("metrics.jsonl"),
        settings.batch,
        prompt_tokens,
        replicas,
    );
    let _ = std::fs::remove_dir_all(&dir);
    timing
}

/// `count` prompts cycled from `file`, in the template of the model folder `dir`, and the
/// folder's EOS and pad ids.
fn real_prompts(dir: &Path, file: &Path, count: usize) -> anyhow::Result<(Vec<Vec<i64>>, Tokens)> {
    let text = TextSide::load(dir, &ChatConfig::default())?;
    let read = read_prompts(file, &text.template, &DataKeys::default())?;
    let prompts = read
        .iter()
        .cycle()
        .take(count)
        .map(|p| text.encode_prompt(&p.text))
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = Tokens {
        eos: text.eos_token_ids().to_vec(),
        pad: text.tokenizer.pad_id(),
        decoder: Decoder::ids_only(),
    };
    Ok((prompts, tokens))
}

fn stage(shape: &ShapeArgs, s: &PpoBench, max_staleness: u64) -> anyhow::Result<PpoStage> {
    let place = Placement::single(&shape.device, s.actor_threads);
    let folder =
        |dir: Option<&std::path::PathBuf>| dir.map_or("random".into(), std::path::PathBuf::clone);
    let stage = PpoStage {
        policy: folder(shape.model.as_ref()),
        reward_model: folder(s.reward_model.as_ref().or(shape.model.as_ref())),
        prompts: "random".into(),
        keys: Default::default(),
        truncate: Default::default(),
        pretrain: None,
        steps: s.steps,
        rollout_batch_size: s.batch,
        max_prompt_len: s.prompt_len as usize,
        max_new_tokens: s.new_tokens,
        max_staleness,
        rollout_chunks: s.chunks,
        ptx_batch_size: 1,
        ptx_seq_len: 1,
        sampling: Sampling::default(),
        algo: PpoConfig {
            ppo_epochs: s.ppo_epochs,
            minibatches: s.minibatches,
            ..PpoConfig::default()
        },
        optimizer: OptimizerConfig {
            lr: 1e-6,
            ..OptimizerConfig::default()
        },
        dtype: DType::parse(&shape.dtype)?,
        lora: shape.lora(),
        gradient_checkpointing: s.gradient_checkpointing,
        actors: Actors {
            generator: Placement {
                replicas: s.generators,
                nodes: s.generator_nodes,
                ..place.clone()
            },
            reference: Placement {
                replicas: s.references,
                nodes: s.reference_nodes,
                ..place.clone()
            },
            reward: Placement {
                replicas: s.rewards,
                ..place.clone()
            },
            learner: Placement {
                threads: s.learner_threads.unwrap_or(s.actor_threads),
                ..place
            },
        },
        reward: RewardConfig::Model,
        cluster: Default::default(),
        checkpoint_every: 0,
        keep_checkpoints: 1,
    };
    stage.validate().map_err(anyhow::Error::msg)?;
    Ok(stage)
}

/// Steady state from the metrics log: steps 2.. (step 1 warms up).
/// The timed steps' figures from a run's metrics log; `prompt_tokens` is the prompts' mean
/// length.
fn timing(
    path: &std::path::Path,
    batch: usize,
    prompt_tokens: f64,
    replicas: (usize, usize, usize),
) -> anyhow::Result<Timing> {
    let records: Vec<Value> = std::fs::read_to_string(path)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?
        .into_iter()
        .filter(|r| r.get("policy_version").is_some())
        .collect();
    anyhow::ensure!(
        records.len() >= 2,
        "the PPO run stopped after {} steps; at least 2 are needed",
        records.len()
    );
    let timed = &records[1..];
    let mean = |key: &str| {
        timed
            .iter()
            .map(|r| r[key].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / timed.len() as f64
    };
    let span = records[records.len() - 1]["elapsed_seconds"]
        .as_f64()
        .unwrap_or(0.0)
        - records[0]["elapsed_seconds"].as_f64().unwrap_or(0.0);
    let phases = json!({
        "generate": mean("generate_seconds"), "reference": mean("reference_seconds"), "reward": mean("reward_seconds"),
        "learner": mean("learner_seconds"), "weight_sync": mean("weight_sync_seconds"),
        "weight_load": mean("weight_load_seconds"), "queue_wait": mean("queue_wait_seconds"),
    });
    // The producer's critical path: each stage's busy seconds shared among its replicas.
    let producer = (mean("weight_load_seconds") + mean("generate_seconds")) / replicas.0 as f64
        + mean("reference_seconds") / replicas.1 as f64
        + mean("reward_seconds") / replicas.2 as f64;
    Ok(Timing {
        samples_per_second: (timed.len() * batch) as f64 / span,
        producer,
        consumer: mean("learner_seconds") + mean("weight_sync_seconds"),
        phases,
        prompt_tokens,
        response_tokens: mean("response_length_mean"),
    })
}
