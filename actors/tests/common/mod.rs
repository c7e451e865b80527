#![allow(dead_code)]
//! Helpers shared by the integration tests (each includes this file with `mod common;`):
//! running the `rlhf` binary and checking how it ended, scratch folders, the pieces of
//! configs every test writes, and reading `metrics.jsonl`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Words for prompts and data; tests that need fewer take the first ones.
pub const WORDS: [&str; 16] = [
    "apple", "river", "stone", "cloud", "bread", "horse", "lamp", "field", "tower", "snow", "boat",
    "wheel", "honey", "bell", "moss", "fern",
];

/// Runs the `rlhf` binary to the end, with its output captured.
pub fn rlhf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(args)
        .output()
        .unwrap()
}

/// Asserts that a run of `rlhf` succeeded, showing its output if not; returns its stderr.
pub fn ok(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "rlhf failed ({}):\n{}{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Asserts that a run of `rlhf` failed with exit status 2 (a reported error, not a panic);
/// returns its stderr and its `error:` line.
pub fn failure(out: &Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let error = error_line(&stderr);
    (stderr, error)
}

/// The first line of `text` that starts with `error:`, or an empty string.
pub fn error_line(text: &str) -> String {
    text.lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default()
        .to_string()
}

/// Sends `signal` (`-TERM`, `-STOP`...) to the process `pid` with `kill`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}: {status}");
}

/// An empty folder `rlhf-<tag>-<pid>` under the system's temporary folder.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlhf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `path`; returns `path`.
pub fn write(path: PathBuf, text: impl AsRef<[u8]>) -> PathBuf {
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a PPO prompt file of one prompt `<lead> the <word>.` per word.
pub fn write_prompts(path: &Path, lead: &str, words: &[&str]) {
    let lines: String = words
        .iter()
        .map(|w| format!("{{\"prompt\": \"{lead} the {w}.\"}}\n"))
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// The head of a config for a tiny run: `seed`, `run_dir`, and the `[world]`,
/// `[tokenizer]` and `[model]` that `rlhf init` builds.
pub struct Tiny {
    pub seed: u64,
    pub documents: usize,
    pub vocab_size: usize,
    pub d_model: usize,
    pub heads: usize,
    pub max_positions: usize,
}

impl Default for Tiny {
    fn default() -> Tiny {
        Tiny {
            seed: 7,
            documents: 300,
            vocab_size: 400,
            d_model: 64,
            heads: 4,
            max_positions: 96,
        }
    }
}

impl Tiny {
    /// The config text, ending in a newline, for runs under `run_dir`.
    pub fn config(&self, run_dir: &Path) -> String {
        format!(
            "seed = {}\nrun_dir = \"{}\"\n[world]\ndocuments = {}\n[tokenizer]\nvocab_size = {}\n\
             [model]\narch = \"gpt2\"\nlayers = 2\nd_model = {}\nheads = {}\nmax_positions = {}\n",
            self.seed,
            run_dir.display(),
            self.documents,
            self.vocab_size,
            self.d_model,
            self.heads,
            self.max_positions
        )
    }
}

/// The table of a supervised stage (`sft`, `rm`) with the keys every test sets: `init`,
/// `data` and `[epochs, batch_size, max_seq_len]`. The table stays open: the caller writes
/// its other keys, and its `[<stage>.optimizer]`, right after it.
pub fn stage_table(stage: &str, init: &Path, data: &Path, sizes: [usize; 3]) -> String {
    let [epochs, batch_size, max_seq_len] = sizes;
    format!(
        "[{stage}]\ninit = \"{}\"\ndata = \"{}\"\nepochs = {epochs}\nbatch_size = {batch_size}\n\
         max_seq_len = {max_seq_len}\n",
        init.display(),
        data.display()
    )
}

/// The head of a PPO config: `seed = 7`, `run_dir`, no metrics endpoint, and the `[ppo]`
/// keys every test sets (`max_prompt_len = 32`). The `[ppo]` table stays open: the caller
/// writes its other keys and sub-tables after it.
pub fn ppo_head(
    run_dir: &Path,
    policy: &Path,
    reward_model: &Path,
    prompts: &Path,
    steps: u64,
) -> String {
    format!(
        "seed = 7\nrun_dir = \"{}\"\n[metrics]\nlisten = \"off\"\n[ppo]\npolicy = \"{}\"\n\
         reward_model = \"{}\"\nprompts = \"{}\"\nsteps = {steps}\nmax_prompt_len = 32\n",
        run_dir.display(),
        policy.display(),
        reward_model.display(),
        prompts.display()
    )
}

/// A seeded linear congruential generator: each call gives a number below its argument.
pub fn lcg(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed;
    move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    }
}

/// Every record of a `metrics.jsonl` file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The PPO step records of the run under `run`; none while it has not logged yet.
pub fn ppo_steps(run: &Path) -> Vec<Value> {
    let path = run.join("ppo/metrics.jsonl");
    if !path.exists() {
        return Vec::new();
    }
    read_jsonl(&path)
        .into_iter()
        .filter(|r| r.get("policy_version").is_some())
        .collect()
}
