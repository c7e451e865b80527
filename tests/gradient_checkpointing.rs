//! Gradient checkpointing changes memory, not results: with it on, a model's losses and
//! every parameter's gradient equal those of the plain backward pass (SFT and RM batches,
//! two accumulated micro-batches, every architecture; GPT-2 and Llama also with dropout
//! and frozen parameters), and a trainer ends with the same weights.
//!
//! A test binary of its own: the dropout cases reseed libtorch's global generator and
//! must not have other tests' threads draw from it in between. Every test here holds
//! [`GENERATOR`].

use rlhf::data::{RmBatch, SftBatch};
use rlhf::device::DType;
use rlhf::model::{backward, load_weights, Architecture, Head, Model, ModelConfig, ModelShape};
use rlhf::optim::OptimizerConfig;
use rlhf::schedule::ScheduleConfig;
use rlhf::train::{batch_loss, Batch, Trainer};
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

static GENERATOR: Mutex<()> = Mutex::new(());

fn hold() -> MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    GENERATOR.lock().unwrap_or_else(|e| e.into_inner())
}

const ARCHS: [Architecture; 2] = [Architecture::Gpt2, Architecture::Llama];

/// Two models with the same random weights, the second with gradient checkpointing.
fn pair(arch: Architecture, head: Head, dropout: f64) -> (Model, Model) {
    let shape = ModelShape {
        arch,
        vocab_size: 64,
        hidden_size: 32,
        num_layers: 3,
        num_heads: 4,
        num_kv_heads: 2,
        max_positions: 32,
        eos_token_id: 0,
    };
    tch::manual_seed(11);
    let raw = ModelConfig::new_json(&shape);
    let mut plain = Model::new(raw.clone(), head, DType::F32, Device::Cpu).unwrap();
    let mut checkpointed = Model::new(raw, head, DType::F32, Device::Cpu).unwrap();
    load_weights(&mut checkpointed, &sorted(&plain, |v| v.detach().copy())).unwrap();
    plain.set_dropout(dropout);
    checkpointed.set_dropout(dropout);
    checkpointed.set_gradient_checkpointing(true);
    assert!(checkpointed.gradient_checkpointing() && !plain.gradient_checkpointing());
    (plain, checkpointed)
}

/// `f` of every variable, sorted by name.
fn sorted(model: &Model, f: impl Fn(&Tensor) -> Tensor) -> Vec<(String, Tensor)> {
    let mut all: Vec<(String, Tensor)> = model
        .var_store()
        .variables()
        .into_iter()
        .map(|(name, var)| (name, f(&var)))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Left-padded SFT rows (the masked attention path), ids shifted by `offset`.
fn sft(offset: i64) -> Batch {
    let input_ids =
        Tensor::from_slice(&[0i64, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]).view([2, 6]) + offset;
    let valid = Tensor::from_slice(&[0i64, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]).view([2, 6]);
    let loss_mask =
        Tensor::from_slice(&[0f32, 0., 1., 1., 1., 0., 1., 1., 1., 1., 1., 0.]).view([2, 6]);
    Batch::Sft(SftBatch {
        targets: input_ids.roll([-1], [1]),
        loss_mask,
        valid,
        input_ids,
        tokens: 8,
    })
}

/// Two prompts of two ranked responses each, left-padded.
fn rm(offset: i64) -> Batch {
    let input_ids = Tensor::from_slice(&[
        0i64, 3, 4, 5, 1, 6, 7, 8, 9, 1, 0, 0, 2, 3, 1, 9, 8, 7, 6, 1,
    ])
    .view([4, 5])
        + offset;
    let valid = input_ids.ne(offset).to_kind(Kind::Int64);
    Batch::Rm(RmBatch {
        input_ids,
        valid,
        groups: vec![vec![0, 1], vec![2, 3]],
        comparisons: 2,
    })
}

/// Each micro-batch's loss, backpropagated at half weight (accumulated gradients), after
/// seeding the generator with `seed`; returns the losses and every variable's gradient.
fn run(model: &Model, micro: &[Batch], seed: i64) -> (Vec<f64>, Vec<(String, Tensor)>) {
    tch::manual_seed(seed);
    let mut losses = vec![];
    for batch in micro {
        let (loss, _) = batch_loss(model, batch, true);
        losses.push(loss.double_value(&[]));
        backward(&(loss * 0.5), &[model]);
    }
    (losses, sorted(model, |v| v.grad()))
}

fn close(a: &Tensor, b: &Tensor) -> bool {
    let scale = 1.0 + b.abs().max().double_value(&[]);
    (a - b).abs().max().double_value(&[]) <= 1e-5 * scale
}

/// Equal losses, and every gradient equal (or absent on both sides); returns how many
/// parameters had one.
fn assert_same(what: &str, plain: &Model, checkpointed: &Model, micro: &[Batch]) -> usize {
    let (losses_a, grads_a) = run(plain, micro, 7);
    let (losses_b, grads_b) = run(checkpointed, micro, 7);
    for (a, b) in losses_a.iter().zip(&losses_b) {
        assert!(
            (a - b).abs() <= 1e-6 * (1.0 + a.abs()),
            "{what}: loss {a} vs {b}"
        );
    }
    let mut with_grad = 0;
    for ((name, a), (_, b)) in grads_a.iter().zip(&grads_b) {
        assert_eq!(a.defined(), b.defined(), "{what}: gradient of {name}");
        if a.defined() {
            assert!(close(b, a), "{what}: gradient of {name} differs");
            with_grad += 1;
        }
    }
    with_grad
}

#[test]
fn sft_and_rm_gradients_match_over_two_micro_batches() {
    let _held = hold();
    for arch in [Architecture::NeoX, Architecture::Gemma2, ARCHS[0], ARCHS[1]] {
        let (plain, checkpointed) = pair(arch, Head::LanguageModel, 0.0);
        let n = assert_same(
            &format!("{arch:?} sft"),
            &plain,
            &checkpointed,
            &[sft(0), sft(20)],
        );
        assert_eq!(n, plain.var_store().variables().len(), "{arch:?}");
        let (plain, checkpointed) = pair(arch, Head::Scalar, 0.0);
        // Every parameter but an untied LM head (none here: scalar head) gets a gradient.
        let n = assert_same(
            &format!("{arch:?} rm"),
            &plain,
            &checkpointed,
            &[rm(0), rm(30)],
        );
        assert_eq!(n, plain.var_store().variables().len(), "{arch:?}");
    }
}

/// The recomputed blocks draw the dropout masks of their first run (GPT-2: embedding,
/// attention and residual dropout; Llama: attention dropout).
#[test]
fn dropout_masks_are_reproduced() {
    let _held = hold();
    for arch in ARCHS {
        for head in [Head::LanguageModel, Head::Scalar] {
            let (plain, checkpointed) = pair(arch, head, 0.2);
            let micro = match head {
                Head::LanguageModel => [sft(0), sft(20)],
                Head::Scalar => [rm(0), rm(30)],
            };
            assert_same(&format!("{arch:?} {head:?}"), &plain, &checkpointed, &micro);
            // Dropout does act: other masks, other losses.
            let (a, _) = run(&plain, &micro, 7);
            let (b, _) = run(&plain, &micro, 8);
            assert_ne!(a, b, "{arch:?} {head:?}: dropout changed nothing");
        }
    }
}

/// A frozen embedding and first block: no block input requires grad on its own, and the
/// frozen tensors get no gradient either way.
#[test]
fn frozen_parameters_stay_without_gradients() {
    let _held = hold();
    for arch in ARCHS {
        let (plain, checkpointed) = pair(arch, Head::LanguageModel, 0.0);
        let frozen = |name: &str| {
            name.contains("wte") || name.contains("embed_tokens") || name.contains(".0.")
        };
        let mut count = 0;
        for model in [&plain, &checkpointed] {
            for (name, var) in model.var_store().variables() {
                if frozen(&name) {
                    let _ = var.set_requires_grad(false);
                    count += 1;
                }
            }
        }
        assert!(count > 4, "{arch:?}");
        let n = assert_same(
            &format!("{arch:?}"),
            &plain,
            &checkpointed,
            &[sft(0), sft(20)],
        );
        assert_eq!(
            n,
            plain.var_store().variables().len() - count / 2,
            "{arch:?}"
        );
    }
}

/// Honesty check of the tests above: the checkpointed forward really keeps no graph
/// through the blocks; their gradients come from `backward_recomputed` alone.
#[test]
fn block_gradients_come_from_the_recompute() {
    let _held = hold();
    let (_, checkpointed) = pair(Architecture::Llama, Head::LanguageModel, 0.0);
    let (loss, _) = batch_loss(&checkpointed, &sft(0), true);
    loss.backward();
    let grads = sorted(&checkpointed, |v| v.grad());
    let has = |part: &str| {
        grads
            .iter()
            .filter(|(name, _)| name.contains(part))
            .all(|(_, g)| g.defined())
    };
    assert!(has("model.norm"), "the final norm is outside the recompute");
    assert!(!grads
        .iter()
        .any(|(name, g)| name.contains("layers") && g.defined()));
    checkpointed.backward_recomputed();
    let grads = sorted(&checkpointed, |v| v.grad());
    let has = |part: &str| {
        grads
            .iter()
            .filter(|(name, _)| name.contains(part))
            .all(|(_, g)| g.defined())
    };
    assert!(has("layers") && has("embed_tokens"));
    // A second call finds nothing pending and changes nothing.
    let before = sorted(&checkpointed, |v| v.grad().copy());
    checkpointed.backward_recomputed();
    for ((_, a), (_, b)) in before.iter().zip(&sorted(&checkpointed, |v| v.grad())) {
        assert!(a.equal(b));
    }
}

/// Steps of a trainer (two micro-batches each) end with the same weights either way.
#[test]
fn a_trainer_takes_the_same_steps() {
    let _held = hold();
    for arch in ARCHS {
        for dropout in [0.0, 0.1] {
            let (plain, checkpointed) = pair(arch, Head::LanguageModel, dropout);
            // A large eps: Adam would turn gradients that are rounding noise (GPT-2's key
            // biases, which softmax ignores) into whole steps of random sign.
            let config = OptimizerConfig {
                lr: 1e-2,
                eps: 1e-3,
                ..OptimizerConfig::default()
            };
            let schedule = ScheduleConfig::default();
            let mut trainers = [plain, checkpointed].map(|m| {
                let mut t = Trainer::new(m, &config, &schedule, 4, 4);
                t.set_seed(3);
                t
            });
            for step in 0..3 {
                let losses: Vec<f64> = trainers
                    .iter_mut()
                    .map(|t| t.train_step(&[sft(step), sft(step + 20)]).unwrap().loss)
                    .collect();
                let (a, b) = (losses[0], losses[1]);
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                    "{arch:?} {a} vs {b}"
                );
            }
            let [a, b] = trainers.map(|t| sorted(t.model(), |v| v.detach().copy()));
            for ((name, a), (_, b)) in a.iter().zip(&b) {
                assert!(close(b, a), "{arch:?} dropout {dropout}: {name} differs");
            }
        }
    }
}

/// LoRA adapters with dropout of their own (the model's is 0): the recompute draws the
/// adapters' masks again, so their gradients are the plain backward's.
#[test]
fn adapter_dropout_masks_are_reproduced() {
    let _lock = hold();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let adapter = fixtures.join("lora/gpt2");
    let lora = rlhf::model::LoraConfig {
        dropout: 0.3,
        ..rlhf::model::adapter_io::read_adapter_config(&adapter).unwrap()
    };
    let model = |checkpointing: bool| {
        let base = fixtures.join("gpt2-tiny");
        let (mut model, _) = Model::load_with_lora(
            &base,
            Head::LanguageModel,
            DType::F32,
            Device::Cpu,
            Some(&lora),
        )
        .unwrap();
        model.load_adapter(&adapter).unwrap();
        model.set_gradient_checkpointing(checkpointing);
        assert!(model.draws_dropout());
        model
    };
    let with_grad = assert_same(
        "lora dropout",
        &model(false),
        &model(true),
        &[sft(0), sft(3)],
    );
    assert_eq!(with_grad, 8, "every adapter tensor gets a gradient");
}
