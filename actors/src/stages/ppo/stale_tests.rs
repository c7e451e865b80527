//! The actor system at the default `max_staleness = 1`: stale batches are corrected with
//! capped importance weights exactly as a plain loop that replays the same versions does,
//! they report drift rather than a generator/learner gap, and a resumed run continues
//! with the KL coefficient it stopped at.

use super::checkpoint;
use super::tests::{source, stage, PlainLoop};
use super::*;
use crate::system::learner::{ask_common, Common};
use crate::system::reward::Decoder;
use rlhf::checkpoint::Checkpoints;
use rlhf::ppo::{truncated_importance_weights, KlConfig};
use rlhf::rollout::response_logprobs;
use serde_json::Value;

const CAP: f64 = 1.02;

fn tokens() -> Tokens {
    Tokens {
        eos: vec![63],
        pad: 0,
        decoder: Decoder::ids_only(),
    }
}

fn prompts() -> Vec<Vec<i64>> {
    vec![
        vec![5, 6, 7],
        vec![9],
        vec![10, 11, 12],
        vec![20, 21],
        vec![30],
    ]
}

/// The step records (those with an update) of a run's metrics.jsonl.
fn steps(dir: &RunDir) -> Vec<Value> {
    std::fs::read_to_string(dir.path("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("policy_version").is_some())
        .collect()
}

fn f(record: &Value, key: &str) -> f64 {
    record[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no {key} in {record}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_batches_are_corrected_and_resume_keeps_the_kl_coefficient() {
    use crate::system::telemetry::tests::{endpoint, scrape};
    let addr = endpoint();
    let mut stage = stage();
    stage.max_staleness = 1;
    stage.steps = 4;
    stage.checkpoint_every = 2;
    stage.keep_checkpoints = 2;
    stage.algo.max_importance_weight = CAP;
    // A controller that moves visibly every step.
    stage.algo.kl = KlConfig {
        coef: 0.1,
        adaptive: true,
        target: 0.01,
        horizon: 20,
        ..KlConfig::default()
    };
    let seed = 5;
    let dir = std::env::temp_dir().join(format!("rlhf-ppo-stale-{}", std::process::id()));
    let config = RunConfig::for_ppo(dir.clone(), seed, stage.clone());
    let mut run_dir = RunDir::create(&dir, &config).unwrap();
    let source = source();
    let actors = spawn(&stage, tokens(), seed, &source).await.unwrap();
    let name = "ppo_stale_test";
    let run = Run {
        name,
        stage: &stage,
        seed,
        from: None,
    };
    let done = pipeline(run, &actors, prompts(), None, &mut run_dir).await;
    let (_, weights) = ask_common(&actors.learner, Common::Weights).await.unwrap();
    actors.stop();
    assert_eq!(done.unwrap(), 4);
    let records = steps(&run_dir);
    assert_eq!(records.len(), 4);

    // The first batch is fresh: a gap and no drift. The producer runs one batch ahead, so
    // later ones are one version stale: drift and no gap.
    assert_eq!(records[0]["staleness"], 0);
    assert!(f(&records[0], "logprob_gap") < 1e-5, "{}", records[0]);
    assert!(records[0].get("policy_drift").is_none());
    let stale: Vec<&Value> = records.iter().filter(|r| r["staleness"] == 1).collect();
    assert!(!stale.is_empty(), "no stale batch in {records:?}");
    for r in &stale {
        assert!(r.get("logprob_gap").is_none(), "{r}");
        assert!(f(r, "policy_drift") > 1e-4, "{r}");
        assert!(f(r, "importance_weight_mean") <= CAP, "{r}");
    }
    let body = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .unwrap();
    for metric in ["rlhf_logprob_gap_nats", "rlhf_policy_drift_nats"] {
        let series = format!("{metric}{{stage=\"{name}\"}}");
        assert!(body.contains(&series), "no {series} in\n{body}");
    }

    // A plain loop that generates each batch with the weights of the version the actor
    // run recorded for it, then updates as the learner did.
    let mut plain = PlainLoop::new(&source, &stage, seed);
    let mut versions = vec![plain.learner.policy_weights()];
    let mut capped = false;
    for record in &records {
        let version = record["batch_version"].as_u64().unwrap();
        plain
            .sampler
            .set_weights(version, &versions[version as usize])
            .unwrap();
        let batch = plain.batch(&prompts());
        let learner = &mut plain.learner;
        if version < learner.version() {
            // The cap binds: some token's ratio pi_old / mu is above it.
            let old = response_logprobs(learner.policy(), &batch, &stage.sampling, false);
            let ratio = (&old - &batch.behaviour_logprobs).exp() * &batch.response_mask;
            capped |= ratio.max().double_value(&[]) > CAP;
            let w = truncated_importance_weights(
                &old,
                &batch.behaviour_logprobs,
                &batch.response_mask,
                CAP,
            );
            let mean = rlhf::ppo::masked_mean(&w, &batch.response_mask).double_value(&[]);
            let got = f(record, "importance_weight_mean");
            assert!((got - mean).abs() < 1e-5, "{got} vs {mean}");
        }
        let stats = learner
            .update(&batch, &[], &mut plain.rng, stage.optimizer.lr)
            .unwrap();
        versions.push(learner.policy_weights());
        assert_eq!(f(record, "score_mean"), stats.score_mean, "{record}");
        // Fed f32 read-backs, the coefficients agree to kernel noise.
        let kl_coef = f(record, "kl_coef");
        assert!((kl_coef - stats.kl_coef).abs() < 1e-9 * kl_coef, "{record}");
        for (key, value) in [
            ("importance_weight_mean", stats.importance_weight_mean),
            ("kl_per_sequence_weighted", stats.kl_per_sequence_weighted),
            ("policy_loss", stats.policy_loss),
            ("grad_norm_policy", stats.grad_norm_policy),
        ] {
            let diff = (f(record, key) - value).abs();
            assert!(diff < 1e-5, "{key}: {} vs {value}", record[key]);
        }
    }
    assert!(capped, "the cap should bind on some stale token");
    // The same weights (tolerance as in the synchronous test: kernel noise through Adam).
    let replayed = plain.learner.policy_weights();
    let worst = weights
        .iter()
        .zip(&replayed)
        .map(|((_, a), (_, b))| (a - b).abs().max().double_value(&[]))
        .fold(0.0, f64::max);
    assert!(
        worst < 10.0 * stage.optimizer.lr,
        "weights differ by {worst}"
    );

    // Resume from the step-2 checkpoint: step 3 runs with the coefficient update 2 left,
    // bit for bit (the checkpoint keeps it as JSON, which round-trips an f64).
    let kept = Checkpoints::new(run_dir.path("state"), stage.keep_checkpoints);
    assert_eq!(kept.list().len(), 1, "one checkpoint, at step 2 of 4");
    let actors = spawn(&stage, tokens(), seed, &source).await.unwrap();
    let from = checkpoint::restore(&actors, &kept, &mut run_dir)
        .await
        .unwrap()
        .expect("the step-2 checkpoint");
    assert_eq!(from.cursor.step, 2);
    let resumed = Run {
        name,
        stage: &stage,
        seed,
        from: Some(from),
    };
    let done = pipeline(resumed, &actors, prompts(), None, &mut run_dir).await;
    actors.stop();
    assert_eq!(done.unwrap(), 4);
    let again = steps(&run_dir);
    assert_eq!(again.len(), 4);
    assert_eq!(again[2]["step"], 3);
    assert_eq!(f(&again[2], "kl_coef"), f(&records[2], "kl_coef"));
    assert_ne!(
        f(&records[2], "kl_coef"),
        stage.algo.kl.coef,
        "the coefficient moved"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
