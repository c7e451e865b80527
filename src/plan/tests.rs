use super::*;
use crate::config::{DevicesConfig, RunConfig};
use std::path::Path;

/// GPT-2 with vocab 10, d 4, one layer of 2 heads, ff 16, 8 positions: 324 parameters
/// (wte 40 + wpe 32 + block 244 + ln_f 8; block: c_attn 48 + 12, c_proj 16 + 4, c_fc 64 +
/// 16, mlp.c_proj 64 + 4, ln_1 and ln_2 16).
fn tiny(arch: Architecture) -> ModelConfig {
    let shape = crate::model::ModelShape {
        arch,
        vocab_size: 10,
        hidden_size: 4,
        num_layers: 1,
        num_heads: 2,
        num_kv_heads: 2,
        max_positions: 8,
        eos_token_id: 9,
    };
    let raw = ModelConfig::new_json(&shape);
    ModelConfig::from_json(&raw, Path::new("config.json")).unwrap()
}

fn stage(extra: &str) -> StageConfig {
    let text =
        format!("init = \"m\"\ndata = \"d\"\nepochs = 1\nbatch_size = 2\nmax_seq_len = 3\n{extra}");
    toml::from_str(&text).unwrap()
}

/// The parameters libtorch really allocates for the model with `head`.
fn allocated(config: &ModelConfig, head: crate::model::Head) -> u64 {
    let raw = ModelConfig::new_json(&crate::model::ModelShape {
        arch: config.arch,
        vocab_size: config.vocab_size,
        hidden_size: config.hidden_size,
        num_layers: config.num_layers,
        num_heads: config.num_heads,
        num_kv_heads: config.num_kv_heads,
        max_positions: config.max_positions,
        eos_token_id: 9,
    });
    let model = crate::model::Model::new(raw, head, DType::F32, tch::Device::Cpu).unwrap();
    model
        .var_store()
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as u64)
        .sum()
}

#[test]
fn parameter_counts_match_the_models_built() {
    let gpt2 = tiny(Architecture::Gpt2);
    assert_eq!(parameters(&gpt2, Head::LanguageModel), 324);
    for arch in [Architecture::Gpt2, Architecture::Llama] {
        let config = tiny(arch);
        for (head, model_head) in [
            (Head::LanguageModel, crate::model::Head::LanguageModel),
            (Head::Scalar, crate::model::Head::Scalar),
        ] {
            assert_eq!(
                parameters(&config, head),
                allocated(&config, model_head),
                "{arch:?} {head:?}"
            );
        }
    }
}

#[test]
fn sft_in_f32_by_hand() {
    let plan = supervised("sft", &stage(""), &tiny(Architecture::Gpt2), 1);
    // Per layer and token: ln_1 in/out, ln_2 in/out, attention out (5 x 4), q/k/v (12),
    // fc and gelu out (2 x 16) = 64 elements, and 2 heads x 3 keys of attention
    // probabilities: 2 x 3 tokens x 70 x 4 B = 1680. Logits:
    // 6 x 10 elements, each 4 (logits) + 4 (their grad) + 2 x 4 (f32 log-softmax and grad).
    let learner = Bytes {
        weights: 324 * 4,
        grads: 324 * 4,
        optimizer: 324 * 8,
        kv_cache: 0,
        activations: 1680 + 60 * 16,
        other: 0,
    };
    assert_eq!(plan.entries[0].actor, "learner");
    assert_eq!(plan.entries[0].device, "cpu");
    assert_eq!(plan.entries[0].bytes, learner);
    assert_eq!(plan.entries[1].actor, "runtime");
    assert_eq!(plan.entries[1].bytes.other, CPU_RUNTIME_BYTES);
    assert_eq!(
        plan.per_device()["cpu"],
        learner.total() + CPU_RUNTIME_BYTES
    );
}

#[test]
fn bf16_lora_and_checkpointing_by_hand() {
    let model = tiny(Architecture::Gpt2);
    // bf16: 2 B weights and grads, moments 8 B and an f32 master 4 B per parameter.
    let bf16 = supervised("sft", &stage("dtype = \"bf16\""), &model, 1).entries[0].bytes;
    assert_eq!(
        (bf16.weights, bf16.grads, bf16.optimizer),
        (648, 648, 324 * 12)
    );
    // Logits in bf16: 2 + 2 + 2 x 4 B per element.
    assert_eq!(bf16.activations, 840 + 60 * 12);
    // LoRA rank 2 on c_attn (4 -> 12): 2 x (4 + 12) = 32 f32 adapter parameters train.
    let lora = supervised(
        "sft",
        &stage("[lora]\nrank = 2\ntargets = [\"c_attn\"]"),
        &model,
        1,
    )
    .entries[0]
        .bytes;
    assert_eq!(
        (lora.weights, lora.grads, lora.optimizer),
        (324 * 4 + 32 * 4, 32 * 4, 32 * 8)
    );
    // Every linear layer: c_attn 32, c_proj 2 x 8, c_fc 2 x 20, mlp.c_proj 2 x 20.
    let all = LoraConfig {
        rank: 2,
        ..LoraConfig::default()
    };
    assert_eq!(lora_parameters(&model, &all), 32 + 16 + 40 + 40);
    let mlp_proj = LoraConfig {
        targets: vec!["mlp.c_proj".into()],
        ..all
    };
    assert_eq!(lora_parameters(&model, &mlp_proj), 40);
    // Checkpointing keeps each block's input (6 tokens x 4 x 4 B) plus one block's 1680.
    let ckpt = supervised("sft", &stage("gradient_checkpointing = true"), &model, 1);
    assert_eq!(ckpt.entries[0].bytes.activations, 96 + 1680 + 60 * 16);
}

#[test]
fn rm_rows_are_prompts_times_k_and_no_logits() {
    let model = tiny(Architecture::Gpt2);
    let plan = supervised("rm", &stage(""), &model, 4);
    // Scalar head: 324 (the tied LM head has no weights of its own) + 4 weights.
    let params = parameters(&model, Head::Scalar);
    assert_eq!(params, 328);
    let bytes = plan.entries[0].bytes;
    assert_eq!(bytes.weights, params * 4);
    // 2 prompts x 4 responses x 3 tokens x (64 + 2 heads x 3 keys) elements x 4 B.
    assert_eq!(bytes.activations, 8 * 3 * 70 * 4);
    assert!(
        plan.notes[0].contains("4 responses per prompt, 8 rows"),
        "{:?}",
        plan.notes
    );
}

fn ppo_stage(extra: &str) -> PpoStage {
    let text = format!(
        "policy = \"p\"\nreward_model = \"r\"\nprompts = \"x\"\nsteps = 1\n\
         rollout_batch_size = 4\nmax_prompt_len = 2\nmax_new_tokens = 2\n{extra}"
    );
    toml::from_str(&text).unwrap()
}

#[test]
fn ppo_actors_by_hand() {
    let model = tiny(Architecture::Gpt2);
    let plan = ppo(&ppo_stage(""), &model, &model);
    let actors: Vec<&str> = plan.entries.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(
        actors,
        ["generator", "reference", "reward", "learner", "runtime"]
    );
    let generator = plan.entries[0].bytes;
    assert_eq!(generator.weights, 324 * 4);
    // 2 (keys, values) x 1 layer x 2 heads x 2 dims x 4 rows x 4 columns x 4 B.
    assert_eq!(generator.kv_cache, 512);
    // Prefill of 4 x 2 tokens: one layer (8 x (64 + 2 x 2) x 4) and its input (8 x 4 x 4);
    // sampling: 3 f32 copies of 4 rows of 10 logits.
    assert_eq!(generator.activations, 8 * 68 * 4 + 128 + 480);
    let reference = plan.entries[1].bytes;
    // 16 tokens: one layer (with 2 x 4 probabilities), its input; the 4 x 2 response
    // positions' logits in f32 and their f32 log-softmax.
    assert_eq!(reference.activations, 16 * 72 * 4 + 16 * 16 + 80 * 8);
    let scalar = parameters(&model, Head::Scalar);
    let learner = plan.entries[3].bytes;
    assert_eq!(learner.weights, (324 + scalar) * 4);
    assert_eq!(learner.optimizer, (324 + scalar) * 8);
    // max_staleness 1: two published policy copies.
    assert_eq!(learner.other, 2 * 324 * 4);
    // Minibatch 4 x 4 tokens through both models, the responses' logits for the policy.
    assert_eq!(learner.activations, 2 * 16 * 72 * 4 + 80 * 16);
}

#[test]
fn ppo_lora_group_baseline_and_snapshot() {
    let model = tiny(Architecture::Gpt2);
    let group = ppo(
        &ppo_stage("[algo]\nbaseline = \"group\"\nsamples_per_prompt = 2"),
        &model,
        &model,
    );
    let learner = &group.entries[3];
    assert_eq!(learner.bytes.weights, 324 * 4);
    assert!(group.notes.iter().any(|n| n.contains("no value model")));
    // LoRA with the reference beside the generator: no second copy of the base.
    let lora = ppo(&ppo_stage("[lora]\nrank = 2"), &model, &model);
    assert_eq!(lora.entries[1].bytes.weights, 0);
    assert!(lora.notes[0].starts_with("lora: one copy of each model's frozen base"));
    // The learner on the same device: the shared bases are counted at the generator and
    // the reward actor; it holds the 128 adapter parameters of each of its two models (and
    // the value head) in f32.
    let scalar = parameters(&model, Head::Scalar);
    assert_eq!(lora.entries[2].bytes.weights, scalar * 4);
    assert_eq!(lora.entries[3].bytes.weights, 2 * 128 * 4 + 4 * 4);
    // Published weights are the 128 adapter parameters.
    assert_eq!(lora.entries[3].bytes.other, 2 * 128 * 4);
    // The reference on another device keeps its copy.
    let apart = ppo(
        &ppo_stage("[lora]\nrank = 2\n[actors.reference]\ndevice = \"cuda:1\""),
        &model,
        &model,
    );
    assert_eq!(apart.entries[1].device, "cuda:1");
    assert_eq!(apart.entries[1].bytes.weights, 324 * 4);
    // on_nan = "skip" with 2 minibatches: the learner also copies weights and moments.
    let skip = ppo(
        &ppo_stage("[algo]\non_nan = \"skip\"\nminibatches = 2"),
        &model,
        &model,
    );
    let scalar = parameters(&model, Head::Scalar);
    assert_eq!(
        skip.entries[3].bytes.other,
        2 * 324 * 4 + (324 + scalar) * 12
    );
}

#[test]
fn shortfall_names_actors_device_and_gap() {
    let model = tiny(Architecture::Gpt2);
    let plan = supervised("sft", &stage("device = \"cuda\""), &model, 1);
    let need = plan.per_device()["cuda:0"];
    assert!(plan.check(|_| Some(need)).is_ok());
    assert!(plan.check(|_| None).is_ok());
    let err = plan.check(|_| Some(need - 1)).unwrap_err();
    assert_eq!(
        (err.device.as_str(), err.need, err.have),
        ("cuda:0", need, need - 1)
    );
    let big = Shortfall {
        actors: vec!["learner".into()],
        device: "cuda:0".into(),
        need: 98_000_000_000,
        have: 80 << 30,
    };
    assert_eq!(
        big.to_string(),
        "plan: learner on cuda:0 needs 91.3 GiB, the device has 80.0 GiB (short by 11.3 GiB)"
    );
    let shared = Shortfall {
        actors: vec!["generator".into(), "learner".into()],
        ..big
    };
    assert!(shared
        .to_string()
        .starts_with("plan: generator + learner on cuda:0 need "));
}

#[test]
fn devices_section_parses_in_a_run_config() {
    let text = "seed = 1\nrun_dir = \"r\"\n[devices]\nmemory = { cpu = \"1GiB\" }\n";
    let config = RunConfig::parse(text, Path::new("c.toml")).unwrap();
    assert_eq!(config.devices.memory("cpu"), Some(1 << 30));
    let err = RunConfig::parse(&text.replace("1GiB", "1 gig"), Path::new("c.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("c.toml: devices.memory.\"cpu\": `1 gig` is not a size"),
        "{err}"
    );
    assert_eq!(
        RunConfig::parse("seed = 1\nrun_dir = \"r\"\n", Path::new("c.toml"))
            .unwrap()
            .devices,
        DevicesConfig::default()
    );
}
