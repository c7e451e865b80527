//! Hand-computed checks of the PPO losses in [`super::loss`].

use super::loss::*;
use super::testutil::{close, t, values};
use tch::{Kind, Tensor};

/// One row of three real tokens and one masked column holding garbage.
fn mask() -> Tensor {
    t(&[1.0, 1.0, 1.0, 0.0], &[1, 4])
}

/// Ratios 1.5, 0.5, 1.1 (and 50 on the masked column), advantages 1, 1, -2.
fn surrogate_case() -> (Tensor, Tensor, Tensor) {
    let old = t(&[-1.0, -2.0, -0.5, -3.0], &[1, 4]);
    let log_ratio = [1.5f64.ln(), 0.5f64.ln(), 1.1f64.ln(), 50f64.ln()];
    let new: Vec<f64> = values(&old)
        .iter()
        .zip(log_ratio)
        .map(|(o, r)| o + r)
        .collect();
    let new = t(&new, &[1, 4]).set_requires_grad(true);
    (new, old, t(&[1.0, 1.0, -2.0, 7.0], &[1, 4]))
}

#[test]
fn clipped_surrogate_matches_a_hand_computation() {
    let (new, old, adv) = surrogate_case();
    let (loss, stats) = policy_loss(
        &new,
        &old,
        &adv,
        &mask(),
        (0.2, 0.2),
        None,
        Reduce::TokenMean,
    );
    // Per token max(-A r, -A clip(r)): max(-1.5, -1.2) = -1.2 (clipped),
    // max(-0.5, -0.8) = -0.5, max(2.2, 2.2) = 2.2 (a tie is not clipping).
    let want = (-1.2 - 0.5 + 2.2) / 3.0;
    assert!((loss.double_value(&[]) - want).abs() < 1e-6);
    assert!((stats.loss - want).abs() < 1e-6);
    assert!((stats.clip_fraction - 1.0 / 3.0).abs() < 1e-6);
    assert!((stats.ratio_mean - 3.1 / 3.0).abs() < 1e-6);
    let k3 = |r: f64| r - 1.0 - r.ln();
    let kl = (k3(1.5) + k3(0.5) + k3(1.1)) / 3.0;
    assert!((stats.approx_kl - kl).abs() < 1e-6, "{}", stats.approx_kl);
    loss.backward();
    // d/dlogp of -A r is -A r; the clipped token and the masked column get nothing.
    close(
        &values(&new.grad()),
        &[0.0, -0.5 / 3.0, 2.2 / 3.0, 0.0],
        1e-6,
    );
}

#[test]
fn importance_weights_scale_each_tokens_surrogate() {
    let (new, old, adv) = surrogate_case();
    let per_token = t(&[0.5, 2.0, 1.0, 9.0], &[1, 4]);
    let (_, stats) = policy_loss(
        &new,
        &old,
        &adv,
        &mask(),
        (0.2, 0.2),
        Some(&per_token),
        Reduce::TokenMean,
    );
    assert!((stats.loss - (-0.6 - 1.0 + 2.2) / 3.0).abs() < 1e-6);
    let per_row = t(&[2.0], &[1]);
    let (_, stats) = policy_loss(
        &new,
        &old,
        &adv,
        &mask(),
        (0.2, 0.2),
        Some(&per_row),
        Reduce::TokenMean,
    );
    assert!((stats.loss - 2.0 * 0.5 / 3.0).abs() < 1e-6);
}

#[test]
fn identical_policies_give_unit_ratio_and_zero_kl() {
    let logp = t(&[-1.0, -2.0, -0.5, 0.0], &[2, 2]);
    let adv = t(&[1.0, -1.0, 0.5, 2.0], &[2, 2]);
    let m = t(&[1.0; 4], &[2, 2]);
    let (_, stats) = policy_loss(&logp, &logp, &adv, &m, (0.2, 0.2), None, Reduce::TokenMean);
    assert!((stats.loss - -(1.0 - 1.0 + 0.5 + 2.0) / 4.0).abs() < 1e-6);
    assert_eq!(stats.clip_fraction, 0.0);
    assert!(stats.approx_kl.abs() < 1e-7);
    assert!((stats.ratio_mean - 1.0).abs() < 1e-7);
}

#[test]
fn clipped_value_loss_matches_a_hand_computation() {
    let new = t(&[0.5, 0.5, 0.7, 30.0], &[1, 4]).set_requires_grad(true);
    let old = t(&[0.0, 0.0, 1.0, 0.0], &[1, 4]);
    let ret = t(&[1.0, -1.0, 0.5, -30.0], &[1, 4]);
    let (loss, stats) = value_loss(&new, &old, &ret, &mask(), 0.2);
    // v_clip = 0.2, 0.2, 0.8: max(0.25, 0.64), max(2.25, 1.44), max(0.04, 0.09).
    let want = 0.5 * (0.64 + 2.25 + 0.09) / 3.0;
    assert!((loss.double_value(&[]) - want).abs() < 1e-6);
    assert!((stats.loss - want).abs() < 1e-6);
    assert!((stats.clip_fraction - 2.0 / 3.0).abs() < 1e-6);
    let var = |x: &[f64]| {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64
    };
    let ev = 1.0 - var(&[0.5, -1.5, -0.2]) / var(&[1.0, -1.0, 0.5]);
    assert!((stats.explained_variance - ev).abs() < 1e-6);
    loss.backward();
    // Clipped terms move only v_clip, whose clamp is saturated: no gradient there.
    close(&values(&new.grad()), &[0.0, 1.5 / 3.0, 0.0, 0.0], 1e-6);
}

#[test]
fn explained_variance_is_zero_for_constant_returns() {
    let v = t(&[1.0, 2.0], &[1, 2]);
    let ret = t(&[3.0, 3.0], &[1, 2]);
    let (_, stats) = value_loss(&v, &v, &ret, &t(&[1.0, 1.0], &[1, 2]), 0.2);
    assert_eq!(stats.explained_variance, 0.0);
}

#[test]
fn entropy_matches_hand_values_over_masked_positions() {
    let third = 3f64.ln();
    #[rustfmt::skip]
    let logits = t(&[
        0.0, 0.0, 0.0, 0.0,           // uniform: ln 4
        0.0, third, -1e4, -1e4,       // 1/4, 3/4
        100.0, 0.0, 0.0, 0.0,         // masked
    ], &[1, 3, 4]);
    let m = t(&[1.0, 1.0, 0.0], &[1, 3]);
    let h2 = -(0.25 * 0.25f64.ln() + 0.75 * 0.75f64.ln());
    let want = (4f64.ln() + h2) / 2.0;
    let got = entropy_from_logits(&logits, &m).double_value(&[]);
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    let bf16 = entropy_from_logits(&logits.to_kind(Kind::BFloat16), &m);
    assert_eq!(bf16.kind(), Kind::Float);
    assert!((bf16.double_value(&[]) - want).abs() < 2e-2);
}

#[test]
fn importance_weights_are_truncated_ratios() {
    let learner = t(&[-1.0, -1.0, -1.0, 5.0], &[1, 4]);
    let behaviour = t(&[-1.0, -1.5, 0.0, -5.0], &[1, 4]);
    let w = truncated_importance_weights(&learner, &behaviour, &mask(), 1.5);
    close(&values(&w), &[1.0, 1.5, (-1f64).exp(), 0.0], 1e-6);
    assert!(!w.requires_grad());
}

#[test]
fn logprob_gap_is_the_masked_mean_absolute_difference() {
    let a = t(&[-1.0, -2.0, -3.0, 100.0], &[1, 4]);
    let b = t(&[-1.5, -2.0, -2.0, 0.0], &[1, 4]);
    assert!((logprob_gap(&a, &b, &mask()) - 0.5).abs() < 1e-6);
    assert_eq!(logprob_gap(&a, &a, &mask()), 0.0);
}

#[test]
fn aggregations_reduce_over_tokens_rows_or_a_constant() {
    // Rows of 2 and 1 real tokens: 1, 2 and 3; garbage under the mask.
    let x = t(&[1.0, 2.0, 9.0, 3.0, 9.0, 9.0], &[2, 3]);
    let m = t(&[1.0, 1.0, 0.0, 1.0, 0.0, 0.0], &[2, 3]);
    close(&values(&aggregate(&x, &m, Reduce::TokenMean)), &[2.0], 1e-6);
    // ((1 + 2) / 2 + 3 / 1) / 2
    close(
        &values(&aggregate(&x, &m, Reduce::SequenceMean)),
        &[2.25],
        1e-6,
    );
    // (1 + 2 + 3) / (2 rows x 4 tokens)
    close(
        &values(&aggregate(&x, &m, Reduce::Constant(4.0))),
        &[0.75],
        1e-6,
    );
    // A row without tokens does not count as a sequence.
    let empty_row = t(&[1.0, 2.0, 0.0, 0.0], &[2, 2]);
    let x = t(&[1.0, 2.0, 5.0, 5.0], &[2, 2]);
    close(
        &values(&aggregate(&x, &empty_row, Reduce::SequenceMean)),
        &[1.5],
        1e-6,
    );
}

#[test]
fn clip_higher_lets_the_ratio_rise_further_than_it_falls() {
    // Ratios 1.3 (advantage +1) and 0.7 (advantage -1): both past a 0.2 clip.
    let old = t(&[-1.0, -1.0], &[1, 2]);
    let new = t(&[-1.0 + 1.3f64.ln(), -1.0 + 0.7f64.ln()], &[1, 2]);
    let adv = t(&[1.0, -1.0], &[1, 2]);
    let m = t(&[1.0, 1.0], &[1, 2]);
    let loss =
        |clip| values(&policy_loss(&new, &old, &adv, &m, clip, None, Reduce::TokenMean).0)[0];
    // Symmetric: max(-1.3, -1.2) = -1.2 and max(0.7, 0.8) = 0.8.
    close(&[loss((0.2, 0.2))], &[(-1.2 + 0.8) / 2.0], 1e-6);
    // Clip-higher 0.28: the first term is -1.28, the lower clip is unchanged.
    close(&[loss((0.2, 0.28))], &[(-1.28 + 0.8) / 2.0], 1e-6);
}
