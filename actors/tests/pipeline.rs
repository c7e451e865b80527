//! The whole method on a reduced embedded world (configs/small.toml): every stage runs, the
//! report and its figures appear, the gold labeler prefers SFT to the prompted base model
//! and PPO to SFT (point estimates: at this scale the intervals still overlap 50%), and a
//! rerun skips every finished stage.

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

fn win_rate(eval: &Value, model: &str) -> f64 {
    eval["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == model)
        .and_then(|m| m["win_rate"]["mean"].as_f64())
        .unwrap_or_else(|| panic!("no win rate for {model} in {eval}"))
}

#[test]
fn pipeline_runs_every_stage_sft_beats_the_base_model_and_ppo_beats_sft() {
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
    let (base, ppo) = (win_rate(&eval, "base"), win_rate(&eval, "ppo"));
    assert!(
        base < 0.5,
        "base should lose to SFT, win rate {base}: {eval}"
    );
    assert!(ppo > 0.5, "PPO should beat SFT, win rate {ppo}: {eval}");
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
