//! Parity with Hugging Face `transformers`: logits, greedy generation with the KV cache,
//! scalar heads, and checkpoints written here loading back in `transformers`.
//! Fixtures come from scripts/make_fixtures.py (see tests/fixtures/README.md).

mod common;

use common::*;
use rlhf::generate::{generate, GenerateOptions};
use rlhf::model::Head;
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use std::process::Command;
use tch::{Kind, Tensor};

const MODELS: [&str; 3] = ["gpt2-tiny", "llama-tiny", "qwen2-tiny"];

#[test]
fn logits_match_transformers_within_1e4() {
    for name in MODELS {
        let model = load(name, Head::LanguageModel);
        let exp = expected(name);
        let mask = &exp["attention_mask"];
        let logits = tch::no_grad(|| {
            model.logits(&model.forward(&exp["input_ids"], Some(mask), None, false))
        });
        let valid = mask.to_kind(Kind::Bool).unsqueeze(-1);
        let diff = (logits - &exp["logits"])
            .abs()
            .masked_fill(&valid.logical_not(), 0.0);
        let max = diff.max().double_value(&[]);
        assert!(max < 1e-4, "{name}: max |logit diff| {max}");
    }
}

#[test]
fn greedy_generation_with_cache_equals_transformers() {
    for name in MODELS {
        let model = load(name, Head::LanguageModel);
        let exp = expected(name);
        let (ids, mask) = (&exp["input_ids"], &exp["attention_mask"]);
        let options = GenerateOptions {
            sampling: Sampling {
                greedy: true,
                ..Sampling::default()
            },
            max_new_tokens: 12,
            eos_token_ids: vec![95],
            pad_token_id: 0,
        };
        let mut cache = model.new_cache(2, 10 + 12);
        let out = generate(&model, &mut cache, ids, mask, &options, &mut Rng::new(0)).unwrap();
        let n = out.tokens.size()[1];
        let tokens = Tensor::zeros([2, 12], (Kind::Int64, tch::Device::Cpu));
        tokens.narrow(1, 0, n).copy_(&out.tokens);
        assert_eq!(
            Vec::<i64>::try_from(tokens.flatten(0, 1)).unwrap(),
            Vec::<i64>::try_from(exp["greedy_ids"].flatten(0, 1)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn scalar_head_matches_sequence_classification() {
    for name in MODELS {
        let model = load(&format!("{name}-score"), Head::Scalar);
        let exp = expected(name);
        let hidden = tch::no_grad(|| {
            model.forward(&exp["input_ids"], Some(&exp["attention_mask"]), None, false)
        });
        let scores = model.scores(&hidden).select(1, 9);
        let diff = max_abs_diff(&scores, &exp["score_logits"]);
        assert!(diff < 1e-4, "{name}: max |score diff| {diff}");
    }
}

/// Saves each model (LM and scalar head) and asks `transformers` to load it strictly and
/// reproduce the fixture's outputs.
#[test]
fn checkpoints_written_here_load_in_transformers() {
    for name in MODELS {
        for (variant, head, flag) in [
            (name.to_string(), Head::LanguageModel, None),
            (format!("{name}-score"), Head::Scalar, Some("--score")),
        ] {
            let model = load(&variant, head);
            let out = temp_dir(&format!("save-{variant}"));
            model.save(&out).unwrap();
            let mut cmd = Command::new(python());
            cmd.arg(fixture("../../scripts/hf_check.py"))
                .arg(&out)
                .arg(fixture(name).join("expected.safetensors"))
                .args(flag);
            let result = cmd.output().unwrap();
            assert!(
                result.status.success(),
                "{variant}: transformers rejected the saved checkpoint:\n{}{}",
                String::from_utf8_lossy(&result.stdout),
                String::from_utf8_lossy(&result.stderr)
            );
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}
