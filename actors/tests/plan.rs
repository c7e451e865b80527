//! `rlhf plan` and the check every training command runs first, through the binary, on
//! the shipped GPT-2-small plan configs (config.json only: no weights are read).

mod common;

use common::{failure, ok, rlhf, temp_dir, write};
use std::path::Path;

fn shipped(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("configs/plan").join(name)).unwrap();
    text.replace(
        "configs/plan/",
        &format!("{}/configs/plan/", root.display()),
    )
}

#[test]
fn plan_prints_every_actor_and_refuses_what_does_not_fit() {
    let dir = temp_dir("plan");
    let ppo = write(dir.join("ppo.toml"), shipped("ppo.toml"));
    let out = rlhf(&["plan", "--config", ppo.to_str().unwrap()]);
    ok(out.clone());
    let table = String::from_utf8_lossy(&out.stdout);
    for actor in ["generator", "reference", "reward", "learner", "runtime"] {
        assert!(table.contains(actor), "{actor} missing:\n{table}");
    }
    // With LoRA the reference holds no copy of the base: the PPO total falls.
    let total = |text: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with("cpu ")).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let lora = write(
        dir.join("ppo-lora.toml"),
        shipped("ppo.toml") + "[ppo.lora]\nrank = 8\n",
    );
    let out = rlhf(&["plan", "--config", lora.to_str().unwrap()]);
    let with_lora = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(total(&with_lora) < total(&table), "{with_lora}");
    // A budget below the plan: one error line naming the actors, the device and the gap,
    // from `rlhf plan` and from `rlhf sft` before it loads anything.
    let sft = shipped("sft.toml").replace("[sft]", "[devices]\nmemory = { cpu = \"1GiB\" }\n[sft]");
    let sft = write(dir.join("sft.toml"), sft);
    for command in ["plan", "sft"] {
        let out = rlhf(&[command, "--config", sft.to_str().unwrap()]);
        let (_, error) = failure(&out);
        assert!(
            error.starts_with("error: plan: learner on cpu needs")
                && error.contains("the device has 1.0 GiB (short by"),
            "{command}: {error}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
