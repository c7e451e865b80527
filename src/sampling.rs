//! Choosing the next token from logits: greedy, temperature, top-k, top-p.
//!
//! Randomness comes in as one uniform number per row (from `crate::rng::Rng`), and a token
//! is drawn by inverting the cumulative distribution: deterministic under a seed, no
//! libtorch global generator, and no host round-trip inside the decode loop.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// How tokens are chosen. `temperature`, `top_k` and `top_p` are ignored when `greedy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Always take the most likely token.
    pub greedy: bool,
    /// Logits are divided by this before softmax (> 0).
    pub temperature: f64,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: i64,
    /// Keep the smallest set of tokens whose probability reaches p; 1.0 keeps all.
    pub top_p: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            greedy: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

impl Sampling {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be > 0, got {}", self.temperature));
        }
        if self.top_k < 0 {
            return Err(format!("top_k must be >= 0, got {}", self.top_k));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }

    /// Log-probabilities the sampler's tokens are scored under: `log_softmax(logits / T)`
    /// (T = 1 when greedy), before top-k/top-p truncation, as PPO's ratio expects.
    pub fn log_probs(&self, logits: &Tensor) -> Tensor {
        let logits = logits.to_kind(Kind::Float);
        let scaled = if self.greedy || self.temperature == 1.0 {
            logits
        } else {
            logits / self.temperature
        };
        scaled.log_softmax(-1, Kind::Float)
    }

    /// Next tokens [B] for logits [B, V]; `uniforms` [B] in (0, 1]. Returns (tokens, logprobs).
    pub fn sample(&self, logits: &Tensor, uniforms: &Tensor) -> (Tensor, Tensor) {
        let log_probs = self.log_probs(logits);
        let tokens = if self.greedy {
            log_probs.argmax(-1, false)
        } else {
            // Untruncated, the probabilities are exp(log_probs): no second softmax.
            let probs = if self.truncates(log_probs.size()[1]) {
                self.truncate(&log_probs).softmax(-1, Kind::Float)
            } else {
                log_probs.exp()
            };
            let cdf = probs.cumsum(-1, Kind::Float);
            let vocab = cdf.size()[1];
            let target = uniforms.unsqueeze(1) * cdf.narrow(1, vocab - 1, 1);
            // The first token whose cumulative mass reaches the target: a binary search
            // per row rather than a comparison over the whole vocabulary.
            target
                .searchsorted(&cdf, false, false, "left", None::<&Tensor>)
                .squeeze_dim(1)
                .clamp_max(vocab - 1)
        };
        let chosen = log_probs
            .gather(1, &tokens.unsqueeze(1), false)
            .squeeze_dim(1);
        (tokens, chosen)
    }

    /// Whether top-k or top-p removes anything from a vocabulary of `vocab` tokens.
    fn truncates(&self, vocab: i64) -> bool {
        (self.top_k > 0 && self.top_k < vocab) || self.top_p < 1.0
    }

    /// Sets the log-probs of tokens outside top-k / top-p to -inf.
    fn truncate(&self, log_probs: &Tensor) -> Tensor {
        let vocab = log_probs.size()[1];
        let mut out = log_probs.shallow_clone();
        if self.top_k > 0 && self.top_k < vocab {
            let (kth, _) = out.topk(self.top_k, -1, true, true);
            let threshold = kth.narrow(1, self.top_k - 1, 1);
            out = out.masked_fill(&out.lt_tensor(&threshold), f64::NEG_INFINITY);
        }
        if self.top_p < 1.0 {
            let (sorted, order) = out.sort(-1, true);
            let probs = sorted.softmax(-1, Kind::Float);
            // Drop a token when the mass before it already reaches top_p; the first stays.
            let before = probs.cumsum(-1, Kind::Float) - &probs;
            let drop_sorted = before.ge(self.top_p);
            let drop = drop_sorted.scatter(1, &order, &drop_sorted);
            out = out.masked_fill(&drop, f64::NEG_INFINITY);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(values: &[f32]) -> Tensor {
        Tensor::from_slice(values).log().unsqueeze(0)
    }

    fn draw(s: &Sampling, logits: &Tensor, u: f64) -> i64 {
        s.sample(logits, &Tensor::from_slice(&[u as f32]))
            .0
            .int64_value(&[0])
    }

    #[test]
    fn inverse_cdf_picks_by_cumulative_mass() {
        let s = Sampling::default();
        let logits = probs(&[0.1, 0.2, 0.3, 0.4]);
        // Cumulative 0.1, 0.3, 0.6, 1.0.
        assert_eq!(draw(&s, &logits, 0.05), 0);
        assert_eq!(draw(&s, &logits, 0.25), 1);
        assert_eq!(draw(&s, &logits, 0.59), 2);
        assert_eq!(draw(&s, &logits, 0.61), 3);
        assert_eq!(draw(&s, &logits, 1.0), 3);
    }

    #[test]
    fn logprob_is_of_the_tempered_untruncated_distribution() {
        let s = Sampling {
            temperature: 2.0,
            top_k: 1,
            ..Sampling::default()
        };
        let logits = Tensor::from_slice(&[2.0f32, 0.0]).unsqueeze(0);
        let (tok, lp) = s.sample(&logits, &Tensor::from_slice(&[0.99f32]));
        assert_eq!(tok.int64_value(&[0]), 0, "top-1 keeps only the argmax");
        let expected = (1f64.exp() / (1f64.exp() + 1.0)).ln();
        assert!((lp.double_value(&[0]) - expected).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_remove_the_tail() {
        let logits = probs(&[0.5, 0.3, 0.15, 0.05]);
        let top2 = Sampling {
            top_k: 2,
            ..Sampling::default()
        };
        // Renormalised over {0.5, 0.3}: u = 0.7 -> 0.7 * 0.8 = 0.56 > 0.5 -> token 1.
        assert_eq!(draw(&top2, &logits, 0.7), 1);
        assert_eq!(draw(&top2, &logits, 1.0), 1);
        // top_p 0.8 keeps {0.5, 0.3} (mass before token 2 is 0.8 >= 0.8).
        let nucleus = Sampling {
            top_p: 0.8,
            ..Sampling::default()
        };
        assert_eq!(draw(&nucleus, &logits, 1.0), 1);
        let wider = Sampling {
            top_p: 0.81,
            ..Sampling::default()
        };
        assert_eq!(draw(&wider, &logits, 1.0), 2);
    }

    #[test]
    fn greedy_takes_argmax_whatever_the_noise() {
        let s = Sampling {
            greedy: true,
            ..Sampling::default()
        };
        let logits = probs(&[0.2, 0.5, 0.3]);
        assert_eq!(draw(&s, &logits, 0.01), 1);
        assert_eq!(draw(&s, &logits, 1.0), 1);
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(Sampling {
            temperature: 0.0,
            ..Sampling::default()
        }
        .validate()
        .is_err());
        assert!(Sampling {
            top_p: 0.0,
            ..Sampling::default()
        }
        .validate()
        .is_err());
        assert!(Sampling {
            top_k: -1,
            ..Sampling::default()
        }
        .validate()
        .is_err());
        assert!(Sampling::default().validate().is_ok());
    }
}
