//! The data forms users bring, through the stage commands: TRL's conversational
//! prompt/completion with remapped keys and left truncation for SFT, implicit-prompt
//! conversations for the reward model, `messages` prompts for PPO; the counts the
//! over-long rule reports.

mod common;

use common::{ok, read_jsonl, rlhf, stage_table, temp_dir, write, Tiny, WORDS};
use serde_json::{json, Value};
use std::fmt::Write;
use std::path::Path;

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

/// The data record of `split` in a stage's metrics.jsonl.
fn data_record(path: &Path, split: &str) -> Value {
    read_jsonl(path)
        .into_iter()
        .find(|r| r["split"] == split && r.get("skipped_too_long").is_some())
        .unwrap_or_else(|| panic!("no {split} data record in {}", path.display()))
}

#[test]
fn trl_forms_with_keys_and_truncation_train_every_stage() {
    let dir = temp_dir("data-forms");
    let run = dir.join("run");
    // SFT: TRL's conversational prompt/completion under other keys; every fifth prompt is
    // long, so left truncation has to cut it.
    let mut sft = String::new();
    for (i, w) in WORDS.iter().cycle().take(80).enumerate() {
        let long = if i % 5 == 0 {
            " and then some more".repeat(12)
        } else {
            String::new()
        };
        let record = json!({
            "question": [user(&format!("Say {w}{long}."))],
            "answer": [assistant(&format!("{w} {w}."))],
        });
        writeln!(sft, "{record}").unwrap();
    }
    // RM: implicit-prompt conversations, the better answer repeats the word.
    let mut rm = String::new();
    for w in WORDS.iter().cycle().take(60) {
        let prompt = user(&format!("Say {w}."));
        let record = json!({
            "chosen": [prompt, assistant(&format!("{w} {w}."))],
            "rejected": [prompt, assistant("no.")],
        });
        writeln!(rm, "{record}").unwrap();
    }
    // PPO: `messages` prompts with a reference answer at the end, which is dropped.
    let mut prompts = String::new();
    for w in WORDS {
        let record = json!({"messages": [user(&format!("Say {w}.")), assistant(w)]});
        writeln!(prompts, "{record}").unwrap();
    }
    let (sft, rm, prompts) = (
        write(dir.join("sft.jsonl"), sft),
        write(dir.join("rm.jsonl"), rm),
        write(dir.join("prompts.jsonl"), prompts),
    );
    let sft_best = run.join("sft/checkpoints/best");
    let config = format!(
        "{tiny}[chat]\ntemplate = \"builtin\"\n[metrics]\nlisten = \"off\"\n{sft}truncate = \"left\"\nholdout_fraction = 0.25\n\
         [sft.keys]\nprompt = \"question\"\ncompletion = \"answer\"\n{rm}\
         [ppo]\npolicy = \"{policy}\"\nreward_model = \"{reward}\"\nprompts = \"{prompts}\"\n\
         steps = 2\nrollout_batch_size = 4\nmax_prompt_len = 32\nmax_new_tokens = 4\n",
        tiny = Tiny::default().config(&run),
        sft = stage_table("sft", &run.join("init"), &sft, [1, 8, 40]),
        rm = stage_table("rm", &sft_best, &rm, [1, 8, 40]),
        policy = sft_best.display(),
        reward = run.join("rm/checkpoints/best").display(),
        prompts = prompts.display(),
    );
    let config = write(dir.join("config.toml"), config);
    let config = config.to_str().unwrap();
    ok(rlhf(&["init", "--config", config]));

    ok(rlhf(&["sft", "--config", config]));
    let (train, held_out) = (
        data_record(&run.join("sft/metrics.jsonl"), "train"),
        data_record(&run.join("sft/metrics.jsonl"), "validation"),
    );
    // 80 records, a quarter held out; every long one cut to fit, none dropped.
    assert_eq!(
        train["examples"].as_u64().unwrap() + held_out["examples"].as_u64().unwrap(),
        80
    );
    let truncated = train["truncated"].as_u64().unwrap() + held_out["truncated"].as_u64().unwrap();
    assert_eq!(truncated, 16, "{train} {held_out}");
    assert_eq!(train["skipped_too_long"], 0);

    ok(rlhf(&["rm", "--config", config]));
    let rm_path = run.join("rm/metrics.jsonl");
    let (train, held_out) = (
        data_record(&rm_path, "train"),
        data_record(&rm_path, "validation"),
    );
    assert_eq!(
        train["prompts"].as_u64().unwrap() + held_out["prompts"].as_u64().unwrap(),
        60
    );

    ok(rlhf(&["ppo", "--config", config]));
    let ppo = data_record(&run.join("ppo/metrics.jsonl"), "train");
    assert_eq!(
        (ppo["prompts"].as_u64(), ppo["truncated"].as_u64()),
        (Some(16), Some(0))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
