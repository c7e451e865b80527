//! Results independent of the layout: with the rollout chunks fixed, a run with one, two or
//! three generator replicas (and two reference and reward replicas) trains on the same
//! episodes and ends with bit-identical weights.

use super::tests::{source, stage};
use super::*;
use crate::system::learner::{ask_common, Common};
use crate::system::reward::Decoder;
use serde_json::Value;
use tch::Tensor;

/// A synchronous 3-step run of 6 episodes a batch in 6 chunks, with `replicas` generator,
/// reference and reward replicas: the final weights and each step's record.
async fn run_with(replicas: (usize, usize, usize)) -> (Vec<(String, Tensor)>, Vec<Value>) {
    let mut stage = stage();
    stage.rollout_batch_size = 6;
    stage.rollout_chunks = Some(6);
    stage.algo.minibatches = 3;
    let a = &mut stage.actors;
    (
        a.generator.replicas,
        a.reference.replicas,
        a.reward.replicas,
    ) = replicas;
    let tokens = Tokens {
        eos: vec![63],
        pad: 0,
        decoder: Decoder::ids_only(),
    };
    let (g, r, w) = replicas;
    let dir = std::env::temp_dir().join(format!(
        "rlhf-ppo-replicas-{g}{r}{w}-{}",
        std::process::id()
    ));
    let config = RunConfig::for_ppo(dir.clone(), 5, stage.clone());
    let mut run_dir = RunDir::create(&dir, &config).unwrap();
    let actors = spawn(&stage, tokens, 5, &source()).await.unwrap();
    let prompts: Vec<Vec<i64>> = (0..9).map(|i| (1..2 + i % 5).collect()).collect();
    let run = Run {
        name: "ppo",
        stage: &stage,
        seed: 5,
        from: None,
    };
    assert_eq!(
        pipeline(run, &actors, prompts, None, &mut run_dir)
            .await
            .unwrap(),
        3
    );
    let (_, weights) = ask_common(&actors.learner, Common::Weights).await.unwrap();
    actors.stop();
    let records = std::fs::read_to_string(run_dir.path("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("policy_version").is_some())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (weights, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_two_or_three_generators_train_the_same_weights() {
    use crate::system::telemetry::tests::{endpoint, scrape};
    let addr = endpoint();
    let (weights, records) = run_with((1, 1, 1)).await;
    assert_eq!(records.len(), 3);
    for layout in [(2, 1, 1), (3, 2, 2)] {
        let (other, other_records) = run_with(layout).await;
        for (a, b) in records.iter().zip(&other_records) {
            for key in [
                "score_mean",
                "response_length_mean",
                "policy_loss",
                "kl_per_sequence",
            ] {
                assert_eq!(a[key], b[key], "{layout:?}: {key} differs: {a} vs {b}");
            }
        }
        assert_eq!(weights.len(), other.len());
        for ((name, a), (other_name, b)) in weights.iter().zip(&other) {
            assert_eq!(name, other_name);
            assert!(a.equal(b), "{layout:?}: {name} differs");
        }
    }
    // Each replica's work is exported under its own name.
    let body = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .unwrap();
    for series in [
        "rlhf_samples_total{actor=\"generator.2\"}",
        "rlhf_samples_total{actor=\"reference.1\"}",
        "rlhf_samples_total{actor=\"reward.1\"}",
        "rlhf_weight_load_bytes_total{actor=\"generator.1\"}",
    ] {
        assert!(body.contains(series), "no {series} in\n{body}");
    }
}

/// A replica killed mid-run ends the run at once with an error naming it, while the other
/// replicas could go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_ends_the_run_naming_it() {
    let mut stage = stage();
    stage.steps = 100_000;
    stage.rollout_batch_size = 4;
    stage.rollout_chunks = Some(2);
    stage.actors.reward.replicas = 2;
    let tokens = Tokens {
        eos: vec![63],
        pad: 0,
        decoder: Decoder::ids_only(),
    };
    let dir = std::env::temp_dir().join(format!("rlhf-ppo-killed-{}", std::process::id()));
    let config = RunConfig::for_ppo(dir.clone(), 5, stage.clone());
    let mut run_dir = RunDir::create(&dir, &config).unwrap();
    let actors = spawn(&stage, tokens, 5, &source()).await.unwrap();
    let victim = actors.rewards[1].actor.clone();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        victim.kill();
    });
    let run = Run {
        name: "ppo",
        stage: &stage,
        seed: 5,
        from: None,
    };
    let prompts: Vec<Vec<i64>> = (0..4).map(|i| vec![i + 1, i + 2]).collect();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        pipeline(run, &actors, prompts, None, &mut run_dir),
    )
    .await
    .expect("the run ends once a replica is killed");
    killer.await.unwrap();
    actors.stop();
    let error = format!("{:#}", outcome.unwrap_err());
    assert!(error.contains("reward.1"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
