//! The documented "bring your own model" path (README.md, configs/example-hf.toml) end to
//! end: a tiny Llama 3.1-style model folder made by transformers (scripts/byo_example.py,
//! Llama 3.1's chat template, two EOS ids, a BOS the template writes), the shipped config
//! and data through `rlhf sft`, `rlhf rm` and `rlhf ppo`, then transformers
//! (scripts/byo_check.py) on what they saved: the PPO policy loads as
//! `AutoModelForCausalLM`, its tokenizer's `apply_chat_template` gives rlhf's prompt ids
//! and its greedy continuation is `rlhf generate`'s; the reward model loads as
//! `AutoModelForSequenceClassification` and scores an answer as `rlhf eval` did; both
//! folders carry the template the run used.

mod common;

use common::{ok, read_jsonl, temp_dir, write};
use rlhf::config::ChatConfig;
use rlhf::text_side::TextSide;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root: the shipped config names its data relative to it.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The project venv's python (with transformers), or RLHF_PYTHON.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("RLHF_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} not found: run scripts/setup.sh",
        venv.display()
    );
    venv
}

/// Runs `rlhf` in the repository root, as the README's commands are run.
fn rlhf_in_repo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// Stdout of a command that must succeed.
fn stdout_of(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const PROMPT: &str = "Where does Ada live?";
const MAX_NEW_TOKENS: &str = "32";

#[test]
fn example_config_trains_a_llama_that_transformers_loads() {
    let dir = temp_dir("byo");
    let run = dir.join("run");
    let base = run.join("base");
    let script = repo().join("scripts/byo_example.py");
    stdout_of(
        Command::new(python())
            .arg(&script)
            .arg(&base)
            .output()
            .unwrap(),
        "scripts/byo_example.py",
    );

    // The shipped config with only its run folder moved here: the data paths stay the
    // repository's own.
    let shipped = std::fs::read_to_string(repo().join("configs/example-hf.toml")).unwrap();
    assert!(shipped.contains("init = \"runs/byo/base\""), "{shipped}");
    let moved = shipped.replace("\"runs/byo", &format!("\"{}", run.display()));
    let config = write(dir.join("example-hf.toml"), moved);
    let config = config.to_str().unwrap();
    for stage in ["sft", "rm", "ppo"] {
        ok(rlhf_in_repo(&[
            stage,
            "--config",
            config,
            "--metrics-addr",
            "off",
        ]));
    }
    let steps = read_jsonl(&run.join("ppo/metrics.jsonl"))
        .into_iter()
        .filter(|r| r.get("policy_version").is_some())
        .count();
    assert_eq!(steps, 4, "PPO step records");
    let policy = run.join("ppo/checkpoints/last");
    let reward_model = run.join("rm/checkpoints/best");

    // rlhf's greedy answer: it prints the prompt, the completion and a blank line.
    let printed = stdout_of(
        rlhf_in_repo(&[
            "generate",
            "--model",
            policy.to_str().unwrap(),
            "--chat",
            "--greedy",
            "--max-new-tokens",
            MAX_NEW_TOKENS,
            "--prompt",
            PROMPT,
        ]),
        "rlhf generate",
    );
    let completion = printed
        .strip_prefix(PROMPT)
        .and_then(|s| s.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("unexpected output {printed:?}"));

    // rlhf's reward for a sampled answer to the same prompt.
    let prompts = write(
        dir.join("eval_prompts.jsonl"),
        format!("{}\n", serde_json::json!({ "prompt": PROMPT })),
    );
    let eval_out = dir.join("eval");
    ok(rlhf_in_repo(&[
        "eval",
        "--prompts",
        prompts.to_str().unwrap(),
        "--model",
        &format!("ppo={}", policy.display()),
        "--reward-model",
        reward_model.to_str().unwrap(),
        "--max-new-tokens",
        MAX_NEW_TOKENS,
        "--resamples",
        "10",
        "--out",
        eval_out.to_str().unwrap(),
    ]));
    let answer = &read_jsonl(&eval_out.join("responses.jsonl"))[0]["ppo"];
    let response = answer["response"].as_str().unwrap();
    let score = answer["score"].as_f64().unwrap();

    let hf: Value = serde_json::from_str(&stdout_of(
        Command::new(python())
            .arg(repo().join("scripts/byo_check.py"))
            .args([&policy, &reward_model])
            .args([PROMPT, MAX_NEW_TOKENS, response])
            .output()
            .unwrap(),
        "scripts/byo_check.py",
    ))
    .unwrap();

    // The prompt as apply_chat_template tokenizes it is the prompt rlhf trained on and
    // generates from.
    let text = TextSide::load(&policy, &ChatConfig::default()).unwrap();
    let ours = text
        .encode_prompt(&text.template.prompt(PROMPT).unwrap())
        .unwrap();
    let theirs: Vec<i64> = serde_json::from_value(hf["prompt_ids"].clone()).unwrap();
    assert_eq!(theirs, ours, "prompt ids: transformers vs rlhf");
    let bos = text.tokenizer.bos_id().unwrap();
    assert_eq!(theirs.iter().filter(|&&t| t == bos).count(), 1, "one BOS");

    // The SFT data teaches answers of a dozen tokens or more that end in an EOS, so the
    // comparison covers the stop ids (generation_config.json's two) as well as the argmaxes.
    let new_ids = hf["new_ids"].as_array().unwrap();
    let max: usize = MAX_NEW_TOKENS.parse().unwrap();
    assert!(
        (8..max).contains(&new_ids.len()),
        "a greedy answer of {} tokens, not 8 to {max} then EOS: {completion:?}",
        new_ids.len()
    );
    assert_eq!(hf["completion"], completion, "greedy completion");

    // The template the run used (the base folder's) is what every saved folder carries.
    let template = std::fs::read_to_string(base.join("chat_template.jinja")).unwrap();
    for folder in [&policy, &reward_model] {
        let saved: Value = serde_json::from_str(
            &std::fs::read_to_string(folder.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            saved["chat_template"].as_str(),
            Some(template.as_str()),
            "{}",
            folder.display()
        );
    }
    assert_eq!(hf["chat_template"].as_str(), Some(template.as_str()));
    assert_eq!(hf["rm_chat_template"].as_str(), Some(template.as_str()));

    // Llama's score layer has no bias: transformers' score is rlhf's minus reward_bias.
    assert_eq!(hf["rm_class"], "LlamaForSequenceClassification");
    let bias = hf["reward_bias"]
        .as_f64()
        .expect("reward_bias in config.json");
    let theirs = hf["score"].as_f64().unwrap();
    assert!(
        (theirs + bias - score).abs() < 1e-4,
        "reward of {response:?}: transformers {theirs} + bias {bias} vs rlhf {score}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
