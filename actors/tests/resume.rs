//! Exact resume and faults: SFT, RM, DPO and PPO runs (synchronous, and one-step off-policy, the
//! default) killed with SIGKILL at random moments (or stopped with SIGTERM) and resumed with `--resume` end with the same weights
//! and metrics as uninterrupted runs, also when the newest checkpoint is corrupt (the
//! resume falls back to the previous one), when SFT trains with dropout, and after a
//! checkpoint failed on a full disk; a NaN step is skipped or stops the stage (SFT, PPO).

mod common;

use common::{ok, read_jsonl, rlhf, signal, stage_table, temp_dir, write, Tiny, WORDS};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Data for SFT, RM and DPO, and a config whose run directory is `run`.
fn write_config(dir: &Path, run: &Path, init: &Path) -> PathBuf {
    let words = &WORDS[..8];
    let mut sft = String::new();
    let mut rm = String::new();
    for i in 0..160 {
        let (w, v) = (words[i % 8], words[(i * 3 + 1) % 8]);
        writeln!(
            sft,
            r#"{{"prompt": "Say {w} and {v}.", "response": "{w} {v} {w}."}}"#
        )
        .unwrap();
        writeln!(
            rm,
            r#"{{"prompt": "Pick {w}.", "responses": ["{w} {w} yes", "{v} no", "no no no"], "ranking": [0, 1, 2]}}"#
        )
        .unwrap();
    }
    std::fs::write(dir.join("sft.jsonl"), sft).unwrap();
    std::fs::write(dir.join("rm.jsonl"), rm).unwrap();
    let tiny = Tiny {
        seed: 11,
        documents: 200,
        vocab_size: 320,
        d_model: 32,
        heads: 2,
        max_positions: 64,
    };
    let sft = stage_table("sft", init, &dir.join("sft.jsonl"), [4, 8, 48]);
    let rm = stage_table("rm", init, &dir.join("rm.jsonl"), [4, 8, 48]);
    let dpo = stage_table("dpo", init, &dir.join("rm.jsonl"), [4, 8, 48]);
    let config = format!(
        r#"{tiny}{sft}dropout = 0.0
threads = 1
checkpoint_every = 3
keep_checkpoints = 3
[sft.optimizer]
lr = 3e-3
{rm}holdout_fraction = 0.2
threads = 1
checkpoint_every = 3
keep_checkpoints = 3
[rm.optimizer]
lr = 1e-3
{dpo}holdout_fraction = 0.2
threads = 1
checkpoint_every = 3
keep_checkpoints = 3
[dpo.optimizer]
lr = 1e-3
"#,
        tiny = tiny.config(run)
    );
    write(run.with_extension("toml"), config)
}

/// Every tensor of a safetensors file, as f64 values by name.
fn weights(path: &Path) -> Vec<(String, Vec<f64>)> {
    let map = tch::Tensor::read_safetensors(path).unwrap();
    let mut out: Vec<(String, Vec<f64>)> = map
        .into_iter()
        .map(|(name, t)| {
            let values = Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Metrics records without the wall-clock fields.
fn metrics(path: &Path) -> Vec<Value> {
    read_jsonl(path)
        .into_iter()
        .map(|mut v| {
            if let Some(map) = v.as_object_mut() {
                map.retain(|k, _| !k.contains("second"));
            }
            v
        })
        .collect()
}

fn assert_same_run(stage: &str, reference: &Path, resumed: &Path) {
    let file = format!("{stage}/checkpoints/last/model.safetensors");
    let (a, b) = (
        weights(&reference.join(&file)),
        weights(&resumed.join(&file)),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        assert!(worst <= 1e-6, "{stage}: {name} differs by {worst}");
    }
    let file = format!("{stage}/metrics.jsonl");
    let (a, b) = (
        metrics(&reference.join(&file)),
        metrics(&resumed.join(&file)),
    );
    assert_eq!(a.len(), b.len(), "{stage}: metrics lines");
    for (x, y) in a.iter().zip(&b) {
        for (key, value) in x.as_object().unwrap() {
            match (value.as_f64(), y[key].as_f64()) {
                (Some(p), Some(q)) => assert!((p - q).abs() <= 1e-6, "{stage} {key}: {x} vs {y}"),
                _ => assert_eq!(value, &y[key], "{stage} {key}"),
            }
        }
    }
}

/// Start `rlhf <stage>`, SIGKILL it `delay` after its first training-state checkpoint;
/// false if it had already finished.
fn kill_after_first_checkpoint(stage: &str, config: &Path, run: &Path, delay: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args([stage, "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = run.join(stage).join("state");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let saved = std::fs::read_dir(&state)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
            })
            .unwrap_or(false);
        if saved || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// Uninterrupted init, SFT, RM and DPO runs in `<dir>/reference`.
fn trained_reference(dir: &Path) -> PathBuf {
    let reference = dir.join("reference");
    let config = write_config(dir, &reference, &reference.join("init"));
    let config = config.to_str().unwrap();
    ok(rlhf(&["init", "--config", config]));
    ok(rlhf(&["sft", "--config", config]));
    ok(rlhf(&["rm", "--config", config]));
    ok(rlhf(&["dpo", "--config", config]));
    reference
}

/// Kill points vary from one test run to the next; the outcome must not.
fn jitter() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

#[test]
fn killed_sft_rm_and_dpo_runs_resume_to_the_same_weights_and_metrics() {
    let dir = temp_dir("resume-stages");
    let reference = trained_reference(&dir);
    let jitter = jitter();
    for (attempt, stage) in ["sft", "rm", "dpo", "sft"].iter().enumerate() {
        let run = dir.join(format!("{stage}-{attempt}"));
        let config = write_config(&dir, &run, &reference.join("init"));
        let delay = Duration::from_millis((jitter >> (attempt * 8)) % 150);
        assert!(
            kill_after_first_checkpoint(stage, &config, &run, delay),
            "{stage} finished before the kill ({delay:?} after its first checkpoint)"
        );
        let states: Vec<PathBuf> = {
            let mut s: Vec<PathBuf> = std::fs::read_dir(run.join(stage).join("state"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("step-")
                })
                .collect();
            s.sort();
            s
        };
        assert!(!states.is_empty(), "{stage}: no checkpoint before the kill");
        if attempt == 3 && states.len() >= 2 {
            // Corrupt the newest checkpoint: the resume must fall back to the one before.
            let newest = states.last().unwrap().join("model.safetensors");
            let mut bytes = std::fs::read(&newest).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&newest, bytes).unwrap();
        }
        let stderr = ok(rlhf(&[
            stage,
            "--config",
            config.to_str().unwrap(),
            "--resume",
        ]));
        assert!(
            stderr.contains("resume: continuing from the newest valid checkpoint")
                || stderr.contains("resume: no valid checkpoint yet"),
            "{stderr}"
        );
        if attempt == 3 && states.len() >= 2 {
            assert!(
                stderr.contains("corrupt"),
                "the skipped checkpoint is reported: {stderr}"
            );
        }
        assert_same_run(stage, &reference, &run);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A NaN loss (injected through the test hook) is skipped and counted, or stops the stage
/// with the last good checkpoint named, as `on_nan` says (SFT and DPO).
#[test]
fn a_nan_step_is_skipped_or_stops_the_stage_as_configured() {
    let dir = temp_dir("resume-nan");
    let base = dir.join("base");
    let config = write_config(&dir, &base, &base.join("init"));
    ok(rlhf(&["init", "--config", config.to_str().unwrap()]));
    // SFT trains 144 examples and DPO 128 rankings, in batches of 8.
    for (stage, batches) in [("sft", 18), ("dpo", 16)] {
        for policy in ["skip", "stop"] {
            let run = dir.join(format!("{stage}-{policy}"));
            let config = write_config(&dir, &run, &base.join("init"));
            let text = std::fs::read_to_string(&config).unwrap().replacen(
                &format!("[{stage}.optimizer]"),
                &format!("on_nan = \"{policy}\"\n[{stage}.optimizer]"),
                1,
            );
            std::fs::write(&config, text).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_rlhf"))
                .args([stage, "--config", config.to_str().unwrap()])
                .env("RLHF_NAN_AT_STEP", "5")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let records = metrics(&run.join(stage).join("metrics.jsonl"));
            let skipped: Vec<&Value> = records
                .iter()
                .filter(|r| r.get("skipped").is_some())
                .collect();
            if policy == "skip" {
                assert!(out.status.success(), "{stderr}");
                assert_eq!(skipped.len(), 1, "{skipped:?}");
                assert_eq!(skipped[0]["step"], 5);
                assert!(skipped[0]["skipped"]
                    .as_str()
                    .unwrap()
                    .contains("non-finite loss (NaN) at step 5"));
                // Every other step trained: 4 epochs of its batches, one skipped.
                let trained = records
                    .iter()
                    .filter(|r| r.get("grad_norm").is_some())
                    .count();
                assert_eq!(trained, 4 * batches - 1, "{stage}");
            } else {
                assert_eq!(out.status.code(), Some(2), "{stage}: {stderr}");
                assert!(
                    stderr.contains("non-finite loss (NaN) at step 5")
                        && stderr.contains("on_nan = \"stop\"")
                        && stderr.contains("state/step-00000003 (continue with --resume)"),
                    "{stderr}"
                );
                assert!(skipped.is_empty());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM mid-stage: the step finishes, a checkpoint is written, the exit status is 0, and
/// `--resume` ends where an uninterrupted run ends.
#[test]
fn sigterm_checkpoints_exits_zero_and_resumes_exactly() {
    let dir = temp_dir("resume-sigterm");
    let reference = dir.join("reference");
    let config = write_config(&dir, &reference, &reference.join("init"));
    ok(rlhf(&["init", "--config", config.to_str().unwrap()]));
    ok(rlhf(&["sft", "--config", config.to_str().unwrap()]));
    let run = dir.join("stopped");
    let config = write_config(&dir, &run, &reference.join("init"));
    let child = Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(["sft", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = run.join("sft/state");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && !state.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(child.id(), "-TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stopping on a signal after a checkpoint"),
        "{stderr}"
    );
    ok(rlhf(&[
        "sft",
        "--config",
        config.to_str().unwrap(),
        "--resume",
    ]));
    assert_same_run("sft", &reference, &run);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A PPO config (PPO-ptx, checkpoints every 3 steps, `max_staleness` and generator
/// replicas as given) on the reference's SFT and reward models, writing into `run`.
fn write_ppo_config(
    dir: &Path,
    run: &Path,
    reference: &Path,
    (staleness, generators): (u64, usize),
) -> PathBuf {
    let config = ppo_config(
        dir,
        run,
        &reference.join("sft/checkpoints/best"),
        &reference.join("rm/checkpoints/best"),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("max_staleness = 0", &format!("max_staleness = {staleness}"));
    let text = format!("{text}[ppo.actors.generator]\nreplicas = {generators}\n");
    write(config, text)
}

/// A synchronous [`write_ppo_config`] on the given policy and reward model folders.
fn ppo_config(dir: &Path, run: &Path, policy: &Path, reward_model: &Path) -> PathBuf {
    let prompts: String = WORDS
        .iter()
        .map(|w| format!("{{\"prompt\": \"Say {w}.\"}}\n"))
        .collect();
    std::fs::write(dir.join("prompts.jsonl"), prompts).unwrap();
    let prose = rlhf::world::prose::corpus(3, 40);
    std::fs::write(dir.join("pretrain.txt"), prose.join("\n\n")).unwrap();
    let head = common::ppo_head(run, policy, reward_model, &dir.join("prompts.jsonl"), 14);
    let config = format!(
        r#"{head}pretrain = "{pretrain}"
rollout_batch_size = 8
max_new_tokens = 8
max_staleness = 0
ptx_batch_size = 2
ptx_seq_len = 24
checkpoint_every = 3
keep_checkpoints = 3
[ppo.algo]
ptx_coef = 0.5
ppo_epochs = 2
minibatches = 2
[ppo.optimizer]
lr = 1e-3
"#,
        pretrain = dir.join("pretrain.txt").display()
    );
    write(run.with_extension("toml"), config)
}

/// PPO killed at random moments resumes to the same policy and metrics, synchronous and
/// at the default `max_staleness = 1` (the checkpoint keeps the batch generated with the
/// weights before it), with one generator and with two sharing each batch.
#[test]
fn a_killed_ppo_run_resumes_exactly_at_any_staleness() {
    let dir = temp_dir("ppo");
    let reference = trained_reference(&dir);
    let jitter = jitter();
    for (layout, attempt) in [((0, 1), 0u64), ((1, 1), 1), ((1, 1), 2), ((1, 2), 3)] {
        let (staleness, generators) = layout;
        let uninterrupted = dir.join(format!("ppo-reference-{staleness}-{generators}"));
        if !uninterrupted.exists() {
            let ppo = write_ppo_config(&dir, &uninterrupted, &reference, layout);
            ok(rlhf(&["ppo", "--config", ppo.to_str().unwrap()]));
        }
        let run = dir.join(format!("ppo-{attempt}"));
        let ppo = write_ppo_config(&dir, &run, &reference, layout);
        let delay = Duration::from_millis((jitter >> (attempt * 8)) % 150);
        assert!(
            kill_after_first_checkpoint("ppo", &ppo, &run, delay),
            "ppo finished before the kill ({delay:?} after its first checkpoint)"
        );
        let stderr = ok(rlhf(&[
            "ppo",
            "--config",
            ppo.to_str().unwrap(),
            "--resume",
        ]));
        assert!(
            stderr.contains("resume: continuing from the newest valid checkpoint"),
            "{stderr}"
        );
        assert_same_run("ppo", &uninterrupted, &run);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// PPO honours `on_nan` like the supervised stages. The test hook makes update 5's loss NaN
/// in its last minibatch step, after its first three (of 2 epochs x 2 minibatches) were
/// applied. "skip": the run goes on, the step is a `skipped` record, and the update was
/// rolled back: step 6 trains on a batch the generator sampled with the weights it held
/// before step 5 (no weight sync after a skip), and the learner's log-probs of it agree
/// with the generator's. "stop": exit status 2, naming the last good checkpoint.
#[test]
fn a_nan_ppo_update_is_skipped_or_stops_the_run_as_configured() {
    let dir = temp_dir("ppo-nan");
    let base = dir.join("base");
    let config = write_config(&dir, &base, &base.join("init"));
    ok(rlhf(&["init", "--config", config.to_str().unwrap()]));
    // The initial model is the policy and, with a fresh scalar head, the reward model.
    let init = base.join("init");
    for policy in ["skip", "stop"] {
        let run = dir.join(format!("ppo-{policy}"));
        let config = ppo_config(&dir, &run, &init, &init);
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "[ppo.algo]\n",
            &format!("[ppo.algo]\non_nan = \"{policy}\"\n"),
            1,
        );
        std::fs::write(&config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rlhf"))
            .args(["ppo", "--config", config.to_str().unwrap()])
            .env("RLHF_NAN_AT_STEP", "5")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let records = read_jsonl(&run.join("ppo/metrics.jsonl"));
        let skipped: Vec<&Value> = records
            .iter()
            .filter(|r| r.get("skipped").is_some())
            .collect();
        let steps = common::ppo_steps(&run);
        if policy == "skip" {
            assert!(out.status.success(), "{stderr}");
            assert_eq!(skipped.len(), 1, "{skipped:?}");
            assert_eq!(skipped[0]["step"], 5);
            let what = skipped[0]["skipped"].as_str().unwrap();
            assert!(
                what.contains("non-finite PPO loss (policy NaN")
                    && what.contains("in minibatch step 4 of 4 at step 5"),
                "{what}"
            );
            assert!(
                stderr.contains("ppo: skipped: non-finite PPO loss"),
                "{stderr}"
            );
            // 14 steps, 13 updates: the versions lag the steps by one after the skip.
            let numbers: Vec<(u64, u64)> = steps
                .iter()
                .map(|r| {
                    (
                        r["step"].as_u64().unwrap(),
                        r["policy_version"].as_u64().unwrap(),
                    )
                })
                .collect();
            let want: Vec<(u64, u64)> = (1..=14)
                .filter(|&s| s != 5)
                .map(|s| (s, if s < 5 { s } else { s - 1 }))
                .collect();
            assert_eq!(numbers, want);
            let sixth = &steps[4];
            assert_eq!(
                (sixth["batch_version"].as_u64(), sixth["staleness"].as_u64()),
                (Some(4), Some(0))
            );
            let gap = sixth["logprob_gap"].as_f64().unwrap();
            assert!(
                gap < 1e-4,
                "the skipped update moved the learner: logprob gap {gap}"
            );
            assert!(run.join("ppo/checkpoints/last/model.safetensors").exists());
        } else {
            let (_, error) = common::failure(&out);
            println!("{error}");
            assert!(
                error.contains("non-finite PPO loss (policy NaN")
                    && error.contains("at step 5")
                    && error.contains("on_nan = \"stop\"")
                    && error.contains("state/step-00000003 (continue with --resume)"),
                "{stderr}"
            );
            assert!(skipped.is_empty());
            assert_eq!(steps.len(), 4);
            // The learner may hold part of the failed update: no policy is saved from it.
            assert!(!run.join("ppo/checkpoints/last").exists());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The SFT config of [`write_config`] with dropout 0.1 and 2 epochs.
fn dropout_config(dir: &Path, run: &Path, init: &Path) -> PathBuf {
    let config = write_config(dir, run, init);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replacen("dropout = 0.0", "dropout = 0.1", 1)
        .replacen("epochs = 4", "epochs = 2", 1);
    write(config, text)
}

/// With dropout, SFT resumes exactly (each step seeds its own dropout masks): after a
/// SIGKILL at a random moment, and after a checkpoint that failed on a full disk. The full
/// disk is a file-size limit (`ulimit -f`, SIGXFSZ ignored so that writes fail with EFBIG)
/// below the optimizer file's size: the run resumed from the step-3 checkpoint fails to
/// write step 6 with one clear error line, leaves step 3 intact and valid, and a later
/// `--resume` from it ends like the uninterrupted run.
#[test]
fn a_dropout_sft_run_resumes_exactly_after_a_kill_or_a_full_disk() {
    let dir = temp_dir("resume-dropout");
    let reference = dir.join("reference");
    let config = dropout_config(&dir, &reference, &reference.join("init"));
    ok(rlhf(&["init", "--config", config.to_str().unwrap()]));
    ok(rlhf(&["sft", "--config", config.to_str().unwrap()]));
    let init = reference.join("init");

    let run = dir.join("killed");
    let config = dropout_config(&dir, &run, &init);
    let delay = Duration::from_millis(jitter() % 150);
    assert!(
        kill_after_first_checkpoint("sft", &config, &run, delay),
        "sft finished before the kill ({delay:?} after its first checkpoint)"
    );
    let config = config.to_str().unwrap();
    let stderr = ok(rlhf(&["sft", "--config", config, "--resume"]));
    assert!(
        stderr.contains("resume: continuing from the newest valid checkpoint"),
        "{stderr}"
    );
    assert_same_run("sft", &reference, &run);

    let run = dir.join("full");
    let config = dropout_config(&dir, &run, &init);
    let config = config.to_str().unwrap();
    // A NaN at step 5 stops the run (on_nan = "stop") after its step-3 checkpoint.
    let out = Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(["sft", "--config", config])
        .env("RLHF_NAN_AT_STEP", "5")
        .output()
        .unwrap();
    common::failure(&out);
    let state = run.join("sft/state");
    let first = state.join("step-00000003");
    let size = |name: &str| std::fs::metadata(first.join(name)).unwrap().len();
    let (model, optimizer) = (
        size("model.safetensors"),
        size("model-optimizer.safetensors"),
    );
    assert!(model < optimizer);
    let limit_kib = (model + optimizer) / 2 / 1024;
    let out = Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f \"$0\" && exec \"$@\""])
        .arg(limit_kib.to_string())
        .args([
            env!("CARGO_BIN_EXE_rlhf"),
            "sft",
            "--config",
            config,
            "--resume",
        ])
        .output()
        .unwrap();
    let (stderr, error) = common::failure(&out);
    println!("{error}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let failed = state.join("step-00000006");
    for part in [
        format!("writing checkpoint {}", failed.display()),
        "model-optimizer.safetensors: File too large".to_string(),
        format!("the previous checkpoint {} is intact", first.display()),
    ] {
        assert!(error.contains(&part), "no {part:?} in {error:?}\n{stderr}");
    }
    let mut left: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["step-00000003"],
        "only the intact checkpoint is left"
    );
    assert_eq!(rlhf::checkpoint::verify(&first).unwrap().step, 3);
    let stderr = ok(rlhf(&["sft", "--config", config, "--resume"]));
    assert!(
        stderr.contains("resume: continuing from the newest valid checkpoint")
            && stderr.contains("step-00000003"),
        "{stderr}"
    );
    assert_same_run("sft", &reference, &run);
    let _ = std::fs::remove_dir_all(&dir);
}
