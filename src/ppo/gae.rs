//! Masked statistics, advantage whitening and generalised advantage estimation (GAE,
//! Schulman et al. 2016). Masks are [B, T], 1 (or true) for real response tokens; positions
//! outside the mask are never read, so padding may hold anything, NaN included.

use tch::{Kind, Tensor};

/// The mask as f32 0/1 and its complement as bool.
fn split(mask: &Tensor) -> (Tensor, Tensor) {
    let inside = mask.to_kind(Kind::Bool);
    (inside.to_kind(Kind::Float), inside.logical_not())
}

/// `x` in f32 with 0 outside the mask.
fn zeroed(x: &Tensor, outside: &Tensor) -> Tensor {
    x.to_kind(Kind::Float).masked_fill(outside, 0.0)
}

/// Mean of `x` over the masked entries, a scalar f32 tensor that carries the graph; 0 when
/// the mask is empty (TRL divides by zero there).
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    assert_eq!(x.size(), mask.size(), "masked_mean: x vs mask");
    let (inside, outside) = split(mask);
    zeroed(x, &outside).sum(Kind::Float) / inside.sum(Kind::Float).clamp_min(1.0)
}

/// Unbiased variance of `x` over the masked entries (TRL's `masked_var` with Bessel's
/// correction n / (n - 1)); 0 with fewer than two entries, where TRL gives NaN or raises.
pub fn masked_var(x: &Tensor, mask: &Tensor) -> Tensor {
    let (inside, outside) = split(mask);
    let centered = zeroed(x, &outside) - masked_mean(x, mask);
    let n = inside.sum(Kind::Float);
    let bessel = &n / (&n - 1.0).clamp_min(1.0);
    masked_mean(&centered.square(), mask) * bessel
}

/// TRL's `masked_whiten`: `(x - mean) / sqrt(var + 1e-8)` with the masked mean and
/// unbiased variance; with `shift_mean = false` the mean is added back (only the scale
/// changes). Unlike TRL, positions outside the mask are 0 in the result. f32.
pub fn masked_whiten(x: &Tensor, mask: &Tensor, shift_mean: bool) -> Tensor {
    let (_, outside) = split(mask);
    let mean = masked_mean(x, mask);
    let var = masked_var(x, mask);
    let mut whitened = (zeroed(x, &outside) - &mean) * (var + 1e-8).rsqrt();
    if !shift_mean {
        whitened += mean;
    }
    whitened.masked_fill(&outside, 0.0)
}

/// GAE over a batch: rewards, values, mask [B, T]. Returns (advantages, returns), f32
/// [B, T], detached, 0 outside the mask; `returns = advantages + values`.
///
/// `delta_t = r_t + gamma * V_{t+1} - V_t`, `A_t = delta_t + gamma * lam * A_{t+1}`, where
/// V and A beyond a row's last real token count as 0 (the episode ends there). One reverse
/// loop over T, vectorised over the batch. A row's real tokens are expected to be
/// contiguous; a masked position inside a row acts as an episode end.
pub fn gae(
    rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
    gamma: f64,
    lam: f64,
) -> (Tensor, Tensor) {
    assert_eq!(rewards.dim(), 2, "gae: rewards must be [B, T]");
    assert_eq!(rewards.size(), values.size(), "gae: rewards vs values");
    assert_eq!(rewards.size(), mask.size(), "gae: rewards vs mask");
    tch::no_grad(|| {
        let (inside, outside) = split(mask);
        let r = zeroed(&rewards.detach(), &outside);
        let v = zeroed(&values.detach(), &outside);
        let steps = r.size()[1];
        let mut last = r.select(1, 0).zeros_like();
        let mut next_value = last.zeros_like();
        let mut columns = Vec::with_capacity(steps as usize);
        for t in (0..steps).rev() {
            let v_t = v.select(1, t);
            let delta = r.select(1, t) + gamma * &next_value - &v_t;
            last = (delta + gamma * lam * &last) * inside.select(1, t);
            columns.push(last.shallow_clone());
            next_value = v_t;
        }
        columns.reverse();
        let advantages = if columns.is_empty() {
            r.zeros_like()
        } else {
            Tensor::stack(&columns, 1)
        };
        let returns = &advantages + v;
        (advantages, returns)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppo::testutil::{close, ragged_mask, random, t, values};
    use crate::rng::Rng;

    /// Per row, per token, in f64: the textbook backwards loop.
    fn naive_gae(r: &[f64], v: &[f64], lens: &[usize], width: usize, g: f64, l: f64) -> Vec<f64> {
        let mut adv = vec![0.0; r.len()];
        for (row, &len) in lens.iter().enumerate() {
            let at = |i: usize| row * width + i;
            let mut next_adv = 0.0;
            for i in (0..len).rev() {
                let next_v = if i + 1 < len { v[at(i + 1)] } else { 0.0 };
                let delta = r[at(i)] + g * next_v - v[at(i)];
                next_adv = delta + g * l * next_adv;
                adv[at(i)] = next_adv;
            }
        }
        adv
    }

    #[test]
    fn gae_equals_a_naive_loop_on_random_ragged_batches() {
        let mut rng = Rng::new(7);
        for (gamma, lam) in [(1.0, 0.95), (0.99, 1.0), (0.9, 0.0), (1.0, 1.0)] {
            let (b, w) = (6, 9);
            let lens = [9, 0, 1, 4, 8, 2];
            let mut r = random(&mut rng, b * w);
            let mut v = random(&mut rng, b * w);
            // Padding is never read: row 1 is empty, row 3 has 4 real tokens.
            r[w + 1] = f64::NAN;
            v[3 * w + 6] = f64::NAN;
            let mask = ragged_mask(&lens, w);
            let shape = [b as i64, w as i64];
            let (adv, ret) = gae(&t(&r, &shape), &t(&v, &shape), &mask, gamma, lam);
            let want = naive_gae(&r, &v, &lens, w, gamma, lam);
            close(&values(&adv), &want, 1e-5);
            let in_mask = values(&mask);
            let want_ret: Vec<f64> = (0..b * w)
                .map(|i| {
                    if in_mask[i] > 0.0 {
                        want[i] + v[i]
                    } else {
                        0.0
                    }
                })
                .collect();
            close(&values(&ret), &want_ret, 1e-5);
        }
    }

    #[test]
    fn gae_by_hand_on_one_row() {
        // gamma = lam = 1: A_t = sum of rewards from t - V_t; the last column is padding.
        let r = t(&[0.0, 0.0, 2.0, 9.0], &[1, 4]);
        let v = t(&[0.5, 1.0, 1.5, 9.0], &[1, 4]);
        let mask = t(&[1.0, 1.0, 1.0, 0.0], &[1, 4]);
        let (adv, ret) = gae(&r, &v, &mask, 1.0, 1.0);
        close(&values(&adv), &[1.5, 1.0, 0.5, 0.0], 1e-6);
        close(&values(&ret), &[2.0, 2.0, 2.0, 0.0], 1e-6);
        // gamma = 0.5, lam = 0: one-step TD errors.
        let (adv, _) = gae(&r, &v, &mask, 0.5, 0.0);
        close(&values(&adv), &[0.0, -0.25, 0.5, 0.0], 1e-6);
    }

    #[test]
    fn masked_mean_and_var_ignore_masked_positions() {
        let x = t(&[1.0, 2.0, 3.0, f64::NAN, 4.0, 100.0], &[2, 3]);
        let mask = t(&[1.0, 1.0, 1.0, 0.0, 1.0, 0.0], &[2, 3]);
        assert!((masked_mean(&x, &mask).double_value(&[]) - 2.5).abs() < 1e-6);
        // Unbiased: sum of squared deviations 5 over n - 1 = 3.
        assert!((masked_var(&x, &mask).double_value(&[]) - 5.0 / 3.0).abs() < 1e-6);
        let none = mask.zeros_like();
        assert_eq!(masked_mean(&x, &none).double_value(&[]), 0.0);
        assert_eq!(masked_var(&x, &none).double_value(&[]), 0.0);
        let one = t(&[0.0, 1.0, 0.0, 0.0, 0.0, 0.0], &[2, 3]);
        assert_eq!(masked_var(&x, &one).double_value(&[]), 0.0);
    }

    #[test]
    fn whitening_uses_masked_entries_only() {
        let raw = [1.0, 2.0, 3.0, f64::NAN, 4.0, 100.0];
        let x = t(&raw, &[2, 3]);
        let mask = t(&[1.0, 1.0, 1.0, 0.0, 1.0, 0.0], &[2, 3]);
        let (mean, var) = (2.5, 5.0 / 3.0);
        let s = (var + 1e-8f64).sqrt();
        let want: Vec<f64> = [0, 1, 2, 3, 4, 5]
            .iter()
            .map(|&i| {
                if [3, 5].contains(&i) {
                    0.0
                } else {
                    (raw[i] - mean) / s
                }
            })
            .collect();
        close(&values(&masked_whiten(&x, &mask, true)), &want, 1e-6);
        let kept: Vec<f64> = want
            .iter()
            .enumerate()
            .map(|(i, w)| if [3, 5].contains(&i) { 0.0 } else { w + mean })
            .collect();
        close(&values(&masked_whiten(&x, &mask, false)), &kept, 1e-6);
        // Whitened entries have masked mean 0 and unbiased variance ~1.
        let w = masked_whiten(&x, &mask, true);
        assert!(masked_mean(&w, &mask).double_value(&[]).abs() < 1e-6);
        assert!((masked_var(&w, &mask).double_value(&[]) - 1.0).abs() < 1e-5);
    }
}
