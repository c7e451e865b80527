//! Tests of the PPO learner on tiny random models.

use super::*;
use crate::config::OnNan;
use crate::data::SftBatch;
use crate::device::DType;
use crate::generate::{generate, left_pad, GenerateOptions};
use crate::model::{Architecture, ModelConfig, ModelShape};
use crate::ppo::{truncated_importance_weights, Baseline, KlConfig};
use tch::Device;

pub(super) const VOCAB: i64 = 32;
pub(super) const EOS: i64 = 31;
const TARGET: i64 = 7;

pub(super) fn tiny(head: Head, seed: i64) -> Model {
    // Tiny tensors: one intra-op thread is fastest, and on a busy machine a second thread
    // spinning at OpenMP barriers makes these tests an order of magnitude slower.
    tch::set_num_threads(1);
    tch::manual_seed(seed);
    let shape = ModelShape {
        arch: Architecture::Llama,
        vocab_size: VOCAB,
        hidden_size: 32,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        max_positions: 64,
        eos_token_id: EOS,
    };
    Model::new(ModelConfig::new_json(&shape), head, DType::F32, Device::Cpu).unwrap()
}

pub(super) fn learner(ppo: &PpoConfig, lr: f64) -> PpoLearner {
    let optimizer = OptimizerConfig {
        lr,
        ..OptimizerConfig::default()
    };
    PpoLearner::new(
        tiny(Head::LanguageModel, 1),
        ppo.uses_value_model().then(|| tiny(Head::Scalar, 2)),
        &optimizer,
        ppo,
        Sampling::default(),
    )
}

/// `rows` random prompts of 2 to 5 tokens (never EOS).
pub(super) fn prompts(rng: &mut Rng, rows: usize) -> Vec<Vec<i64>> {
    (0..rows)
        .map(|_| {
            let len = 2 + rng.below(4);
            (0..len)
                .map(|_| 1 + rng.below(EOS as usize - 1) as i64)
                .collect()
        })
        .collect()
}

/// The programmatic reward: the fraction of the `max_new` response slots holding TARGET.
pub(super) fn target_fraction(batch: &RolloutBatch, max_new: i64) -> Tensor {
    let hits = batch.response_ids.eq(TARGET).to_kind(Kind::Float) * &batch.response_mask;
    hits.sum_dim_intlist(1, false, Kind::Float) / max_new as f64
}

/// A batch sampled by the learner's current policy, with reference log-probs from
/// `reference` and TARGET-fraction scores.
pub(super) fn rollout(
    learner: &PpoLearner,
    reference: &Model,
    rng: &mut Rng,
    rows: usize,
    max_new: i64,
) -> RolloutBatch {
    let prompts = prompts(rng, rows);
    let (ids, mask) = left_pad(&prompts, 0);
    let options = GenerateOptions {
        sampling: learner.sampling().clone(),
        max_new_tokens: max_new,
        eos_token_ids: vec![EOS],
        pad_token_id: 0,
        static_batch: false,
    };
    let policy = learner.policy();
    let mut cache = policy.new_cache(ids.size()[0], ids.size()[1] + max_new);
    let mut streams = crate::generate::prompt_streams(rng.next_u64(), 0, rows);
    let generation = generate(policy, &mut cache, &prompts, &options, &mut streams).unwrap();
    let mut batch =
        RolloutBatch::from_generation(0, learner.version(), ids, mask, generation, &[EOS]);
    batch.ref_logprobs = Some(response_logprobs(
        reference,
        &batch,
        learner.sampling(),
        false,
    ));
    batch.scores = Some(target_fraction(&batch, max_new));
    batch
}

/// A frozen copy of the learner's current policy.
pub(super) fn frozen_copy(learner: &PpoLearner) -> Model {
    let mut copy = tiny(Head::LanguageModel, 99);
    load_weights(&mut copy, &learner.policy_weights()).unwrap();
    copy
}

fn logits(model: &Model, ids: &Tensor) -> Tensor {
    tch::no_grad(|| model.logits(&model.forward(ids, None, None, false)))
}

/// Synchronous PPO (generate with the current policy, score, update) against a reward
/// for emitting TARGET. The reference is uniform-ish over 32 tokens, so a policy that
/// collapsed onto TARGET would pay about 8 * ln 32 = 27.7 nats per sequence; with
/// beta = 0.03 the KL-regularised optimum puts about 0.7 of the mass on TARGET at about
/// 14 nats, and PPO should get there and stay there.
#[test]
fn ppo_raises_a_programmatic_reward_with_bounded_kl() {
    let ppo = PpoConfig {
        kl: KlConfig {
            coef: 0.03,
            ..KlConfig::default()
        },
        ppo_epochs: 2,
        minibatches: 2,
        ..PpoConfig::default()
    };
    let lr = 3e-3;
    let mut learner = learner(&ppo, lr);
    let reference = frozen_copy(&learner);
    let mut rng = Rng::new(5);
    let (rows, max_new) = (32, 8);
    let mut history = vec![];
    for step in 0..25 {
        let batch = rollout(&learner, &reference, &mut rng, rows, max_new);
        let stats = learner.update(&batch, &[], &mut rng, lr).unwrap();
        assert_eq!((stats.staleness, stats.policy_version), (0, step + 1));
        assert!(stats.logprob_gap.unwrap() < 1e-4, "{stats:?}");
        assert!(stats.kl_per_sequence.is_finite() && stats.policy_loss.is_finite());
        assert!(stats.value_loss.is_finite() && stats.entropy > 0.0);
        history.push(stats);
    }
    let mean = |stats: &[PpoStats], f: fn(&PpoStats) -> f64| {
        stats.iter().map(f).sum::<f64>() / stats.len() as f64
    };
    let tail = &history[history.len() - 3..];
    let scores: Vec<f64> = history.iter().map(|s| s.score_mean).collect();
    let first = mean(&history[..3], |s| s.score_mean);
    let last = mean(tail, |s| s.score_mean);
    let kl = mean(tail, |s| s.kl_per_sequence);
    assert!(first < 0.1, "{scores:?}");
    assert!(last > 0.3, "{scores:?}");
    assert!(kl > 0.0 && kl < 20.0, "KL per sequence {kl}");
    assert!(mean(tail, |s| s.explained_variance) > 0.5, "{:?}", tail);
}

#[test]
fn fresh_batch_from_the_learners_weights_is_on_policy() {
    let ppo = PpoConfig {
        ppo_epochs: 1,
        minibatches: 1,
        ..PpoConfig::default()
    };
    let mut learner = learner(&ppo, 1e-3);
    let reference = frozen_copy(&learner);
    let mut rng = Rng::new(9);
    let batch = rollout(&learner, &reference, &mut rng, 8, 6);
    let mask = &batch.response_mask;
    let old = response_logprobs(learner.policy(), &batch, learner.sampling(), false);
    let weights = truncated_importance_weights(&old, &batch.behaviour_logprobs, mask, 2.0);
    let off = (weights - mask).abs().max().double_value(&[]);
    assert!(off < 1e-4, "importance weights differ from 1 by {off}");

    let stats = learner.update(&batch, &[], &mut rng, 1e-3).unwrap();
    assert_eq!(
        (stats.staleness, stats.batch_version, stats.policy_version),
        (0, 0, 1)
    );
    assert_eq!(stats.clip_fraction, 0.0, "{stats:?}");
    assert!(stats.approx_kl.abs() < 1e-7, "{stats:?}");
    assert!(stats.logprob_gap.unwrap() < 1e-5, "{stats:?}");
    assert_eq!(stats.policy_drift, None);
    assert!(
        (stats.importance_weight_mean - 1.0).abs() < 1e-5,
        "{stats:?}"
    );
    assert!(stats.kl_per_sequence.abs() < 1e-5, "{stats:?}");
    assert!(stats.ptx_loss.is_none());
    assert!(stats.entropy > 0.0 && stats.grad_norm_policy > 0.0 && stats.grad_norm_value > 0.0);
    assert_eq!(stats.lr, 1e-3);

    // The same batch again is one version stale, and the learner has moved away from it.
    let stats = learner.update(&batch, &[], &mut rng, 1e-3).unwrap();
    assert_eq!((stats.staleness, stats.policy_version), (1, 2));
    // A stale batch reports the drift, not a generator/learner gap.
    assert_eq!(stats.logprob_gap, None);
    assert!(stats.policy_drift.unwrap() > 1e-5, "{stats:?}");
    assert!(
        (stats.importance_weight_mean - 1.0).abs() > 1e-6,
        "{stats:?}"
    );
}

/// With one minibatch the update takes its old log-probs and values from the first
/// step's own forward passes; that must train exactly as separate no-grad passes do.
#[test]
fn a_shared_first_pass_trains_as_separate_passes_do() {
    let ppo = PpoConfig {
        ppo_epochs: 2,
        minibatches: 1,
        ..PpoConfig::default()
    };
    let (mut shared, mut separate) = (learner(&ppo, 1e-3), learner(&ppo, 1e-3));
    separate.share_first_pass = false;
    // The same start (tests in parallel share libtorch's seeded generator).
    load_weights(&mut separate.policy, &shared.policy_weights()).unwrap();
    let value: Vec<(String, Tensor)> = shared
        .value()
        .unwrap()
        .var_store()
        .variables()
        .into_iter()
        .collect();
    load_weights(&mut separate.critic.as_mut().unwrap().model, &value).unwrap();
    let reference = frozen_copy(&shared);
    let mut rng = Rng::new(5);
    let batch = rollout(&shared, &reference, &mut rng, 8, 6);
    // Make it off-policy, so ratios, advantages and clipping all matter.
    let _ = batch
        .behaviour_logprobs
        .shallow_clone()
        .g_add_scalar_(-0.05);
    let a = shared.update(&batch, &[], &mut Rng::new(1), 1e-2).unwrap();
    let b = separate
        .update(&batch, &[], &mut Rng::new(1), 1e-2)
        .unwrap();
    for (x, y, what) in [
        (a.policy_loss, b.policy_loss, "policy loss"),
        (a.value_loss, b.value_loss, "value loss"),
        (a.approx_kl, b.approx_kl, "approx kl"),
        (a.grad_norm_value, b.grad_norm_value, "value grad norm"),
    ] {
        assert!(
            (x - y).abs() <= 1e-6 * (1.0 + y.abs()),
            "{what}: {x} vs {y}"
        );
    }
    for (model_a, model_b) in [
        (shared.policy(), separate.policy()),
        (shared.value().unwrap(), separate.value().unwrap()),
    ] {
        let vars_b = model_b.var_store().variables();
        for (name, var) in model_a.var_store().variables() {
            let diff = (&var - &vars_b[&name]).abs().max().double_value(&[]);
            // Steps are ~lr = 1e-2 per weight; kernel-order noise is ~1e-6 to 3e-5 (Adam
            // normalises tiny gradients; more when parallel tests change libtorch's
            // threading), a wrong pass would differ by a step.
            assert!(diff < 1e-4, "{name} differs by {diff}");
        }
    }
}

#[test]
fn missing_ref_logprobs_or_scores_is_an_error_that_names_it() {
    let mut learner = learner(&PpoConfig::default(), 1e-3);
    let reference = frozen_copy(&learner);
    let mut rng = Rng::new(2);
    let mut batch = rollout(&learner, &reference, &mut rng, 4, 4);
    let scores = batch.scores.take();
    let err = learner.update(&batch, &[], &mut rng, 1e-3).unwrap_err();
    assert!(err.to_string().contains("`scores`"), "{err}");
    batch.scores = scores;
    batch.ref_logprobs = None;
    let err = learner.update(&batch, &[], &mut rng, 1e-3).unwrap_err();
    assert!(err.to_string().contains("`ref_logprobs`"), "{err}");
    // A reward plug-in that returns the wrong shape is an error too, not a panic.
    batch.ref_logprobs = Some(batch.behaviour_logprobs.shallow_clone());
    batch.scores = Some(Tensor::zeros([3], (Kind::Float, Device::Cpu)));
    let err = learner.update(&batch, &[], &mut rng, 1e-3).unwrap_err();
    assert!(err.to_string().contains("`scores` has shape [3]"), "{err}");
    assert_eq!(learner.version(), 0);
}

#[test]
fn load_weights_round_trip_gives_identical_logits() {
    let mut learner = learner(&PpoConfig::default(), 1e-2);
    let reference = frozen_copy(&learner);
    let mut rng = Rng::new(4);
    let batch = rollout(&learner, &reference, &mut rng, 4, 4);
    learner.update(&batch, &[], &mut rng, 1e-2).unwrap();

    let ids = Tensor::from_slice(&[3i64, 9, 14, 7, 7, 2]).view([2, 3]);
    let mut generator = tiny(Head::LanguageModel, 77);
    let want = logits(learner.policy(), &ids);
    assert!(!logits(&generator, &ids).equal(&want));
    let weights = learner.policy_weights();
    assert!(weights.iter().all(|(_, t)| !t.requires_grad()));
    load_weights(&mut generator, &weights).unwrap();
    assert!(logits(&generator, &ids).equal(&want));
    // The copies are detached: the next update does not move the generator.
    let batch = rollout(&learner, &reference, &mut rng, 4, 4);
    learner.update(&batch, &[], &mut rng, 1e-2).unwrap();
    assert!(logits(&generator, &ids).equal(&want));
    assert!(!logits(learner.policy(), &ids).equal(&want));

    let mut fewer = weights
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect::<Vec<_>>();
    let (dropped, _) = fewer.remove(3);
    let err = load_weights(&mut generator, &fewer).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("missing tensor `{dropped}`")),
        "{err}"
    );
    let mut bad = fewer;
    bad.push((
        dropped.clone(),
        Tensor::zeros([1, 2], (Kind::Float, Device::Cpu)),
    ));
    let err = load_weights(&mut generator, &bad).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("`{dropped}` has shape [1, 2]")),
        "{err}"
    );
    bad.pop();
    bad.push((
        "no.such.weight".into(),
        Tensor::zeros([1], (Kind::Float, Device::Cpu)),
    ));
    let err = load_weights(&mut generator, &bad).unwrap_err();
    assert!(err.to_string().contains("`no.such.weight`"), "{err}");
    // Failed loads copied nothing.
    assert!(logits(&generator, &ids).equal(&want));
}

#[test]
fn ptx_mixes_in_the_pretraining_loss() {
    let ppo = PpoConfig {
        ptx_coef: 1.0,
        entropy_coef: 0.01,
        ..PpoConfig::default()
    };
    let mut learner = learner(&ppo, 1e-2);
    let reference = frozen_copy(&learner);
    let mut rng = Rng::new(6);
    // A "pretraining" batch: two left-padded sequences, loss on every real next token.
    let seqs = vec![vec![4i64, 5, 6, 4, 5, 6, 4, 5], vec![9, 8, 9, 8, 9]];
    let (input_ids, valid) = left_pad(&seqs, 0);
    let width = input_ids.size()[1];
    let targets = Tensor::cat(
        &[
            input_ids.narrow(1, 1, width - 1),
            Tensor::zeros([2, 1], (Kind::Int64, Device::Cpu)),
        ],
        1,
    );
    let loss_mask = valid.narrow(1, 1, width - 1).to_kind(Kind::Float);
    let loss_mask = Tensor::cat(
        &[loss_mask, Tensor::zeros([2, 1], (Kind::Float, Device::Cpu))],
        1,
    ) * valid.to_kind(Kind::Float);
    let tokens = loss_mask.sum(Kind::Float).int64_value(&[]);
    let ptx = SftBatch {
        input_ids,
        valid,
        targets,
        loss_mask,
        tokens,
    };
    let mut losses = vec![];
    for _ in 0..8 {
        let batch = rollout(&learner, &reference, &mut rng, 8, 4);
        let stats = learner
            .update(&batch, std::slice::from_ref(&ptx), &mut rng, 1e-2)
            .unwrap();
        losses.push(stats.ptx_loss.expect("ptx loss is reported"));
    }
    assert!(losses[0] > 3.0, "{losses:?}");
    assert!(losses[7] < losses[0] - 1.0, "{losses:?}");
    // Without a ptx batch, no ptx loss.
    let batch = rollout(&learner, &reference, &mut rng, 8, 4);
    assert!(learner
        .update(&batch, &[], &mut rng, 1e-2)
        .unwrap()
        .ptx_loss
        .is_none());
}

/// Everything an update changes: both models' weights, both optimizers' moments and step
/// counts (deep copies), the KL coefficient and the version.
fn training_state(learner: &PpoLearner) -> (Vec<(String, Tensor)>, f64, u64) {
    let mut tensors = learner.policy_weights();
    if let Some(model) = learner.value() {
        let mut value: Vec<(String, Tensor)> = model
            .var_store()
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("value.{n}"), t.detach().copy()))
            .collect();
        value.sort_by(|a, b| a.0.cmp(&b.0));
        tensors.extend(value);
    }
    let (policy_opt, value_opt) = learner.optimizers();
    let optimizers = [("policy_opt", Some(policy_opt)), ("value_opt", value_opt)];
    for (prefix, optimizer) in optimizers
        .into_iter()
        .filter_map(|(p, o)| o.map(|o| (p, o)))
    {
        for (n, t) in optimizer.state() {
            tensors.push((format!("{prefix}.{n}"), t.copy()));
        }
    }
    (tensors, learner.kl_controller().value, learner.version())
}

fn same_state(
    a: &(Vec<(String, Tensor)>, f64, u64),
    b: &(Vec<(String, Tensor)>, f64, u64),
) -> bool {
    a.1 == b.1
        && a.2 == b.2
        && a.0.len() == b.0.len()
        && a.0
            .iter()
            .zip(&b.0)
            .all(|((n, x), (m, y))| n == m && x.equal(y))
}

/// A NaN in the last of an update's four minibatch steps (the test hook), after three were
/// applied: with on_nan = "skip" the learner rolls the whole update back; with "stop" it
/// reports the step and leaves the three applied (the caller stops the run).
#[test]
fn a_non_finite_update_is_rolled_back_when_skipped() {
    let base = PpoConfig {
        kl: KlConfig {
            adaptive: true,
            ..KlConfig::default()
        },
        ppo_epochs: 2,
        minibatches: 2,
        ..PpoConfig::default()
    };
    for on_nan in [OnNan::Skip, OnNan::Stop] {
        let ppo = PpoConfig {
            on_nan,
            ..base.clone()
        };
        let mut learner = learner(&ppo, 1e-2);
        let reference = frozen_copy(&learner);
        let mut rng = Rng::new(8);
        let batch = rollout(&learner, &reference, &mut rng, 8, 4);
        // One good update first: non-zero moments, a moved KL coefficient, version 1.
        learner.update(&batch, &[], &mut rng, 1e-2).unwrap();
        let before = training_state(&learner);
        learner.poison_update(1);
        match learner.update(&batch, &[], &mut rng, 1e-2) {
            Err(Error::NonFinite { what, step }) => {
                assert!(what.starts_with("PPO loss (policy NaN"), "{what}");
                assert!(what.ends_with("in minibatch step 4 of 4"), "{what}");
                assert_eq!(step, 2);
            }
            other => panic!("expected a non-finite error, got {other:?}"),
        }
        let after = training_state(&learner);
        assert_eq!((after.1, after.2), (before.1, before.2), "{on_nan:?}");
        match on_nan {
            OnNan::Skip => assert!(same_state(&before, &after), "the skipped update stayed"),
            OnNan::Stop => assert!(
                !same_state(&before, &after),
                "the three steps before the NaN should stay applied without a rollback"
            ),
        }
        // The poison lasts one update; the next one trains.
        let stats = learner.update(&batch, &[], &mut rng, 1e-2).unwrap();
        assert_eq!(stats.policy_version, 2);
        assert!(stats.policy_loss.is_finite());
    }
}

/// The value model's weights and optimizer state (`value`), or the policy's weights
/// (without its optimizer, whose step count moves even when its gradient is zero).
fn part(state: &(Vec<(String, Tensor)>, f64, u64), value: bool) -> Vec<(String, Tensor)> {
    state
        .0
        .iter()
        .filter(|(n, _)| !n.starts_with("policy_opt.") && n.starts_with("value") == value)
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect()
}

fn same_tensors(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((n, x), (m, y))| n == m && x.equal(y))
}

/// With the group baseline, scores that are equal within each prompt's samples carry no
/// signal, whatever their offsets across prompts (an RM's per-prompt bias): the policy
/// does not move. A different score within a group moves it. There is no value model or
/// value optimizer to touch. The value baseline, on the same batch, moves the policy on
/// the offsets alone.
#[test]
fn the_group_baseline_learns_only_from_differences_within_a_prompt() {
    let group = PpoConfig {
        baseline: Baseline::Group,
        samples_per_prompt: 2,
        kl: KlConfig {
            coef: 0.0,
            ..KlConfig::default()
        },
        ..PpoConfig::default()
    };
    let lr = 1e-2;
    let mut rng = Rng::new(21);
    let mut grouped = learner(&group, lr);
    let reference = frozen_copy(&grouped);
    let mut batch = rollout(&grouped, &reference, &mut rng, 8, 5);
    // Rows 2k and 2k+1 are one prompt's samples: equal scores, offsets 0, 10, -4, 7.
    let offsets = Tensor::from_slice(&[0.0f32, 0.0, 10.0, 10.0, -4.0, -4.0, 7.0, 7.0]);
    batch.scores = Some(offsets.shallow_clone());

    assert!(grouped.value().is_none() && grouped.optimizers().1.is_none());
    let before = training_state(&grouped);
    let stats = grouped.update(&batch, &[], &mut rng, lr).unwrap();
    let after = training_state(&grouped);
    assert!(same_tensors(&part(&before, false), &part(&after, false)));
    assert!(part(&after, true).is_empty(), "no value tensors");
    assert_eq!((stats.value_loss, stats.grad_norm_value), (0.0, 0.0));
    assert_eq!(stats.score_mean, 3.25);

    // One sample scoring above its twin is a signal.
    batch.scores = Some(&offsets + Tensor::from_slice(&[1.0f32, 0., 0., 0., 0., 0., 0., 0.]));
    grouped.update(&batch, &[], &mut rng, lr).unwrap();
    let moved = training_state(&grouped);
    assert!(!same_tensors(&part(&after, false), &part(&moved, false)));

    // Its training-state checkpoint has the policy alone, and restores it exactly.
    let dir = std::env::temp_dir().join(format!("rlhf-group-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    grouped.save_state(&dir).unwrap();
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.starts_with("policy")), "{files:?}");
    assert!(!files.iter().any(|f| f.starts_with("value")), "{files:?}");
    let mut restored = learner(&group, lr);
    restored.load_state(&dir).unwrap();
    assert!(same_state(&moved, &training_state(&restored)));
    let _ = std::fs::remove_dir_all(&dir);

    // The value baseline sees the offsets as returns to predict and moves both models.
    let value = PpoConfig {
        baseline: Baseline::Value,
        ..group
    };
    let mut valued = learner(&value, lr);
    batch.scores = Some(offsets);
    let before = training_state(&valued);
    valued.update(&batch, &[], &mut rng, lr).unwrap();
    let after = training_state(&valued);
    assert!(!same_tensors(&part(&before, false), &part(&after, false)));
    assert!(!same_tensors(&part(&before, true), &part(&after, true)));
}

#[test]
fn a_batch_that_is_not_whole_groups_is_an_error() {
    let ppo = PpoConfig {
        samples_per_prompt: 3,
        ..PpoConfig::default()
    };
    let mut learner = learner(&ppo, 1e-3);
    let reference = frozen_copy(&learner);
    let mut rng = Rng::new(4);
    let batch = rollout(&learner, &reference, &mut rng, 8, 4);
    let err = learner
        .update(&batch, &[], &mut rng, 1e-3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("8 responses") && err.contains("samples_per_prompt = 3"),
        "{err}"
    );
    assert_eq!(learner.version(), 0);
}
