//! The whole method on a reduced embedded world (configs/small.toml): every stage runs, the
//! report and its figures appear, and a rerun skips every finished stage. It asserts only
//! what held by a wide margin on every seed tried (1234, 7, 99; the figures there): the gold
//! labeler prefers SFT to the prompted base model (base won 32-35%), the training rankings
//! agree with the noiseless order about as often as the paper's labelers agreed with each
//! other (0.69-0.73), the fixed KL leash holds (PPO's peak 0.15-0.37 nats), and the
//! pretraining mix keeps PPO-ptx's prose perplexity well below plain PPO's (0.38-0.49 of
//! it). Whether PPO beats SFT is the default run's figure (README), not this test's: at
//! this scale the interval spans 50%.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn small_config(run: &std::path::Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("configs/small.toml")).unwrap();
    let path = run.with_extension("toml");
    std::fs::write(&path, text.replace("runs/small", run.to_str().unwrap())).unwrap();
    path
}

/// A model's figure from eval.json: `field` is a path such as `["win_rate", "mean"]`.
fn figure(eval: &Value, model: &str, field: &[&str]) -> f64 {
    eval["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .and_then(|m| field.iter().try_fold(m, |v, k| v.get(k)))
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no {field:?} for {model} in {eval}"))
}

/// The largest KL per sequence a PPO run logged.
fn peak_kl(run: &std::path::Path, variant: &str) -> f64 {
    let text = std::fs::read_to_string(run.join(variant).join("metrics.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["kl_per_sequence"].as_f64())
        .fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn pipeline_runs_every_stage_and_shows_the_robust_orderings() {
    let run = std::env::temp_dir().join(format!("rlhf-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let config = small_config(&run);
    let out = Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(["pipeline", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pipeline failed:\n{stderr}");
    let eval: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval/eval.json")).unwrap())
            .unwrap();
    let base = figure(&eval, "base", &["win_rate", "mean"]);
    assert!(
        base < 0.45,
        "base should lose clearly to SFT, win rate {base}: {eval}"
    );
    let label: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("data/label_agreement.json")).unwrap(),
    )
    .unwrap();
    let agreement = label["agreement"].as_f64().unwrap();
    assert!(
        (0.6..=0.85).contains(&agreement),
        "training rankings agree with the noiseless order on {agreement} of pairs"
    );
    let kl = peak_kl(&run, "ppo");
    assert!(
        kl.is_finite() && kl < 1.5,
        "PPO's KL to SFT reached {kl} nats"
    );
    let (ppo, ptx) = (
        figure(&eval, "ppo", &["perplexity"]),
        figure(&eval, "ppo_ptx", &["perplexity"]),
    );
    assert!(ptx < 0.7 * ppo, "PPO-ptx perplexity {ptx}, PPO {ppo}");
    for file in [
        "report.md",
        "win_rates.png",
        "gold.png",
        "kl.png",
        "responses.jsonl",
    ] {
        assert!(run.join("eval").join(file).exists(), "missing eval/{file}");
    }

    // Every stage is done: a rerun redoes nothing and says so.
    let again = Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(["pipeline", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(stderr.matches("already done").count(), 8, "{stderr}");
    let _ = std::fs::remove_dir_all(&run);
    let _ = std::fs::remove_file(&config);
}
