//! The per-token KL estimate between the policy and the reference (SFT) policy, and the
//! controller of its coefficient beta.

use super::config::KlConfig;
pub use super::config::KlEstimator;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The per-token KL estimate, f32 [B, T], 0 at masked positions (whatever their inputs).
/// `logp`, `ref_logp`: log-probs of the sampled tokens under the policy and the reference,
/// [B, T] any float dtype; `mask`: [B, T], 1 (or true) for real response tokens. Carries
/// the graph of its inputs; detach them to use it as a reward.
pub fn kl_per_token(
    logp: &Tensor,
    ref_logp: &Tensor,
    mask: &Tensor,
    estimator: KlEstimator,
) -> Tensor {
    assert_eq!(
        logp.size(),
        ref_logp.size(),
        "kl_per_token: logp vs ref_logp"
    );
    assert_eq!(logp.size(), mask.size(), "kl_per_token: logp vs mask");
    let d = ref_logp.to_kind(Kind::Float) - logp.to_kind(Kind::Float);
    let kl = match estimator {
        KlEstimator::K1 => -d,
        KlEstimator::K3 => d.exp() - 1.0 - &d,
    };
    let outside = mask.to_kind(Kind::Bool).logical_not();
    kl.masked_fill(&outside, 0.0)
}

/// The KL coefficient beta: fixed, or adapted towards a target KL per sequence with the
/// proportional controller of Ziegler et al. 2019. Serializable so a resumed run continues
/// with the same beta.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveKlController {
    /// The current coefficient beta.
    pub value: f64,
    /// Target KL per sequence (nats).
    pub target: f64,
    /// Horizon in sequences.
    pub horizon: u64,
    /// When false, [`AdaptiveKlController::update`] keeps `value`.
    pub adaptive: bool,
}

impl AdaptiveKlController {
    /// Starts at `config.coef`.
    pub fn new(config: &KlConfig) -> Self {
        AdaptiveKlController {
            value: config.coef,
            target: config.target,
            horizon: config.horizon,
            adaptive: config.adaptive,
        }
    }

    /// After a batch of `n_sequences` whose mean KL per sequence was
    /// `current_kl_per_sequence`: `error = clip(current / target - 1, -0.2, 0.2)`,
    /// `value *= 1 + error * n / horizon`. Does nothing when fixed or when the KL is NaN.
    pub fn update(&mut self, current_kl_per_sequence: f64, n_sequences: u64) {
        if !self.adaptive || current_kl_per_sequence.is_nan() {
            return;
        }
        let error = (current_kl_per_sequence / self.target - 1.0).clamp(-0.2, 0.2);
        self.value *= 1.0 + error * n_sequences as f64 / self.horizon as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).to_kind(Kind::Float).reshape(shape)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).unwrap()
    }

    #[test]
    fn k1_and_k3_match_hand_values_and_respect_the_mask() {
        let logp = t(&[-1.0, -2.0, -0.5, 7.0], &[2, 2]);
        let ref_logp = t(&[-1.5, -1.0, -0.5, f64::NAN], &[2, 2]);
        let mask = t(&[1.0, 1.0, 1.0, 0.0], &[2, 2]);
        let k1 = values(&kl_per_token(&logp, &ref_logp, &mask, KlEstimator::K1));
        let want1 = [0.5, -1.0, 0.0, 0.0];
        let k3 = values(&kl_per_token(&logp, &ref_logp, &mask, KlEstimator::K3));
        // d = ref - logp = -0.5, 1, 0: exp(d) - 1 - d.
        let want3 = [(-0.5f64).exp() - 1.0 + 0.5, 1f64.exp() - 2.0, 0.0, 0.0];
        for i in 0..4 {
            assert!((k1[i] - want1[i]).abs() < 1e-6, "{k1:?}");
            assert!((k3[i] - want3[i]).abs() < 1e-6, "{k3:?}");
            assert!(k3[i] >= 0.0);
        }
        let bool_mask = mask.to_kind(Kind::Bool);
        let k1b = values(&kl_per_token(&logp, &ref_logp, &bool_mask, KlEstimator::K1));
        assert_eq!(k1b, k1);
    }

    #[test]
    fn adaptive_controller_follows_ziegler_on_a_hand_example() {
        let config = KlConfig {
            coef: 0.1,
            adaptive: true,
            target: 6.0,
            horizon: 10_000,
            ..KlConfig::default()
        };
        let mut c = AdaptiveKlController::new(&config);
        // KL 6.6: error = 0.1; value = 0.1 * (1 + 0.1 * 64 / 10000).
        c.update(6.6, 64);
        assert!((c.value - 0.1 * 1.00064).abs() < 1e-12, "{}", c.value);
        // KL 100: error clipped to 0.2.
        let before = c.value;
        c.update(100.0, 500);
        assert!((c.value - before * 1.01).abs() < 1e-12);
        // KL 0: error clipped to -0.2.
        let before = c.value;
        c.update(0.0, 10_000);
        assert!((c.value - before * 0.8).abs() < 1e-12);
        let before = c.value;
        c.update(f64::NAN, 64);
        assert_eq!(c.value, before);
    }

    #[test]
    fn fixed_controller_keeps_its_value() {
        let mut c = AdaptiveKlController::new(&KlConfig::default());
        for kl in [0.0, 3.0, 100.0] {
            c.update(kl, 1000);
        }
        assert_eq!(c.value, 0.05);
    }
}
