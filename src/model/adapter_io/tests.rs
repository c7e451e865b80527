//! LoRA against `peft` (fixtures from scripts/lora_fixtures.py): adapters read from a
//! `peft` folder score as `peft` does, merged weights as `merge_and_unload` does, and the
//! folder `rlhf` writes holds the same tensors and settings.

use super::*;
use crate::device::DType;
use crate::model::{Head, Model};
use crate::optim::OptimizerConfig;
use crate::schedule::ScheduleConfig;
use crate::train::{Batch, Trainer};
use std::path::PathBuf;
use tch::Device;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlhf-lora-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct Case {
    adapter: PathBuf,
    base: PathBuf,
    head: Head,
    ids: Tensor,
    outputs: Tensor,
    merged: Tensor,
}

fn case(name: &str) -> Case {
    let adapter = fixture(&format!("lora/{name}"));
    let text = std::fs::read_to_string(adapter.join("expected.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let tensor = |key: &str| -> Tensor {
        let flat: Vec<f64> = flatten(&json[key]);
        let shape = shape(&json[key]);
        Tensor::from_slice(&flat)
            .view(shape.as_slice())
            .to_kind(Kind::Float)
    };
    let head = match json["task"].as_str().unwrap() {
        "SEQ_CLS" => Head::Scalar,
        _ => Head::LanguageModel,
    };
    Case {
        base: fixture(json["base"].as_str().unwrap()),
        adapter,
        head,
        ids: tensor("input_ids").to_kind(Kind::Int64),
        outputs: tensor("outputs"),
        merged: tensor("merged"),
    }
}

fn flatten(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

fn shape(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(items) => {
            let mut s = vec![items.len() as i64];
            s.extend(shape(&items[0]));
            s
        }
        _ => vec![],
    }
}

/// LM logits [B, T, V], or the last token's score [B], as the fixture holds them.
fn outputs(model: &Model, ids: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let hidden = model.forward(ids, None, None, false);
        match model.head() {
            Head::LanguageModel => model.logits(&hidden),
            Head::Scalar => model.scores(&hidden.select(1, ids.size()[1] - 1)),
        }
    })
}

fn adapted(c: &Case) -> Model {
    let lora = read_adapter_config(&c.adapter).unwrap();
    let (mut model, _) =
        Model::load_with_lora(&c.base, c.head, DType::F32, Device::Cpu, Some(&lora)).unwrap();
    model.load_adapter(&c.adapter).unwrap();
    model
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.size(), b.size(), "{what}");
    let diff = (a - b).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "{what}: max |diff| {diff}");
}

const CASES: [&str; 3] = ["gpt2", "llama", "gpt2-score"];

#[test]
fn peft_adapters_score_as_peft_does() {
    for name in CASES {
        let c = case(name);
        let model = adapted(&c);
        let out = outputs(&model, &c.ids);
        assert_close(&out, &c.outputs, name);
        // The adapters matter: the base alone is far off.
        let (base, _) = Model::load(&c.base, c.head, DType::F32, Device::Cpu).unwrap();
        let gap = (outputs(&base, &c.ids) - &c.outputs)
            .abs()
            .max()
            .double_value(&[]);
        assert!(gap > 1e-2, "{name}: the adapters change nothing ({gap})");
    }
}

#[test]
fn switching_adapters_off_gives_the_base_model() {
    for name in ["gpt2", "llama"] {
        let c = case(name);
        let model = adapted(&c);
        let (base, _) = Model::load(&c.base, c.head, DType::F32, Device::Cpu).unwrap();
        model.set_adapters(false);
        assert!(
            outputs(&model, &c.ids).equal(&outputs(&base, &c.ids)),
            "{name}"
        );
        model.set_adapters(true);
        assert_close(&outputs(&model, &c.ids), &c.outputs, name);
    }
}

#[test]
fn merged_folders_score_as_peft_merge_and_unload() {
    for name in CASES {
        let c = case(name);
        let dir = temp(&format!("merged-{name}"));
        adapted(&c).save(&dir).unwrap();
        let (plain, report) = Model::load(&dir, c.head, DType::F32, Device::Cpu).unwrap();
        assert!(report.ignored.is_empty(), "{name}: {:?}", report.ignored);
        assert!(plain.lora().is_none());
        assert_close(&outputs(&plain, &c.ids), &c.merged, name);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn written_adapter_folders_hold_peft_tensors_and_settings() {
    for name in CASES {
        let c = case(name);
        let dir = temp(&format!("adapter-{name}"));
        adapted(&c).save_adapter(&dir).unwrap();
        let original: BTreeMap<String, Tensor> = weights::read(&c.adapter.join(ADAPTER_WEIGHTS))
            .unwrap()
            .into_iter()
            .collect();
        let written: BTreeMap<String, Tensor> = weights::read(&dir.join(ADAPTER_WEIGHTS))
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            original.keys().collect::<Vec<_>>(),
            written.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (key, t) in &original {
            assert!(t.equal(&written[key]), "{name}: {key}");
        }
        let theirs = read_adapter_config(&c.adapter).unwrap();
        let ours = read_adapter_config(&dir).unwrap();
        assert_eq!(
            (ours.rank, ours.alpha),
            (theirs.rank, theirs.alpha),
            "{name}"
        );
        // peft matches a target by name suffix, so a written bare name adapts the same
        // layers: every written target names only adapted modules' last parts.
        let mut a: Vec<_> = theirs
            .targets
            .iter()
            .map(|t| t.rsplit('.').next().unwrap())
            .collect();
        a.sort();
        a.dedup();
        assert_eq!(ours.targets, a, "{name}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn only_adapters_and_a_scalar_head_train() {
    let lora = LoraConfig {
        targets: vec!["c_attn".into()],
        ..LoraConfig::default()
    };
    for head in [Head::LanguageModel, Head::Scalar] {
        let base = fixture("gpt2-tiny");
        let (model, _) =
            Model::load_with_lora(&base, head, DType::F32, Device::Cpu, Some(&lora)).unwrap();
        let names: Vec<String> = model.trainable().into_iter().map(|(n, _)| n).collect();
        // Two layers, A and B each, plus the scalar head.
        let expected = 4 + usize::from(head == Head::Scalar);
        assert_eq!(names.len(), expected, "{names:?}");
        assert!(
            names.iter().all(|n| is_adapter(n) || n == SCORE),
            "{names:?}"
        );
        for (name, t) in model.var_store().variables() {
            assert_eq!(t.requires_grad(), names.contains(&name), "{name}");
        }
    }
}

#[test]
fn a_training_step_moves_the_adapters_alone() {
    let lora = LoraConfig {
        rank: 2,
        ..LoraConfig::default()
    };
    let base = fixture("llama-tiny");
    let (model, _) = Model::load_with_lora(
        &base,
        Head::LanguageModel,
        DType::F32,
        Device::Cpu,
        Some(&lora),
    )
    .unwrap();
    let before: BTreeMap<String, Tensor> = model
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    let optimizer = OptimizerConfig {
        lr: 1e-2,
        ..OptimizerConfig::default()
    };
    let mut trainer = Trainer::new(model, &optimizer, &ScheduleConfig::default(), 1, 1);
    let ids = Tensor::from_slice(&[5i64, 9, 14, 3, 77, 21, 40, 2]).view([2, 4]);
    let batch = Batch::Sft(crate::data::SftBatch {
        input_ids: ids.narrow(1, 0, 3),
        targets: ids.narrow(1, 1, 3),
        loss_mask: Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
        valid: Tensor::ones([2, 3], (Kind::Int64, Device::Cpu)),
        tokens: 6,
    });
    trainer.train_step(&[batch]).unwrap();
    let after = trainer.model().var_store().variables();
    for (name, t) in &before {
        let moved = !t.equal(&after[name]);
        // A starts random and B at zero; after one step every B has moved (A's gradient
        // is zero while B is zero).
        let should = name.ends_with(B_SUFFIX);
        assert_eq!(moved, should, "{name}");
    }
}

#[test]
fn a_target_that_names_no_layer_is_refused() {
    let lora = LoraConfig {
        targets: vec!["q_proj".into()],
        ..LoraConfig::default()
    };
    let base = fixture("gpt2-tiny");
    let err = Model::load_with_lora(
        &base,
        Head::LanguageModel,
        DType::F32,
        Device::Cpu,
        Some(&lora),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("lora.targets: `q_proj` names no linear layer"),
        "{err}"
    );
    assert!(err.contains("c_attn, c_fc, c_proj"), "{err}");
}

#[test]
fn shared_models_hold_one_base_and_their_own_adapters() {
    for name in ["gpt2", "llama", "gpt2-score"] {
        let c = case(name);
        let model = adapted(&c);
        let mut shared = model.share();
        assert_close(&outputs(&shared, &c.ids), &c.outputs, name);
        let (vars, others) = (
            model.var_store().variables(),
            shared.var_store().variables(),
        );
        assert_eq!(vars.len(), others.len(), "{name}");
        let trainable: Vec<String> = model.trainable().into_iter().map(|(n, _)| n).collect();
        for (n, t) in &vars {
            let same_storage = t.data_ptr() == others[n].data_ptr();
            assert_eq!(same_storage, !trainable.contains(n), "{name}: {n}");
        }
        // The share's adapters and switch are its own.
        let zeros: Vec<(String, Tensor)> = shared
            .trainable()
            .into_iter()
            .map(|(n, t)| (n, t.zeros_like()))
            .collect();
        crate::model::load_weights(&mut shared, &zeros).unwrap();
        shared.set_adapters(false);
        assert_close(&outputs(&model, &c.ids), &c.outputs, name);
        model.set_adapters(false);
        shared.set_adapters(true);
        let (base, _) = Model::load(&c.base, c.head, DType::F32, Device::Cpu).unwrap();
        if c.head == Head::LanguageModel {
            // Zero adapters are the base model; off is the base model.
            assert_close(&outputs(&shared, &c.ids), &outputs(&base, &c.ids), name);
            assert!(
                outputs(&model, &c.ids).equal(&outputs(&base, &c.ids)),
                "{name}"
            );
        }
    }
}

#[test]
fn recomputed_blocks_give_adapters_the_plain_gradients() {
    for name in ["gpt2", "llama"] {
        let c = case(name);
        let grads = |checkpointing: bool| -> Vec<Tensor> {
            let mut model = adapted(&c);
            model.set_gradient_checkpointing(checkpointing);
            let logits = model.logits(&model.forward(&c.ids, None, None, true));
            let loss = logits
                .log_softmax(-1, Kind::Float)
                .select(2, 7)
                .mean(Kind::Float);
            crate::model::backward(&loss, &[&model]);
            model
                .trainable()
                .iter()
                .map(|(_, t)| t.grad().copy())
                .collect()
        };
        let (plain, recomputed) = (grads(false), grads(true));
        assert_eq!(plain.len(), recomputed.len());
        for (a, b) in plain.iter().zip(&recomputed) {
            assert!(
                a.abs().max().double_value(&[]) > 0.0,
                "{name}: a zero gradient"
            );
            assert_close(a, b, name);
        }
    }
}
