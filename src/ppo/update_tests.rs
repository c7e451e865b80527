//! [`PpoLearner::update`] as a whole against a plain, straight-line reference: the same
//! algorithm written out step by step on host numbers (scores, KL, shaped rewards, GAE,
//! whitening, importance weights) and tensors only where a gradient is needed (clipped
//! losses, entropy, ptx), then the engine's AdamW on copies of the learner's models.

use super::tests::{frozen_copy, rollout, tiny, EOS};
use super::*;
use crate::data::batches;
use crate::ppo::{Baseline, GroupAdvantage, KlConfig, KlEstimator, KlPlacement, LossAggregation};
use tch::Device;

type Rows = Vec<Vec<f64>>;

fn rows(t: &Tensor) -> Rows {
    Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu)).unwrap()
}

fn tensor(rows: &Rows) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, -1])
}

fn pick(all: &Rows, index: &[usize]) -> Tensor {
    tensor(&index.iter().map(|&i| all[i].clone()).collect())
}

fn learner_with(c: &PpoConfig, optimizer: &OptimizerConfig) -> PpoLearner {
    PpoLearner::new(
        tiny(Head::LanguageModel, 1),
        c.uses_value_model().then(|| tiny(Head::Scalar, 2)),
        optimizer,
        c,
        Sampling {
            temperature: 0.9,
            ..Sampling::default()
        },
    )
}

/// Copies of the learner's models, optimizers and KL coefficient.
struct Reference {
    policy: Model,
    value: Model,
    policy_opt: AdamW,
    value_opt: AdamW,
    beta: f64,
}

impl Reference {
    fn copy_of(learner: &PpoLearner, optimizer: &OptimizerConfig) -> Reference {
        let mut policy = tiny(Head::LanguageModel, 50);
        let mut value = tiny(Head::Scalar, 51);
        policy.set_dropout(0.0);
        value.set_dropout(0.0);
        load_weights(&mut policy, &learner.policy_weights()).unwrap();
        // Without a value model in the learner (a group baseline) this one goes unused.
        if let Some(learned) = learner.value() {
            let value_weights: Vec<(String, Tensor)> = learned
                .var_store()
                .variables()
                .into_iter()
                .map(|(n, t)| (n, t.detach().copy()))
                .collect();
            load_weights(&mut value, &value_weights).unwrap();
        }
        let params = |m: &Model| m.var_store().variables().into_iter().collect();
        let mut policy_opt = AdamW::new(params(&policy), optimizer);
        let mut value_opt = AdamW::new(params(&value), optimizer);
        let (p, v) = learner.optimizers();
        let state = |o: &AdamW| -> BTreeMap<String, Tensor> {
            o.state().into_iter().map(|(n, t)| (n, t.copy())).collect()
        };
        policy_opt.load_state(&state(p)).unwrap();
        if let Some(v) = v {
            value_opt.load_state(&state(v)).unwrap();
        }
        Reference {
            policy,
            value,
            policy_opt,
            value_opt,
            beta: learner.kl_controller().value,
        }
    }
}

/// The figures the reference expects of one update.
#[derive(Debug, Default)]
struct Expected {
    score_mean: f64,
    reward_mean: f64,
    kl_per_sequence: f64,
    kl_weighted: f64,
    gap: f64,
    importance_weight_mean: f64,
    policy_loss: f64,
    value_loss: f64,
    entropy: f64,
    clip_fraction: f64,
    approx_kl: f64,
    explained_variance: f64,
    ptx_loss: f64,
    grad_norm_policy: f64,
    grad_norm_value: f64,
}

/// Log-probs [B, N, V] of the tempered policy at the response positions.
fn log_probs(policy: &Model, batch: &RolloutBatch, temperature: f64, train: bool) -> Tensor {
    (response_logits(policy, batch, train).to_kind(Kind::Float) / temperature)
        .log_softmax(-1, Kind::Float)
}

fn masked_mean_of(x: &Tensor, m: &Tensor) -> Tensor {
    (x * m).sum(Kind::Float) / m.sum(Kind::Float)
}

/// One update, written out. `ptx`: one batch per optimizer step, or none.
#[allow(clippy::too_many_arguments)]
fn reference_update(
    r: &mut Reference,
    c: &PpoConfig,
    temperature: f64,
    batch: &RolloutBatch,
    ptx: &[SftBatch],
    rng: &mut Rng,
    lr: f64,
    max_grad_norm: f64,
) -> Expected {
    let value_baseline = c.baseline == Baseline::Value;
    let b = batch.len() as usize;
    let n = batch.response_width() as usize;
    let mask = rows(&batch.response_mask);
    let len: Vec<usize> = mask
        .iter()
        .map(|m| m.iter().filter(|&&x| x == 1.0).count())
        .collect();
    let ids = batch.response_ids.unsqueeze(-1);
    let old = rows(&tch::no_grad(|| {
        log_probs(&r.policy, batch, temperature, false)
            .gather(2, &ids, false)
            .squeeze_dim(-1)
    }));
    let mu = rows(&batch.behaviour_logprobs);
    let reference = rows(batch.ref_logprobs.as_ref().unwrap());
    let values = if value_baseline {
        rows(&tch::no_grad(|| response_values(&r.value, batch, false)))
    } else {
        vec![vec![0.0; n]; b]
    };
    let mut e = Expected::default();

    // Scores: raw, no-EOS penalty, leave-one-out, normalisation.
    let raw: Vec<f64> = rows(&batch.scores.as_ref().unwrap().reshape([-1, 1]))
        .iter()
        .map(|r| r[0])
        .collect();
    let eos = Vec::<bool>::try_from(&batch.ended_with_eos).unwrap();
    e.score_mean = raw.iter().sum::<f64>() / b as f64;
    let penalized: Vec<f64> = (0..b)
        .map(|i| raw[i] + if eos[i] { 0.0 } else { c.no_eos_penalty })
        .collect();
    let k = c.samples_per_prompt;
    let mut scores: Vec<f64> = (0..b)
        .map(|i| {
            if k == 1 {
                return penalized[i];
            }
            let group = &penalized[i / k * k..i / k * k + k];
            let mean = group.iter().sum::<f64>() / k as f64;
            let std =
                (group.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt();
            match c.group_advantage {
                GroupAdvantage::LeaveOneOut => {
                    penalized[i] - (group.iter().sum::<f64>() - penalized[i]) / (k - 1) as f64
                }
                GroupAdvantage::Mean => penalized[i] - mean,
                GroupAdvantage::MeanStd => (penalized[i] - mean) / (std + 1e-4),
            }
        })
        .collect();
    if c.normalize_rewards {
        let mean = scores.iter().sum::<f64>() / b as f64;
        let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (b - 1) as f64;
        if var.sqrt() > 1e-6 {
            scores.iter_mut().for_each(|s| *s /= var.sqrt());
        }
    }

    // KL per token, shaped rewards, importance weights.
    let mut kl = vec![vec![0.0; n]; b];
    let mut rewards = vec![vec![0.0; n]; b];
    let mut w = vec![vec![0.0; n]; b];
    let tokens: usize = len.iter().sum();
    for i in 0..b {
        for t in 0..len[i] {
            kl[i][t] = match c.kl.estimator {
                KlEstimator::K1 => old[i][t] - reference[i][t],
                KlEstimator::K3 => {
                    let d = reference[i][t] - old[i][t];
                    d.exp() - 1.0 - d
                }
            };
            if c.kl.placement == KlPlacement::Reward {
                rewards[i][t] = -r.beta * kl[i][t];
            }
            w[i][t] = (old[i][t] - mu[i][t]).exp().min(c.max_importance_weight);
            e.gap += (old[i][t] - mu[i][t]).abs() / tokens as f64;
            e.importance_weight_mean += w[i][t] / tokens as f64;
            e.kl_per_sequence += kl[i][t] / b as f64;
            e.kl_weighted += w[i][t] * kl[i][t] / b as f64;
        }
        if len[i] > 0 {
            rewards[i][len[i] - 1] += scores[i];
        }
        e.reward_mean += rewards[i].iter().sum::<f64>() / b as f64;
    }

    // GAE (the group baseline: values 0, gamma = lambda = 1), returns, whitening.
    let (gamma, lam) = if value_baseline {
        (c.gamma, c.lam)
    } else {
        (1.0, 1.0)
    };
    let mut adv = vec![vec![0.0; n]; b];
    let mut returns = vec![vec![0.0; n]; b];
    for i in 0..b {
        let mut next = 0.0;
        for t in (0..len[i]).rev() {
            let next_value = if t + 1 < len[i] {
                values[i][t + 1]
            } else {
                0.0
            };
            next = rewards[i][t] + gamma * next_value - values[i][t] + gamma * lam * next;
            adv[i][t] = next;
            returns[i][t] = next + values[i][t];
        }
    }
    if c.whiten_advantages {
        let all: Vec<f64> = (0..b).flat_map(|i| adv[i][..len[i]].to_vec()).collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let var = all.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (all.len() - 1) as f64;
        for (row, &len) in adv.iter_mut().zip(&len) {
            for a in &mut row[..len] {
                *a = (*a - mean) / (var + 1e-8).sqrt();
            }
        }
    }

    // Epochs x minibatches of the clipped losses, one AdamW step each.
    let size = b.div_ceil(c.minibatches);
    let mut steps = 0;
    for _ in 0..c.ppo_epochs {
        for index in batches(b, size, Some(rng)) {
            let rows_index =
                Tensor::from_slice(&index.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let sub = batch.select(&rows_index);
            let m = &sub.response_mask;
            let lp = log_probs(&r.policy, &sub, temperature, true);
            let logp = lp
                .gather(2, &sub.response_ids.unsqueeze(-1), false)
                .squeeze_dim(-1)
                * m;
            let ratio = (&logp - pick(&old, &index)).exp();
            let a = pick(&adv, &index);
            let unclipped = -&a * &ratio;
            let high = c.clip_range_high.unwrap_or(c.clip_range);
            let clipped = -&a * ratio.clamp(1.0 - c.clip_range, 1.0 + high);
            // The aggregations written out: over tokens, over each row's tokens then rows,
            // or over rows x a constant.
            let reduce = |x: &Tensor| match c.loss_aggregation {
                LossAggregation::TokenMean => masked_mean_of(x, m),
                LossAggregation::SequenceMean => {
                    let per_row = (x * m).sum_dim_intlist(1, false, Kind::Float)
                        / m.sum_dim_intlist(1, false, Kind::Float);
                    per_row.mean(Kind::Float)
                }
                LossAggregation::Constant => {
                    (x * m).sum(Kind::Float)
                        / (index.len() * c.loss_constant_tokens.unwrap()) as f64
                }
            };
            let policy = reduce(&(unclipped.maximum(&clipped) * pick(&w, &index)));
            let entropy = masked_mean_of(
                &-(lp.exp() * &lp).sum_dim_intlist(-1, false, Kind::Float),
                m,
            );
            let d = (&logp - pick(&old, &index)).detach();
            e.approx_kl += masked_mean_of(&(d.exp() - 1.0 - &d), m).double_value(&[]);
            e.clip_fraction += masked_mean_of(&clipped.gt_tensor(&unclipped), m).double_value(&[]);
            e.policy_loss += policy.double_value(&[]);
            e.entropy += entropy.double_value(&[]);
            let mut loss = policy - c.entropy_coef * entropy;
            if c.kl.placement == KlPlacement::Loss {
                let d = pick(&reference, &index) - &logp;
                let kl = match c.kl.estimator {
                    KlEstimator::K1 => -d,
                    KlEstimator::K3 => d.exp() - 1.0 - &d,
                };
                loss += r.beta * reduce(&kl);
            }
            if value_baseline {
                let v = response_values(&r.value, &sub, true);
                let (v_old, ret) = (pick(&values, &index), pick(&returns, &index));
                let v_clip = &v_old + (&v - &v_old).clamp(-c.clip_range_value, c.clip_range_value);
                let value: Tensor = 0.5
                    * masked_mean_of(&(&v - &ret).square().maximum(&(v_clip - &ret).square()), m);
                let err = (&ret - v.detach()) * m;
                let var = |x: &Tensor| {
                    let mean = masked_mean_of(x, m);
                    ((x - mean) * m).square().sum(Kind::Float).double_value(&[])
                };
                e.explained_variance += 1.0 - var(&err) / var(&(&ret * m));
                e.value_loss += value.double_value(&[]);
                loss += c.vf_coef * value;
            }
            if let Some(p) = ptx.get(steps) {
                let logits =
                    r.policy
                        .logits(&r.policy.forward(&p.input_ids, Some(&p.valid), None, true));
                let token = logits
                    .log_softmax(-1, Kind::Float)
                    .gather(2, &p.targets.unsqueeze(-1), false)
                    .squeeze_dim(-1);
                let nll = -(token * &p.loss_mask).sum(Kind::Float) / p.loss_mask.sum(Kind::Float);
                e.ptx_loss += nll.double_value(&[]);
                loss += c.ptx_coef * nll;
            }
            r.policy_opt.zero_grad();
            r.value_opt.zero_grad();
            loss.backward();
            e.grad_norm_policy += r.policy_opt.clip_grad_norm(max_grad_norm);
            r.policy_opt.step(lr);
            if value_baseline {
                e.grad_norm_value += r.value_opt.clip_grad_norm(max_grad_norm);
                r.value_opt.step(lr);
            }
            steps += 1;
        }
    }
    for x in [
        &mut e.policy_loss,
        &mut e.value_loss,
        &mut e.entropy,
        &mut e.clip_fraction,
        &mut e.approx_kl,
        &mut e.explained_variance,
        &mut e.ptx_loss,
        &mut e.grad_norm_policy,
        &mut e.grad_norm_value,
    ] {
        *x /= steps as f64;
    }

    // The controller, on the importance-weighted KL.
    if c.kl.adaptive {
        let error = (e.kl_weighted / c.kl.target - 1.0).clamp(-0.2, 0.2);
        r.beta *= 1.0 + error * b as f64 / c.kl.horizon as f64;
    }
    e
}

/// Pretraining batches of random text, `count` of them, each different.
pub(super) fn ptx_batches(rng: &mut Rng, count: usize) -> Vec<SftBatch> {
    let seqs: Vec<crate::data::SftSequence> = (0..16)
        .map(|_| {
            let ids = (0..3 + rng.below(6))
                .map(|_| 1 + rng.below(EOS as usize - 1) as i64)
                .collect();
            crate::data::SftSequence::new(ids, 0)
        })
        .collect();
    (0..count)
        .map(|_| crate::data::sample_batch(&seqs, 3, 0, rng).0)
        .collect()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: update {got}, reference {want}"
    );
}

/// The update's figures, KL coefficient and weights against the reference's, in one case.
fn check_case(name: &str, c: PpoConfig, stale: bool, with_ptx: bool) {
    let optimizer = OptimizerConfig {
        lr: 1e-2,
        max_grad_norm: 1.0,
        ..OptimizerConfig::default()
    };
    let lr = optimizer.lr;
    let mut learner = learner_with(&c, &optimizer);
    let reference_model = frozen_copy(&learner);
    let mut rng = Rng::new(31);
    let rows = 4 * c.samples_per_prompt;
    let mut batch = rollout(&learner, &reference_model, &mut rng, rows, 5);
    // Varied scores, so the baselines, normalisation and clipping all have work to do.
    let noise: Vec<f32> = (0..rows)
        .map(|_| rng.uniform() as f32 * 4.0 - 2.0)
        .collect();
    batch.scores = Some(batch.scores.take().unwrap() + Tensor::from_slice(&noise));
    if stale {
        // A first update moves the learner on: the batch is then one version behind.
        let other = rollout(&learner, &reference_model, &mut rng, rows, 5);
        learner.update(&other, &[], &mut rng, lr).unwrap();
    } else {
        // The generator's log-probs a little off the learner's (a mismatch to measure).
        batch.behaviour_logprobs = (&batch.behaviour_logprobs - 0.01) * &batch.response_mask;
    }
    let steps = c.optimizer_steps(rows);
    let ptx = if with_ptx {
        ptx_batches(&mut rng, steps)
    } else {
        vec![]
    };
    let mut r = Reference::copy_of(&learner, &optimizer);
    let copy = |m: &Model| -> BTreeMap<String, Tensor> {
        m.var_store()
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().copy()))
            .collect()
    };
    let initial = (copy(&r.policy), copy(&r.value));
    let seed = rng.state();
    let stats = learner
        .update(&batch, &ptx, &mut Rng::new(seed), lr)
        .unwrap();
    let e = reference_update(
        &mut r,
        &c,
        learner.sampling().temperature,
        &batch,
        &ptx,
        &mut Rng::new(seed),
        lr,
        optimizer.max_grad_norm,
    );

    // Figures read back from f32 tensors: the update and the reference sum in different
    // orders, ~1e-7 relative per operation; 1e-5 leaves room for a few hundred of them and
    // is far below any mistake in a term (a missing weight or a wrong baseline is > 1e-2).
    let tol = 1e-5;
    let label = |what: &str| format!("{name}: {what}");
    close(&label("score_mean"), stats.score_mean, e.score_mean, tol);
    close(&label("reward_mean"), stats.reward_mean, e.reward_mean, tol);
    close(
        &label("kl_per_sequence"),
        stats.kl_per_sequence,
        e.kl_per_sequence,
        tol,
    );
    close(
        &label("kl_weighted"),
        stats.kl_per_sequence_weighted,
        e.kl_weighted,
        tol,
    );
    close(
        &label("importance_weight_mean"),
        stats.importance_weight_mean,
        e.importance_weight_mean,
        tol,
    );
    let (gap, drift) = (stats.logprob_gap, stats.policy_drift);
    match stale {
        true => assert!(gap.is_none(), "{name}: a stale batch has no gap"),
        false => assert!(drift.is_none(), "{name}: a fresh batch has no drift"),
    }
    close(&label("gap or drift"), gap.or(drift).unwrap(), e.gap, tol);
    close(&label("policy_loss"), stats.policy_loss, e.policy_loss, tol);
    close(&label("value_loss"), stats.value_loss, e.value_loss, tol);
    close(&label("entropy"), stats.entropy, e.entropy, tol);
    close(
        &label("clip_fraction"),
        stats.clip_fraction,
        e.clip_fraction,
        tol,
    );
    close(&label("approx_kl"), stats.approx_kl, e.approx_kl, tol);
    close(
        &label("explained_variance"),
        stats.explained_variance,
        e.explained_variance,
        1e-4, // a ratio of two variances: each ~1e-5, their quotient ~2e-5
    );
    close(
        &label("grad_norm_policy"),
        stats.grad_norm_policy,
        e.grad_norm_policy,
        tol,
    );
    close(
        &label("grad_norm_value"),
        stats.grad_norm_value,
        e.grad_norm_value,
        tol,
    );
    assert_eq!(stats.ptx_loss.is_some(), with_ptx, "{name}");
    close(
        &label("ptx_loss"),
        stats.ptx_loss.unwrap_or(0.0),
        e.ptx_loss,
        tol,
    );
    close(
        &label("kl_coef"),
        learner.kl_controller().value,
        r.beta,
        1e-12,
    );

    // The weights: Adam divides each gradient by its running scale, so where a gradient is
    // near eps (1e-8) f32 noise in it can change that weight's step by a fair part of lr
    // (1e-2); elsewhere the noise stays ~1e-6 of a step. So: every weight within a tenth of
    // lr, and on average within 1e-4 of how far the weights moved. A wrong term (a missing
    // importance weight, another ptx batch, a wrong baseline) moves most weights by ~lr.
    let compare = |what: &str, a: &Model, b: &Model, initial: &BTreeMap<String, Tensor>| {
        let vars = b.var_store().variables();
        let (mut worst, mut diff, mut moved) = (0.0f64, 0.0, 0.0);
        for (n, t) in a.var_store().variables() {
            let d = (&t - &vars[&n]).abs();
            worst = worst.max(d.max().double_value(&[]));
            diff += d.sum(Kind::Double).double_value(&[]);
            moved += (&t - &initial[&n])
                .abs()
                .sum(Kind::Double)
                .double_value(&[]);
        }
        assert!(
            worst < 0.1 * lr,
            "{name}: {what} weights differ by up to {worst}"
        );
        assert!(
            diff <= 1e-4 * moved,
            "{name}: {what}: differences {diff}, moves {moved}"
        );
    };
    compare("policy", learner.policy(), &r.policy, &initial.0);
    // A value model exactly with a value baseline: a group baseline holds none.
    assert_eq!(learner.value().is_some(), c.uses_value_model(), "{name}");
    if let Some(value) = learner.value() {
        compare("value", value, &r.value, &initial.1);
    }
}

fn config(baseline: Baseline, samples_per_prompt: usize, ptx_coef: f64) -> PpoConfig {
    PpoConfig {
        kl: KlConfig {
            coef: 0.05,
            adaptive: true,
            target: 1.0,
            horizon: 100,
            estimator: KlEstimator::K3,
            placement: KlPlacement::Reward,
        },
        baseline,
        samples_per_prompt,
        ptx_coef,
        ppo_epochs: 2,
        minibatches: 3,
        entropy_coef: 0.01,
        no_eos_penalty: -0.5,
        normalize_rewards: true,
        whiten_advantages: true,
        max_importance_weight: 1.02,
        ..PpoConfig::default()
    }
}

/// Fresh and stale, value and group baselines, with and without ptx: each pair of them
/// appears in some case.
#[test]
fn update_matches_the_straight_line_reference() {
    for (name, baseline, samples, ptx_coef, stale) in [
        ("fresh, value", Baseline::Value, 1, 0.0, false),
        ("stale, value, ptx", Baseline::Value, 1, 0.5, true),
        ("fresh, group, ptx", Baseline::Group, 2, 0.5, false),
        ("stale, group", Baseline::Group, 2, 0.0, true),
    ] {
        let c = config(baseline, samples, ptx_coef);
        check_case(name, c, stale, ptx_coef > 0.0);
    }
}

/// The GRPO family: GRPO's and Dr. GRPO's group advantages, the KL as a loss term, the
/// three loss aggregations and DAPO's clip-higher, against the same reference.
#[test]
fn grpo_family_options_match_the_straight_line_reference() {
    for (name, advantage, aggregation, placement, high) in [
        (
            "grpo",
            GroupAdvantage::MeanStd,
            LossAggregation::SequenceMean,
            KlPlacement::Loss,
            None,
        ),
        (
            "dr. grpo",
            GroupAdvantage::Mean,
            LossAggregation::Constant,
            KlPlacement::Loss,
            Some(0.28),
        ),
        (
            "dapo-like",
            GroupAdvantage::MeanStd,
            LossAggregation::TokenMean,
            KlPlacement::Reward,
            Some(0.28),
        ),
    ] {
        let mut c = config(Baseline::Group, 2, 0.0);
        c.group_advantage = advantage;
        c.loss_aggregation = aggregation;
        c.loss_constant_tokens = (aggregation == LossAggregation::Constant).then_some(6);
        c.kl.placement = placement;
        c.kl.coef = 0.2;
        c.clip_range_high = high;
        c.normalize_rewards = false;
        assert_eq!(c.validate(), Ok(()));
        check_case(name, c, true, false);
    }
}

/// PPO-ptx: each optimizer step's policy gradient is `ptx_coef` times the NLL gradient of
/// its own pretraining batch. With zero advantages (scores 0, no KL penalty, group
/// baseline, no whitening, no entropy bonus) the PPO terms contribute nothing, and with
/// lr 0 every step sees the initial weights; after the update the policy's gradients are
/// those of the last step.
#[test]
fn each_ptx_step_trains_on_its_own_batch() {
    let c = PpoConfig {
        kl: KlConfig {
            coef: 0.0,
            ..KlConfig::default()
        },
        baseline: Baseline::Group,
        whiten_advantages: false,
        normalize_rewards: false,
        ptx_coef: 0.7,
        ppo_epochs: 2,
        minibatches: 2,
        ..PpoConfig::default()
    };
    // No clipping: the gradients left in the policy are the step's own.
    let optimizer = OptimizerConfig {
        lr: 0.0,
        max_grad_norm: 1e9,
        ..OptimizerConfig::default()
    };
    let mut learner = learner_with(&c, &optimizer);
    let reference = frozen_copy(&learner);
    let mut rng = Rng::new(3);
    let mut batch = rollout(&learner, &reference, &mut rng, 4, 4);
    batch.scores = Some(Tensor::zeros([4], (Kind::Float, Device::Cpu)));
    let steps = c.optimizer_steps(4);
    assert_eq!(steps, 4);
    let ptx = ptx_batches(&mut rng, steps);
    // One batch short (the old API's single batch) is an error naming the counts.
    let err = learner
        .update(&batch, &ptx[..1], &mut rng, 0.0)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("1 pretraining batches for 4 optimizer steps"),
        "{err}"
    );
    let stats = learner.update(&batch, &ptx, &mut rng, 0.0).unwrap();

    let nll = |p: &SftBatch| {
        let mut model = frozen_copy(&learner);
        model.set_dropout(0.0);
        let logits = model.logits(&model.forward(&p.input_ids, Some(&p.valid), None, true));
        let (loss, stats) = crate::losses::sft_loss(&logits, &p.targets, &p.loss_mask);
        (model, loss, stats.loss)
    };
    let mean: f64 = ptx.iter().map(|p| nll(p).2).sum::<f64>() / steps as f64;
    close("ptx loss", stats.ptx_loss.unwrap(), mean, 1e-5);
    let grads = |model: &Model| -> Vec<(String, Tensor)> {
        let mut g: Vec<(String, Tensor)> = model
            .var_store()
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.grad().copy()))
            .collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g
    };
    let learned = grads(learner.policy());
    let distance = |p: &SftBatch| {
        let (model, loss, _) = nll(p);
        (c.ptx_coef * loss).backward();
        grads(&model)
            .iter()
            .zip(&learned)
            .map(|((_, a), (_, b))| (a - b).abs().max().double_value(&[]))
            .fold(0.0, f64::max)
    };
    // Gradients of ~1e-1 summed in different orders: 1e-6 is f32 noise; another batch's
    // gradient differs by ~1e-2.
    let last = distance(&ptx[steps - 1]);
    assert!(
        last < 1e-6,
        "the last step's gradient is off its batch's by {last}"
    );
    for (i, p) in ptx[..steps - 1].iter().enumerate() {
        let other = distance(p);
        assert!(
            other > 1e-3,
            "step {} used the last step's batch ({other})",
            i + 1
        );
    }
}
