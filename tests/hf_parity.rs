//! Parity with Hugging Face `transformers`: logits, greedy generation with the KV cache,
//! scalar heads, checkpoints written here (also after a training step) loading back in
//! `transformers`, and exported reward models scoring there as here.
//! Fixtures come from scripts/make_fixtures.py (see tests/fixtures/README.md).

mod common;

use common::*;
use rlhf::data::{RmBatch, SftBatch};
use rlhf::device::DType;
use rlhf::generate::{generate, GenerateOptions};
use rlhf::model::{config, weights, Head, Model};
use rlhf::optim::OptimizerConfig;
use rlhf::sampling::Sampling;
use rlhf::schedule::ScheduleConfig;
use rlhf::train::{last_token_scores, Batch, Trainer};
use std::path::PathBuf;
use std::process::Command;
use tch::{Device, Kind, Tensor};

/// One fixture per architecture and variant: GPT-2, Llama, Qwen2, Qwen3 (q/k norms,
/// head_dim != hidden / heads), Llama 3.1 rope scaling, GPT-NeoX with parallel and with
/// sequential residuals, Gemma 2 (soft-caps, a sliding window shorter than the inputs),
/// Mistral v0.1 (a sliding window on every layer).
const MODELS: [&str; 9] = [
    "gpt2-tiny",
    "llama-tiny",
    "qwen2-tiny",
    "qwen3-tiny",
    "llama3-tiny",
    "neox-tiny",
    "neox-seq-tiny",
    "gemma2-tiny",
    "mistral-tiny",
];

/// A fixture's sequence-classification model: its `-score` folder, or (for the fixtures
/// made without one) its LM folder with the score weight kept in expected.safetensors.
fn scalar(name: &str) -> Model {
    let score_dir = format!("{name}-score");
    if fixture(&score_dir).is_dir() {
        return load(&score_dir, Head::Scalar);
    }
    let (model, report) =
        Model::load(&fixture(name), Head::Scalar, DType::F32, Device::Cpu).unwrap();
    assert_eq!(report.initialized, ["score.weight"], "{name}");
    let mut vars = model.var_store().variables();
    tch::no_grad(|| {
        vars.get_mut("score.weight")
            .unwrap()
            .copy_(&expected(name)["score_weight"])
    });
    model
}

/// One folder for transformers to load strictly and the outputs it must compute.
struct Check {
    dir: PathBuf,
    expected: PathBuf,
    /// As `AutoModelForSequenceClassification` (else `AutoModelForCausalLM`).
    score: bool,
    /// transformers' own pad-token pooling on a right-padded batch (with `score`).
    pooled: bool,
}

/// `scripts/hf_check.py --jobs` over every check in one process (transformers imports
/// once); all must pass. The folders are removed afterwards.
fn hf_check(checks: &[Check], what: &str) {
    let jobs: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            serde_json::json!({"model_dir": c.dir, "expected": c.expected,
                "score": c.score, "pooled": c.pooled})
        })
        .collect();
    let list_dir = temp_dir(&format!("jobs-{}", what.replace(' ', "-")));
    let list = list_dir.join("jobs.json");
    std::fs::write(&list, serde_json::to_string(&jobs).unwrap()).unwrap();
    let result = Command::new(python())
        .arg(fixture("../../scripts/hf_check.py"))
        .arg("--jobs")
        .arg(&list)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{what}: transformers rejected a saved checkpoint:\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    for dir in checks.iter().map(|c| &c.dir).chain([&list_dir]) {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Saves `model` into a fresh folder with the outputs transformers must reproduce from
/// it (named tensors in expected.safetensors).
fn saved(model: &Model, tag: &str, outputs: Vec<(&str, Tensor)>, pooled: bool) -> Check {
    let dir = temp_dir(tag);
    model.save(&dir).unwrap();
    let expected = dir.join("expected.safetensors");
    let named: Vec<(String, Tensor)> = outputs
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    weights::write(&expected, &named).unwrap();
    Check {
        dir,
        expected,
        score: model.head() == Head::Scalar,
        pooled,
    }
}

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
            static_batch: false,
        };
        let mut cache = model.new_cache(2, 10 + 12);
        // The fixture's left-padded rows, as the token lists `generate` takes.
        let rows = Vec::<Vec<i64>>::try_from(ids).unwrap();
        let valid = Vec::<Vec<i64>>::try_from(mask).unwrap();
        let prompts: Vec<Vec<i64>> = rows
            .iter()
            .zip(&valid)
            .map(|(r, v)| {
                r.iter()
                    .zip(v)
                    .filter(|p| *p.1 == 1)
                    .map(|p| *p.0)
                    .collect()
            })
            .collect();
        let out = generate(
            &model,
            &mut cache,
            &prompts,
            &options,
            &mut rlhf::generate::prompt_streams(0, 0, ids.size()[0] as usize),
        )
        .unwrap();
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
        let model = scalar(name);
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
    let mut checks = Vec::new();
    for name in MODELS {
        for (variant, model, score) in [
            (name.to_string(), load(name, Head::LanguageModel), false),
            (format!("{name}-score"), scalar(name), true),
        ] {
            let dir = temp_dir(&format!("save-{variant}"));
            model.save(&dir).unwrap();
            let expected = fixture(name).join("expected.safetensors");
            checks.push(Check {
                dir,
                expected,
                score,
                pooled: false,
            });
        }
    }
    hf_check(&checks, "saved fixtures");
}

/// One SFT step (language-model head) and one reward-model step (scalar head) on each
/// fixture, saved; transformers loads each strictly and computes the logits / scores the
/// trained model computes here.
#[test]
fn a_training_steps_output_loads_strictly_in_transformers() {
    let optimizer = OptimizerConfig {
        lr: 1e-2,
        ..OptimizerConfig::default()
    };
    let schedule = ScheduleConfig::default();
    let mut checks = Vec::new();
    for name in MODELS {
        let exp = expected(name);
        let (ids, mask) = (&exp["input_ids"], &exp["attention_mask"]);

        let mut lm = Trainer::new(load(name, Head::LanguageModel), &optimizer, &schedule, 1, 1);
        lm.train_step(&[sft_batch(ids, mask)]).unwrap();
        let model = lm.model();
        let logits = tch::no_grad(|| model.logits(&model.forward(ids, Some(mask), None, false)));
        let valid = mask.to_kind(Kind::Bool).unsqueeze(-1);
        let moved = (&logits - &exp["logits"])
            .abs()
            .masked_fill(&valid.logical_not(), 0.0);
        assert!(
            moved.max().double_value(&[]) > 1e-3,
            "{name}: the step changed nothing"
        );
        let with_inputs = |name, output| {
            vec![
                ("input_ids", ids.shallow_clone()),
                ("attention_mask", mask.shallow_clone()),
                (name, output),
            ]
        };
        let outputs = with_inputs("logits", logits);
        checks.push(saved(model, &format!("sft-step-{name}"), outputs, false));

        let mut rm = Trainer::new(scalar(name), &optimizer, &schedule, 1, 1);
        let ranked = Batch::Rm(RmBatch {
            input_ids: ids.shallow_clone(),
            valid: mask.shallow_clone(),
            groups: vec![vec![0, 1]],
            comparisons: 1,
        });
        rm.train_step(&[ranked]).unwrap();
        let scores = last_token_scores(rm.model(), ids, mask);
        assert!(
            max_abs_diff(&scores, &exp["score_logits"]) > 1e-3,
            "{name}: the RM step changed nothing"
        );
        let outputs = with_inputs("score_logits", scores);
        checks.push(saved(
            rm.model(),
            &format!("rm-step-{name}"),
            outputs,
            false,
        ));
    }
    hf_check(&checks, "after a training step");
}

/// The fixture's left-padded rows as an SFT batch: every real token after the first is
/// a target.
fn sft_batch(ids: &Tensor, mask: &Tensor) -> Batch {
    let t = ids.size()[1];
    let targets = ids.roll([-1], [1]);
    let _ = targets.narrow(1, t - 1, 1).fill_(0);
    let loss_mask = mask.to_kind(Kind::Float);
    let _ = loss_mask.narrow(1, t - 1, 1).fill_(0.0);
    let tokens = loss_mask.sum(Kind::Float).double_value(&[]) as i64;
    Batch::Sft(SftBatch {
        input_ids: ids.shallow_clone(),
        valid: mask.shallow_clone(),
        targets,
        loss_mask,
        tokens,
    })
}

/// An exported reward model scores in transformers as here, called as its users call it:
/// `AutoModelForSequenceClassification` on a right-padded batch of three lengths (its own
/// pad-token pooling, so config.json needs `pad_token_id`; the export writes it). The
/// centring bias is folded into the weights where the architecture can hold it (GPT-2,
/// GPT-NeoX: the final LayerNorm's bias); a Llama-family head cannot hold a constant
/// (RMSNorm, no biases), so there transformers gives rlhf's score minus config.json's
/// `reward_bias`. Reloading the export here gives the very same scores as before saving.
#[test]
fn exported_reward_models_score_in_transformers_as_here() {
    let bias = 0.75;
    let mut checks = Vec::new();
    for (name, folds) in [
        ("gpt2-tiny", true),
        ("neox-tiny", true),
        ("llama-tiny", false),
        ("qwen3-tiny", false),
        ("gemma2-tiny", false),
    ] {
        let mut model = scalar(name);
        model.set_score_bias(bias);
        let row = expected(name)["input_ids"].get(0);
        let (lengths, t) = ([10i64, 6, 3], 10);
        let ids = Tensor::zeros([3, t], (Kind::Int64, Device::Cpu));
        let mask = Tensor::zeros([3, t], (Kind::Int64, Device::Cpu));
        let mut here = Vec::new();
        for (i, &n) in lengths.iter().enumerate() {
            let seq = row.narrow(0, 0, n);
            ids.get(i as i64).narrow(0, 0, n).copy_(&seq);
            let _ = mask.get(i as i64).narrow(0, 0, n).fill_(1);
            let alone = seq.unsqueeze(0);
            here.push(last_token_scores(&model, &alone, &alone.ones_like()).double_value(&[0]));
        }
        let offset = if folds { 0.0 } else { bias };
        let want: Vec<f32> = here.iter().map(|s| (s - offset) as f32).collect();
        let outputs = vec![
            ("input_ids", ids),
            ("attention_mask", mask),
            ("score_logits", Tensor::from_slice(&want)),
        ];
        let check = saved(&model, &format!("export-{name}"), outputs, true);
        // As the embedded world's configs: no pad id until the export fills it in.
        let path = config::config_path(&check.dir);
        let mut raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        raw.as_object_mut().unwrap().remove("pad_token_id");
        std::fs::write(&path, raw.to_string()).unwrap();
        config::fill_pad_token_id(&check.dir, 0).unwrap();
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(raw["pad_token_id"], 0, "{name}");
        assert_eq!(raw["reward_bias"], bias, "{name}");
        assert_eq!(raw.get("reward_bias_folded").is_some(), folds, "{name}");

        let (back, _) = Model::load(&check.dir, Head::Scalar, DType::F32, Device::Cpu).unwrap();
        assert_eq!(back.score_bias(), bias, "{name}");
        for (n, original) in model.var_store().variables() {
            let reloaded = &back.var_store().variables()[&n];
            assert!(
                reloaded.equal(&original),
                "{name}: `{n}` differs after reloading"
            );
        }
        checks.push(check);
    }
    hf_check(&checks, "exported reward models");
}
