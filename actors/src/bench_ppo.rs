//! `rlhf bench ppo`: the PPO actor system on random models of a given shape, synchronous
//! (max_staleness 0) and asynchronous (1) in one invocation.

use crate::bench::{PpoBench, ShapeArgs};
use crate::ppo::{pipeline, spawn, ModelSource, Run, Tokens};
use crate::reward::Decoder;
use crate::run_dir::RunDir;
use rlhf::config::{Actors, Placement, PpoStage, RewardConfig, RunConfig};
use rlhf::device::DType;
use rlhf::model::Head;
use rlhf::optim::OptimizerConfig;
use rlhf::ppo::PpoConfig;
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use serde_json::{json, Value};
use std::sync::Arc;

/// Mean seconds of each phase over the timed steps, and the steady-state rate.
struct Timing {
    samples_per_second: f64,
    producer: f64,
    consumer: f64,
    phases: Value,
}

pub async fn run(shape: &ShapeArgs, settings: &PpoBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.steps >= 2,
        "--steps must be at least 2 (the first is a warm-up)"
    );
    let positions = settings.prompt_len + settings.new_tokens;
    let source = {
        let (policy_shape, reward_shape) = (Arc::new(shape.clone()), Arc::new(shape.clone()));
        ModelSource::new(
            Arc::new(move |device: &str| {
                policy_shape.random_model(Head::LanguageModel, positions, device)
            }),
            Arc::new(move |device: &str| {
                reward_shape.random_model(Head::Scalar, positions, device)
            }),
            RewardConfig::Model,
        )
    };
    let mut results = Vec::new();
    for staleness in [0u64, 1] {
        let stage = stage(shape, settings, staleness)?;
        let dir =
            std::env::temp_dir().join(format!("rlhf-bench-ppo-{}-{staleness}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = RunConfig::for_ppo(dir.clone(), 0, stage.clone());
        let mut run_dir = RunDir::create(&dir, &config)?;
        let mut rng = Rng::new(staleness);
        let prompts: Vec<Vec<i64>> = (0..settings.steps as usize * settings.batch)
            .map(|_| {
                (0..settings.prompt_len)
                    .map(|_| rng.below(shape.vocab as usize - 1) as i64)
                    .collect()
            })
            .collect();
        // No EOS: every response is new_tokens long, as in the peers' benchmarks.
        let actors = spawn(
            &stage,
            Tokens {
                eos: None,
                pad: 0,
                decoder: Decoder::ids_only(),
            },
            0,
            &source,
        )
        .await?;
        let run = Run {
            name: "bench",
            stage: &stage,
            seed: 0,
            from: None,
        };
        pipeline(&run, &actors, prompts, None, &mut run_dir).await?;
        actors.stop();
        let timing = timing(&dir.join("metrics.jsonl"), settings.batch)?;
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "{}",
            json!({"max_staleness": staleness, "samples_per_second": timing.samples_per_second, "phases_seconds": timing.phases})
        );
        results.push(timing);
    }
    let (sync, overlapped) = (&results[0], &results[1]);
    let ideal = (sync.producer + sync.consumer) / sync.producer.max(sync.consumer);
    let params = shape
        .random_model(Head::LanguageModel, positions, "cpu")?
        .config()
        .num_parameters();
    println!(
        "{}",
        json!({
            "bench": "ppo", "params": params, "batch": settings.batch, "prompt_len": settings.prompt_len,
            "new_tokens": settings.new_tokens, "ppo_epochs": settings.ppo_epochs, "minibatches": settings.minibatches,
            "actor_threads": settings.actor_threads, "dtype": shape.dtype, "timed_steps": settings.steps - 1,
            "samples_per_second_sync": sync.samples_per_second,
            "samples_per_second_async": overlapped.samples_per_second,
            "speedup": overlapped.samples_per_second / sync.samples_per_second,
            "ideal_speedup": ideal,
            "share_of_ideal": (overlapped.samples_per_second / sync.samples_per_second - 1.0) / (ideal - 1.0),
        })
    );
    Ok(())
}

fn stage(shape: &ShapeArgs, s: &PpoBench, max_staleness: u64) -> anyhow::Result<PpoStage> {
    let place = Placement {
        device: shape.device.clone(),
        threads: s.actor_threads,
    };
    Ok(PpoStage {
        policy: "random".into(),
        reward_model: "random".into(),
        prompts: "random".into(),
        pretrain: None,
        steps: s.steps,
        rollout_batch_size: s.batch,
        max_prompt_len: s.prompt_len as usize,
        max_new_tokens: s.new_tokens,
        max_staleness,
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
        actors: Actors {
            generator: place.clone(),
            reference: place.clone(),
            reward: place.clone(),
            learner: place,
        },
        reward: RewardConfig::Model,
        checkpoint_every: 0,
        keep_checkpoints: 1,
    })
}

/// Steady state from the metrics log: steps 2.. (step 1 warms up).
fn timing(path: &std::path::Path, batch: usize) -> anyhow::Result<Timing> {
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
        "learner": mean("learner_seconds"), "weight_sync": mean("weight_sync_seconds"), "queue_wait": mean("queue_wait_seconds"),
    });
    Ok(Timing {
        samples_per_second: (timed.len() * batch) as f64 / span,
        producer: mean("generate_seconds") + mean("reference_seconds") + mean("reward_seconds"),
        consumer: mean("learner_seconds") + mean("weight_sync_seconds"),
        phases,
    })
}
