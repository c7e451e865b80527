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

    /// `log_softmax(logits / T)` (T = 1 when greedy), before any top-k/top-p truncation:
    /// what the PPO learner and reference score tokens under. It is the distribution that
    /// sampled only when [`Sampling::check_untruncated`] passes, which PPO's config requires.
    pub fn log_probs(&self, logits: &Tensor) -> Tensor {
        let logits = logits.to_kind(Kind::Float);
        let scaled = if self.greedy || self.temperature == 1.0 {
            logits
        } else {
            logits / self.temperature
        };
        scaled.log_softmax(-1, Kind::Float)
    }

    /// Why these settings do not sample from [`Sampling::log_probs`] (greedy, top-k or
    /// top-p), naming the key; `None` when they do. PPO's ratios, KL and gradient are of
    /// `log_probs`, so PPO refuses the others (as TRL forces top_k 0 and top_p 1).
    pub fn check_untruncated(&self) -> Result<(), String> {
        if self.greedy {
            return Err(
                "greedy must be false: PPO needs the log-probs of a sampling \
                        distribution, and greedy decoding has none"
                    .into(),
            );
        }
        if self.top_k != 0 {
            return Err(format!(
                "top_k must be 0 for PPO (got {}): the learner and reference score the \
                 untruncated distribution, so it must be the one that samples",
                self.top_k
            ));
        }
        if self.top_p != 1.0 {
            return Err(format!(
                "top_p must be 1.0 for PPO (got {}): the learner and reference score the \
                 untruncated distribution, so it must be the one that samples",
                self.top_p
            ));
        }
        Ok(())
    }

    /// Next tokens [B] for logits [B, V]; `uniforms` [B] in (0, 1]. Returns (tokens,
    /// logprobs): each token's log-prob in the distribution it was drawn from, the
    /// truncated and renormalised one under top-k/top-p, and 0 (probability 1) when greedy.
    pub fn sample(&self, logits: &Tensor, uniforms: &Tensor) -> (Tensor, Tensor) {
        let log_probs = self.log_probs(logits);
        if self.greedy {
            let tokens = log_probs.argmax(-1, false);
            let certain = tokens.zeros_like().to_kind(Kind::Float);
            return (tokens, certain);
        }
        let drawn_from = if self.truncates(log_probs.size()[1]) {
            self.truncate(&log_probs).log_softmax(-1, Kind::Float)
        } else {
            log_probs
        };
        let cdf = drawn_from.exp().cumsum(-1, Kind::Float);
        let vocab = cdf.size()[1];
        let target = uniforms.unsqueeze(1) * cdf.narrow(1, vocab - 1, 1);
        // The first token whose cumulative mass reaches the target: a binary search per
        // row rather than a comparison over the whole vocabulary.
        let tokens = target
            .searchsorted(&cdf, false, false, "left", None::<&Tensor>)
            .squeeze_dim(1)
            .clamp_max(vocab - 1);
        let chosen = drawn_from
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
    fn logprob_is_of_the_distribution_that_drew() {
        let logits = Tensor::from_slice(&[2.0f32, 0.0, -1.0]).unsqueeze(0);
        let lp = |s: &Sampling, u: f64| {
            let (tok, lp) = s.sample(&logits, &Tensor::from_slice(&[u as f32]));
            (tok.int64_value(&[0]), lp.double_value(&[0]))
        };
        // Top-1 keeps only the argmax: it is certain.
        let top1 = Sampling {
            temperature: 2.0,
            top_k: 1,
            ..Sampling::default()
        };
        let (tok, got) = lp(&top1, 0.99);
        assert_eq!(tok, 0);
        assert!(got.abs() < 1e-6, "{got}");
        // Top-2 at T = 2: renormalised over exp(1) and exp(0).
        let top2 = Sampling {
            top_k: 2,
            ..top1.clone()
        };
        let (tok, got) = lp(&top2, 0.99);
        assert_eq!(tok, 1);
        let want = (1.0 / (1f64.exp() + 1.0)).ln();
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        // Greedy: probability 1.
        let greedy = Sampling {
            greedy: true,
            ..Sampling::default()
        };
        assert_eq!(lp(&greedy, 0.5), (0, 0.0));
    }

    /// Token frequencies of many draws match exp(recorded log-prob): per token within five
    /// standard deviations of the binomial count (a false alarm about once in 1.7 million
    /// per token under a correct sampler; the seed is fixed, so the test is deterministic),
    /// and the recorded probabilities of the tokens drawn sum to 1.
    #[test]
    fn recorded_logprobs_are_the_frequencies_of_the_draws() {
        let logits = [1.2f32, 0.4, 0.0, -0.3, -1.1, -2.5];
        let vocab = logits.len();
        let n = 40_000i64;
        let mut rng = crate::rng::Rng::new(17);
        let uniforms: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
        let batch = Tensor::from_slice(&logits)
            .unsqueeze(0)
            .expand([n, vocab as i64], false);
        let settings = [
            ("plain", Sampling::default()),
            (
                "tempered",
                Sampling {
                    temperature: 0.6,
                    ..Sampling::default()
                },
            ),
            (
                "top-k",
                Sampling {
                    temperature: 1.5,
                    top_k: 3,
                    ..Sampling::default()
                },
            ),
            (
                "top-p",
                Sampling {
                    top_p: 0.8,
                    ..Sampling::default()
                },
            ),
        ];
        for (name, s) in settings {
            let (tokens, lp) = s.sample(&batch, &Tensor::from_slice(&uniforms));
            let tokens = Vec::<i64>::try_from(&tokens).unwrap();
            let lp = Vec::<f64>::try_from(lp.to_kind(Kind::Double)).unwrap();
            let mut counts = vec![0f64; vocab];
            let mut recorded = vec![None::<f64>; vocab];
            for (&t, &l) in tokens.iter().zip(&lp) {
                counts[t as usize] += 1.0;
                let first = *recorded[t as usize].get_or_insert(l);
                assert!(
                    (first - l).abs() < 1e-6,
                    "{name}: token {t} logged {first} and {l}"
                );
            }
            let mut mass = 0.0;
            for (token, (count, l)) in counts.iter().zip(&recorded).enumerate() {
                let Some(l) = l else { continue };
                let p = l.exp();
                mass += p;
                let sigma = (n as f64 * p * (1.0 - p)).sqrt();
                let off = (count - n as f64 * p).abs();
                assert!(
                    off <= 5.0 * sigma + 1.0,
                    "{name}: token {token} drawn {count} times, expected {} (p = {p})",
                    n as f64 * p
                );
            }
            assert!((mass - 1.0).abs() < 1e-5, "{name}: recorded mass {mass}");
        }
    }

    #[test]
    fn only_untruncated_sampling_suits_ppo() {
        assert_eq!(Sampling::default().check_untruncated(), Ok(()));
        let hot = Sampling {
            temperature: 0.7,
            ..Sampling::default()
        };
        assert_eq!(hot.check_untruncated(), Ok(()));
        for (s, key) in [
            (
                Sampling {
                    greedy: true,
                    ..Sampling::default()
                },
                "greedy",
            ),
            (
                Sampling {
                    top_k: 40,
                    ..Sampling::default()
                },
                "top_k",
            ),
            (
                Sampling {
                    top_p: 0.9,
                    ..Sampling::default()
                },
                "top_p",
            ),
        ] {
            assert!(s.check_untruncated().unwrap_err().starts_with(key));
        }
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
