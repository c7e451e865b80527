//! Rollout batches, the unit of work of stage 3, and the engine functions the PPO actors
//! run on them: response log-probs (generator check, reference policy, learner), per-token
//! values (learner) and sequence scores (reward model).
//!
//! # Layout of a batch
//!
//! A [`RolloutBatch`] holds B left-padded prompts `[B, P]` with their validity mask and B
//! responses `[B, N]` that start at column 0; a response's tokens after its EOS are padding
//! (mask 0). Put side by side, `prompt ++ response` is the sequence the models see: the
//! padding on the left (prompt) and on the right (after EOS) is invisible, because
//! positions count only valid tokens and no real token attends to padding. The last prompt
//! token sits in column `P - 1` of every row, so the hidden state at sequence column
//! `P - 1 + j` is the state in which response token `j` is chosen: its logits give the
//! token's log-prob and the value head there gives `V(s_j)`.
//!
//! The models score a batch in groups of rows of similar length, each with only the padding
//! it needs ([`groups`]).
//!
//! The generator stamps each batch with the `policy_version` of its weights; the reference
//! policy fills `ref_logprobs`, the reward model `scores`, and the learner consumes it.

pub mod groups;

use crate::generate::Generation;
use crate::model::Model;
use crate::sampling::Sampling;
use groups::{length_groups, Group};
use tch::{Device, Kind, Tensor};

/// One batch of sampled responses and everything PPO needs to learn from it.
#[derive(Debug)]
pub struct RolloutBatch {
    /// The rollout batch's index in the run (0-based; its PPO step less one).
    pub id: u64,
    /// Version of the policy weights that sampled the responses.
    pub policy_version: u64,
    /// [B, P] i64, left-padded prompts.
    pub prompt_ids: Tensor,
    /// [B, P] i64, 1 on real prompt tokens.
    pub prompt_mask: Tensor,
    /// [B, N] i64 response tokens from column 0; padding after a row's EOS.
    pub response_ids: Tensor,
    /// [B, N] f32, 1 for real response tokens (EOS included).
    pub response_mask: Tensor,
    /// [B, N] f32, log-probs of the response tokens under the generator's (behaviour)
    /// policy, in the distribution the sampler drew from (see [`Sampling::sample`]; for
    /// PPO's untruncated sampling, [`Sampling::log_probs`]); 0 outside the mask.
    pub behaviour_logprobs: Tensor,
    /// `[B]` bool, the response ended with EOS (false: cut at `max_new_tokens`).
    pub ended_with_eos: Tensor,
    /// [B, N] f32, the reference (SFT) policy's log-probs; set by the reference actor.
    pub ref_logprobs: Option<Tensor>,
    /// `[B]` f32, the reward model's scores; set by the reward actor.
    pub scores: Option<Tensor>,
    /// `[B]` f32, a second opinion that is logged but never trained on (the embedded world's
    /// gold labeler, to show over-optimisation of the learned reward); set by the reward actor.
    pub monitor_scores: Option<Tensor>,
}

impl RolloutBatch {
    /// A batch from what [`crate::generate::generate`] returned for these prompts. `eos`:
    /// the EOS ids generation stopped at (empty: no response ended with EOS). The prompts
    /// are moved to the generation's device.
    pub fn from_generation(
        id: u64,
        policy_version: u64,
        prompt_ids: Tensor,
        prompt_mask: Tensor,
        generation: Generation,
        eos: &[i64],
    ) -> RolloutBatch {
        let device = generation.tokens.device();
        let mask = generation.mask.to_kind(Kind::Bool);
        let rows = generation.tokens.size()[0];
        assert_eq!(
            prompt_ids.size()[0],
            rows,
            "from_generation: prompts vs responses"
        );
        assert_eq!(
            prompt_ids.size(),
            prompt_mask.size(),
            "from_generation: prompt mask"
        );
        let ended_with_eos = Tensor::isin(
            &generation.tokens,
            &crate::generate::eos_ids(eos, device),
            false,
            false,
        )
        .logical_and(&mask)
        .any_dim(1, false);
        RolloutBatch {
            id,
            policy_version,
            prompt_ids: prompt_ids.to_device(device).to_kind(Kind::Int64),
            prompt_mask: prompt_mask.to_device(device).to_kind(Kind::Int64),
            response_ids: generation.tokens,
            response_mask: mask.to_kind(Kind::Float),
            behaviour_logprobs: generation.logprobs.to_kind(Kind::Float),
            ended_with_eos,
            ref_logprobs: None,
            scores: None,
            monitor_scores: None,
        }
    }

    /// The chunks of one batch, generated and scored apart, as one batch in their order:
    /// prompts left-padded and responses right-padded (with `pad_id`, masks and log-probs
    /// with 0) to the widest chunk's widths. The chunks share an id and a policy version.
    pub fn concat(parts: Vec<RolloutBatch>, pad_id: i64) -> crate::Result<RolloutBatch> {
        let first = parts
            .first()
            .ok_or_else(|| crate::Error::Invalid("no rollout chunks to gather".into()))?;
        let (id, version) = (first.id, first.policy_version);
        if let Some(odd) = parts
            .iter()
            .find(|p| (p.id, p.policy_version) != (id, version))
        {
            return Err(crate::Error::Invalid(format!(
                "rollout chunks of batch {id} (version {version}) and batch {} (version {}) gathered together",
                odd.id, odd.policy_version
            )));
        }
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let prompt = parts.iter().map(|p| p.prompt_width()).max().unwrap_or(0);
        let response = parts.iter().map(|p| p.response_width()).max().unwrap_or(0);
        let left = |t: &Tensor, value: f64| t.pad([prompt - t.size()[1], 0], "constant", value);
        let right = |t: &Tensor, value: f64| t.pad([0, response - t.size()[1]], "constant", value);
        let pad = pad_id as f64;
        let cat = |f: &dyn Fn(&RolloutBatch) -> Tensor| {
            Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), 0)
        };
        let optional = |f: &dyn Fn(&RolloutBatch) -> Option<&Tensor>, wide: bool| {
            let present: Option<Vec<Tensor>> = parts
                .iter()
                .map(|p| {
                    f(p).map(|t| {
                        if wide {
                            right(t, 0.0)
                        } else {
                            t.shallow_clone()
                        }
                    })
                })
                .collect();
            present.map(|ts| Tensor::cat(&ts, 0))
        };
        Ok(RolloutBatch {
            id,
            policy_version: version,
            prompt_ids: cat(&|p| left(&p.prompt_ids, pad)),
            prompt_mask: cat(&|p| left(&p.prompt_mask, 0.0)),
            response_ids: cat(&|p| right(&p.response_ids, pad)),
            response_mask: cat(&|p| right(&p.response_mask, 0.0)),
            behaviour_logprobs: cat(&|p| right(&p.behaviour_logprobs, 0.0)),
            ended_with_eos: cat(&|p| p.ended_with_eos.shallow_clone()),
            ref_logprobs: optional(&|p| p.ref_logprobs.as_ref(), true),
            scores: optional(&|p| p.scores.as_ref(), false),
            monitor_scores: optional(&|p| p.monitor_scores.as_ref(), false),
        })
    }

    /// Number of rows B.
    pub fn len(&self) -> i64 {
        self.response_ids.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prompt width P.
    pub fn prompt_width(&self) -> i64 {
        self.prompt_ids.size()[1]
    }

    /// Response width N.
    pub fn response_width(&self) -> i64 {
        self.response_ids.size()[1]
    }

    /// `prompt ++ response` ids [B, P + N] and their validity [B, P + N] (i64 0/1).
    pub fn sequences(&self) -> (Tensor, Tensor) {
        let ids = Tensor::cat(&[&self.prompt_ids, &self.response_ids], 1);
        let valid = Tensor::cat(
            &[
                self.prompt_mask.to_kind(Kind::Int64),
                self.response_mask.to_kind(Kind::Int64),
            ],
            1,
        );
        (ids, valid)
    }

    /// Every tensor through `f` (the same rows for all).
    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> RolloutBatch {
        RolloutBatch {
            id: self.id,
            policy_version: self.policy_version,
            prompt_ids: f(&self.prompt_ids),
            prompt_mask: f(&self.prompt_mask),
            response_ids: f(&self.response_ids),
            response_mask: f(&self.response_mask),
            behaviour_logprobs: f(&self.behaviour_logprobs),
            ended_with_eos: f(&self.ended_with_eos),
            ref_logprobs: self.ref_logprobs.as_ref().map(&f),
            scores: self.scores.as_ref().map(&f),
            monitor_scores: self.monitor_scores.as_ref().map(&f),
        }
    }

    /// The rows listed in `rows` (`[K]` i64), in that order: a minibatch.
    pub fn select(&self, rows: &Tensor) -> RolloutBatch {
        self.map(|t| t.index_select(0, &rows.to_device(t.device()).to_kind(Kind::Int64)))
    }

    /// The batch on `device` (shallow handles where it already is there).
    pub fn to_device(&self, device: Device) -> RolloutBatch {
        self.map(|t| t.to_device(device))
    }

    /// A shallow copy sharing the tensors.
    pub fn shallow_clone(&self) -> RolloutBatch {
        self.map(Tensor::shallow_clone)
    }

    /// The batch's token counts and scores on the host, for metrics and logs (one
    /// reduction each, so callers need no tensor code).
    pub fn figures(&self) -> BatchFigures {
        let count = |mask: &Tensor| mask.sum(Kind::Int64).int64_value(&[]).max(0) as u64;
        let scores = self
            .scores
            .as_ref()
            .and_then(|s| {
                let flat = s.to_kind(Kind::Float).flatten(0, -1);
                Vec::<f32>::try_from(flat.to_device(Device::Cpu)).ok()
            })
            .unwrap_or_default();
        BatchFigures {
            prompt_tokens: count(&self.prompt_mask),
            response_tokens: count(&self.response_mask),
            scores,
            monitor_score_mean: self
                .monitor_scores
                .as_ref()
                .map(|m| m.mean(Kind::Double).double_value(&[])),
        }
    }
}

/// Host figures of a [`RolloutBatch`] (see [`RolloutBatch::figures`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchFigures {
    /// Real (unpadded) prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens: real response tokens, EOS included.
    pub response_tokens: u64,
    /// The scores, one per response; empty when the batch has none yet.
    pub scores: Vec<f32>,
    /// Mean of the logged-only monitor scores, when there are any.
    pub monitor_score_mean: Option<f64>,
}

impl BatchFigures {
    /// Every real token the models see: prompt and response.
    pub fn real_tokens(&self) -> u64 {
        self.prompt_tokens + self.response_tokens
    }

    /// Tokens the learner runs forward and backward: every real token, once per epoch.
    pub fn trained_tokens(&self, ppo_epochs: usize) -> u64 {
        self.real_tokens() * ppo_epochs as u64
    }
}

/// Hidden states at the positions where the response tokens are chosen: column
/// `P - 1 + j` of `prompt ++ response`, [B, N, d], on the model's device (zero past a
/// group's longest response, where every row is padding). Keeps the graph when grad mode
/// is on; `train` enables dropout.
fn response_hidden(model: &Model, batch: &RolloutBatch, train: bool) -> Tensor {
    let n = batch.response_width();
    assert!(
        batch.prompt_width() > 0,
        "rollout batch {}: prompts are empty",
        batch.id
    );
    by_length(model, batch, train, |hidden, _, group| {
        hidden
            .narrow(1, group.prompt - 1, group.response)
            .constant_pad_nd([0, 0, 0, n - group.response])
    })
}

/// One forward per length group of the batch's rows ([`groups::length_groups`]), each on
/// its own columns: `f` of the group's hidden states and validity mask, the results
/// joined back in row order.
fn by_length(
    model: &Model,
    batch: &RolloutBatch,
    train: bool,
    f: impl Fn(&Tensor, &Tensor, &Group) -> Tensor,
) -> Tensor {
    let device = model.device();
    let lengths = |mask: &Tensor| {
        Vec::<i64>::try_from(
            mask.sum_dim_intlist(1, false, Kind::Int64)
                .to_device(Device::Cpu),
        )
        .expect("a [B] i64 tensor")
    };
    let groups = length_groups(&lengths(&batch.prompt_mask), &lengths(&batch.response_mask));
    let (ids, valid) = batch.sequences();
    let (ids, valid) = (ids.to_device(device), valid.to_device(device));
    let p = batch.prompt_width();
    let mut parts = Vec::with_capacity(groups.len());
    let mut inverse = vec![0i64; batch.len() as usize];
    let mut placed = 0;
    for group in &groups {
        let rows = Tensor::from_slice(&group.rows).to_device(device);
        let cut = |t: &Tensor| {
            t.index_select(0, &rows)
                .narrow(1, p - group.prompt, group.prompt + group.response)
        };
        let (ids, valid) = (cut(&ids), cut(&valid));
        let hidden = model.forward(&ids, Some(&valid), None, train);
        parts.push(f(&hidden, &valid, group));
        for &row in &group.rows {
            inverse[row as usize] = placed;
            placed += 1;
        }
    }
    let joined = Tensor::cat(&parts, 0);
    joined.index_select(0, &Tensor::from_slice(&inverse).to_device(device))
}

/// The next-token logits at the positions where the response tokens are chosen,
/// [B, N, V] in the model's dtype; keeps the graph when grad mode is on (`train` enables
/// dropout). [`Sampling::log_probs`] of these are what PPO's (untruncated) generator
/// sampled from.
pub fn response_logits(model: &Model, batch: &RolloutBatch, train: bool) -> Tensor {
    model.logits(&response_hidden(model, batch, train))
}

/// Log-probs [B, N] of `tokens` [B, N] in the distributions `log_probs` [B, N, V], 0 where
/// `mask` is 0.
pub fn token_logprobs(log_probs: &Tensor, tokens: &Tensor, mask: &Tensor) -> Tensor {
    let device = log_probs.device();
    let outside = mask.to_device(device).to_kind(Kind::Bool).logical_not();
    log_probs
        .gather(2, &tokens.to_device(device).unsqueeze(-1), false)
        .squeeze_dim(-1)
        .masked_fill(&outside, 0.0)
}

/// Log-prob of each response token under `sampling.log_probs` of the model's logits at
/// the position before it: f32 [B, N] on the model's device, 0 outside the response mask.
/// With `train` the graph is kept (and dropout runs, if the model has any); otherwise it
/// runs under no_grad. For the generator's own weights this equals the `logprobs` that
/// [`crate::generate::generate`] returned (up to kernel numerics).
pub fn response_logprobs(
    model: &Model,
    batch: &RolloutBatch,
    sampling: &Sampling,
    train: bool,
) -> Tensor {
    let run = || {
        let log_probs = sampling.log_probs(&response_logits(model, batch, train));
        token_logprobs(&log_probs, &batch.response_ids, &batch.response_mask)
    };
    if train {
        run()
    } else {
        tch::no_grad(run)
    }
}

/// The scalar head at the position before each response token (the state in which that
/// token is chosen): f32 [B, N] on the model's device, 0 outside the response mask. With
/// `train` the graph is kept; otherwise it runs under no_grad.
pub fn response_values(value_model: &Model, batch: &RolloutBatch, train: bool) -> Tensor {
    let run = || {
        let values = value_model
            .scores(&response_hidden(value_model, batch, train))
            .to_kind(Kind::Float);
        let outside = batch
            .response_mask
            .to_device(values.device())
            .to_kind(Kind::Bool)
            .logical_not();
        values.masked_fill(&outside, 0.0)
    };
    if train {
        run()
    } else {
        tch::no_grad(run)
    }
}

/// The reward model's score of each `prompt ++ response`, read at the row's last real
/// token (EOS when the response has one): f32 `[B]` on the model's device, under no_grad.
/// Padding after the response changes nothing: the score equals that of the unpadded
/// sequence alone.
pub fn sequence_scores(reward_model: &Model, batch: &RolloutBatch) -> Tensor {
    tch::no_grad(|| {
        let at_last = by_length(reward_model, batch, false, |hidden, valid, _| {
            let (b, t, d) = hidden.size3().expect("hidden states are [B, T, d]");
            let columns = Tensor::arange(t, (Kind::Int64, hidden.device())).unsqueeze(0);
            let last = (valid.to_kind(Kind::Int64) * columns).amax(1, false);
            hidden
                .gather(1, &last.view([b, 1, 1]).expand([b, 1, d], false), false)
                .squeeze_dim(1)
        });
        reward_model.scores(&at_last).to_kind(Kind::Float)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DType;
    use crate::generate::{generate, left_pad, GenerateOptions};
    use crate::model::Head;
    use std::path::Path;

    fn fixture(name: &str, head: Head) -> Model {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        Model::load(&dir, head, DType::F32, Device::Cpu).unwrap().0
    }

    fn prompts() -> Vec<Vec<i64>> {
        vec![
            vec![5, 17],
            vec![40, 2, 33, 8, 61],
            vec![9, 9, 12, 70, 3, 44, 21],
            vec![11, 60, 4],
        ]
    }

    fn options(eos: Option<i64>) -> GenerateOptions {
        GenerateOptions {
            // PPO's sampling: tempered, untruncated (what its config admits).
            sampling: Sampling {
                temperature: 0.8,
                ..Sampling::default()
            },
            max_new_tokens: 9,
            eos_token_ids: eos.into_iter().collect(),
            pad_token_id: 0,
            static_batch: false,
        }
    }

    fn rollout(model: &Model, eos: Option<i64>, seed: u64) -> RolloutBatch {
        let (ids, mask) = left_pad(&prompts(), 0);
        let opts = options(eos);
        let mut cache = model.new_cache(ids.size()[0], ids.size()[1] + opts.max_new_tokens);
        let generation = generate(
            model,
            &mut cache,
            &prompts(),
            &opts,
            &mut crate::generate::prompt_streams(seed, 0, ids.size()[0] as usize),
        )
        .unwrap();
        RolloutBatch::from_generation(3, 7, ids, mask, generation, opts.eos_token_ids.as_slice())
    }

    /// A batch where some rows stop at EOS (the token row 1 samples at step 2 without one).
    fn ragged_rollout(model: &Model) -> (RolloutBatch, i64) {
        let free = rollout(model, None, 11);
        let eos = free.response_ids.int64_value(&[1, 2]);
        let batch = rollout(model, Some(eos), 11);
        let lengths = Vec::<f64>::try_from(
            batch
                .response_mask
                .sum_dim_intlist(1, false, Kind::Float)
                .to_kind(Kind::Double),
        )
        .unwrap();
        assert!(lengths.iter().any(|&l| l < 9.0), "{lengths:?}");
        assert!(lengths.contains(&9.0), "{lengths:?}");
        (batch, eos)
    }

    fn rows_f64(t: &Tensor) -> Vec<Vec<f64>> {
        Vec::<Vec<f64>>::try_from(t.to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn from_generation_marks_eos_and_masks() {
        let model = fixture("llama-tiny", Head::LanguageModel);
        let (batch, eos) = ragged_rollout(&model);
        assert_eq!((batch.id, batch.policy_version), (3, 7));
        assert_eq!(batch.response_mask.kind(), Kind::Float);
        let ids = Vec::<Vec<i64>>::try_from(&batch.response_ids).unwrap();
        let mask = rows_f64(&batch.response_mask);
        let ended = Vec::<bool>::try_from(&batch.ended_with_eos).unwrap();
        for ((row, m), ended) in ids.iter().zip(&mask).zip(ended) {
            let len = m.iter().filter(|&&x| x == 1.0).count();
            assert!(m[..len].iter().all(|&x| x == 1.0));
            assert_eq!(ended, row[..len].contains(&eos), "{row:?}");
            assert_eq!(ended, row[len - 1] == eos);
        }
        let (seq, valid) = batch.sequences();
        assert_eq!(seq.size(), [4, 7 + batch.response_width()]);
        assert_eq!(valid.kind(), Kind::Int64);
        let expect_valid = Tensor::cat(
            &[
                batch.prompt_mask.shallow_clone(),
                batch.response_mask.to_kind(Kind::Int64),
            ],
            1,
        );
        assert!(valid.equal(&expect_valid));
        let none = rollout(&model, None, 11);
        assert!(!bool::try_from(none.ended_with_eos.any()).unwrap());
    }

    #[test]
    fn response_logprobs_equal_the_generators() {
        let model = fixture("llama-tiny", Head::LanguageModel);
        let (batch, _) = ragged_rollout(&model);
        let sampling = options(None).sampling;
        let got = response_logprobs(&model, &batch, &sampling, false);
        assert!(!got.requires_grad());
        let diff = (&got - &batch.behaviour_logprobs)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "max |logprob diff| {diff}");
        // Zero outside the mask, like the generator's.
        let outside = batch.response_mask.eq(0.0);
        assert!(
            got.masked_select(&outside)
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                == 0.0
        );
        // The graph is kept when training.
        let trained = response_logprobs(&model, &batch, &sampling, true);
        assert!(trained.requires_grad());
        assert!((trained.detach() - &got).abs().max().double_value(&[]) < 1e-6);
        // A different temperature gives different log-probs.
        let hot = Sampling {
            temperature: 1.5,
            ..sampling
        };
        let other = response_logprobs(&model, &batch, &hot, false);
        assert!((other - &got).abs().max().double_value(&[]) > 1e-3);
        // A truncating sampler records the log-probs of the truncated distribution, which
        // the learner's do not match: why PPO refuses top-k and top-p.
        let truncated = GenerateOptions {
            sampling: Sampling {
                top_k: 5,
                ..sampling
            },
            ..options(None)
        };
        let (ids, mask) = left_pad(&prompts(), 0);
        let mut cache = model.new_cache(4, ids.size()[1] + truncated.max_new_tokens);
        let generation = generate(
            &model,
            &mut cache,
            &prompts(),
            &truncated,
            &mut crate::generate::prompt_streams(11, 0, 4),
        )
        .unwrap();
        let top5 = RolloutBatch::from_generation(3, 7, ids, mask, generation, &[]);
        let learner = response_logprobs(&model, &top5, &truncated.sampling, false);
        let above = (&top5.behaviour_logprobs - learner) * &top5.response_mask;
        assert!(above.min().double_value(&[]) > -1e-5);
        assert!(above.max().double_value(&[]) > 1e-2);
    }

    #[test]
    fn figures_count_real_tokens_and_read_scores() {
        let mask = |rows: &[&[i64]]| {
            let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
            Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
        };
        let prompt_mask = mask(&[&[0, 1, 1], &[1, 1, 1]]);
        let response_mask = mask(&[&[1, 1, 0, 0], &[1, 1, 1, 1]]).to_kind(Kind::Bool);
        let zeros = |t: &Tensor| t.zeros_like().to_kind(Kind::Int64);
        let mut batch = RolloutBatch {
            id: 1,
            policy_version: 0,
            prompt_ids: zeros(&prompt_mask),
            response_ids: zeros(&response_mask),
            behaviour_logprobs: zeros(&response_mask).to_kind(Kind::Float),
            ended_with_eos: Tensor::from_slice(&[true, false]),
            prompt_mask,
            response_mask,
            ref_logprobs: None,
            scores: None,
            monitor_scores: None,
        };
        let f = batch.figures();
        assert_eq!((f.prompt_tokens, f.response_tokens), (5, 6));
        assert_eq!((f.real_tokens(), f.trained_tokens(4)), (11, 44));
        assert!(f.scores.is_empty());
        assert_eq!(f.monitor_score_mean, None);
        batch.scores = Some(Tensor::from_slice(&[0.5f64, -2.0]).view([2, 1]));
        batch.monitor_scores = Some(Tensor::from_slice(&[1.0f32, 2.0]));
        let f = batch.figures();
        assert_eq!(f.scores, [0.5, -2.0]);
        assert_eq!(f.monitor_score_mean, Some(1.5));
    }

    /// A hand-made chunk: prompts (left-padded with 9), responses (right-padded with 9)
    /// and their scores; log-probs are -(token id) / 10 on real tokens.
    fn chunk(prompts: &[&[i64]], responses: &[&[i64]], scores: &[f32]) -> RolloutBatch {
        let grid = |rows: &[&[i64]], left: bool| {
            let width = rows.iter().map(|r| r.len()).max().unwrap();
            let (mut ids, mut valid) = (Vec::<i64>::new(), Vec::<i64>::new());
            for r in rows {
                let pad = vec![9; width - r.len()];
                let (ones, zeros) = (vec![1; r.len()], vec![0; width - r.len()]);
                match left {
                    true => (
                        ids.extend(pad.iter().chain(*r)),
                        valid.extend(zeros.iter().chain(&ones)),
                    ),
                    false => (
                        ids.extend(r.iter().chain(&pad)),
                        valid.extend(ones.iter().chain(&zeros)),
                    ),
                };
            }
            let shape = [rows.len() as i64, width as i64];
            (
                Tensor::from_slice(&ids).view(shape),
                Tensor::from_slice(&valid).view(shape),
            )
        };
        let (prompt_ids, prompt_mask) = grid(prompts, true);
        let (response_ids, valid) = grid(responses, false);
        let response_mask = valid.to_kind(Kind::Float);
        RolloutBatch {
            id: 4,
            policy_version: 2,
            behaviour_logprobs: response_ids.to_kind(Kind::Float) * -0.1 * &response_mask,
            ref_logprobs: Some(response_ids.to_kind(Kind::Float) * -0.2 * &response_mask),
            ended_with_eos: Tensor::from_slice(&vec![true; prompts.len()]),
            prompt_ids,
            prompt_mask,
            response_ids,
            response_mask,
            scores: Some(Tensor::from_slice(scores)),
            monitor_scores: None,
        }
    }

    #[test]
    fn concat_pads_chunks_to_the_widest_and_keeps_their_order() {
        let a = chunk(&[&[1, 2], &[3]], &[&[4, 5, 6], &[7]], &[0.5, 1.5]);
        let b = chunk(&[&[8, 8, 8]], &[&[2]], &[-1.0]);
        let whole = chunk(
            &[&[1, 2], &[3], &[8, 8, 8]],
            &[&[4, 5, 6], &[7], &[2]],
            &[0.5, 1.5, -1.0],
        );
        let gathered = RolloutBatch::concat(vec![a, b], 9).unwrap();
        assert_eq!((gathered.id, gathered.policy_version), (4, 2));
        let pairs = [
            (&gathered.prompt_ids, &whole.prompt_ids),
            (&gathered.prompt_mask, &whole.prompt_mask),
            (&gathered.response_ids, &whole.response_ids),
            (&gathered.response_mask, &whole.response_mask),
            (&gathered.behaviour_logprobs, &whole.behaviour_logprobs),
            (&gathered.ended_with_eos, &whole.ended_with_eos),
            (
                gathered.ref_logprobs.as_ref().unwrap(),
                whole.ref_logprobs.as_ref().unwrap(),
            ),
            (
                gathered.scores.as_ref().unwrap(),
                whole.scores.as_ref().unwrap(),
            ),
        ];
        for (i, (got, want)) in pairs.into_iter().enumerate() {
            assert_eq!(got.size(), want.size(), "tensor {i}");
            assert!(got.equal(want), "tensor {i}: {got} vs {want}");
        }
        assert!(gathered.monitor_scores.is_none());
    }

    #[test]
    fn concat_refuses_chunks_of_different_versions() {
        let a = chunk(&[&[1]], &[&[2]], &[0.0]);
        let mut b = chunk(&[&[1]], &[&[2]], &[0.0]);
        b.policy_version = 3;
        let e = RolloutBatch::concat(vec![a, b], 9).unwrap_err().to_string();
        assert!(e.contains("version 2") && e.contains("version 3"), "{e}");
    }

    #[test]
    fn select_takes_rows_of_every_tensor() {
        let model = fixture("llama-tiny", Head::LanguageModel);
        let (mut batch, _) = ragged_rollout(&model);
        batch.scores = Some(Tensor::from_slice(&[0.5f32, 1.5, 2.5, 3.5]));
        let rows = Tensor::from_slice(&[2i64, 0]);
        let sub = batch.select(&rows);
        assert_eq!(sub.len(), 2);
        assert!(sub.prompt_ids.get(0).equal(&batch.prompt_ids.get(2)));
        assert!(sub.response_ids.get(1).equal(&batch.response_ids.get(0)));
        assert!(sub
            .ended_with_eos
            .get(0)
            .equal(&batch.ended_with_eos.get(2)));
        let scores = Vec::<f32>::try_from(sub.scores.as_ref().unwrap()).unwrap();
        assert_eq!(scores, [2.5, 0.5]);
        assert!(sub.ref_logprobs.is_none());
        // Log-probs of a minibatch are those of its rows in the full batch.
        let sampling = options(None).sampling;
        let full = response_logprobs(&model, &batch, &sampling, false);
        let part = response_logprobs(&model, &sub, &sampling, false);
        assert!(
            (part - full.index_select(0, &rows))
                .abs()
                .max()
                .double_value(&[])
                < 1e-5
        );
    }

    #[test]
    fn sequence_scores_ignore_trailing_padding() {
        let policy = fixture("llama-tiny", Head::LanguageModel);
        let rm = fixture("llama-tiny-score", Head::Scalar);
        let (batch, _) = ragged_rollout(&policy);
        let scores = sequence_scores(&rm, &batch);
        assert_eq!(scores.size(), [4]);
        assert_eq!(scores.kind(), Kind::Float);
        let values = response_values(&rm, &batch, false);
        assert_eq!(values.size(), batch.response_ids.size());
        let responses = Vec::<Vec<i64>>::try_from(&batch.response_ids).unwrap();
        let mask = rows_f64(&batch.response_mask);
        let values = rows_f64(&values);
        let alone = |seq: &[i64]| {
            let ids = Tensor::from_slice(seq).unsqueeze(0);
            tch::no_grad(|| {
                let hidden = rm.forward(&ids, None, None, false);
                rm.scores(&hidden.select(1, seq.len() as i64 - 1))
                    .double_value(&[0])
            })
        };
        for (r, prompt) in prompts().iter().enumerate() {
            let len = mask[r].iter().filter(|&&m| m == 1.0).count();
            let mut seq = prompt.clone();
            seq.extend(&responses[r][..len]);
            let want = alone(&seq);
            let got = scores.double_value(&[r as i64]);
            assert!((got - want).abs() < 1e-5, "row {r}: {got} vs {want}");
            // The value of response token j is read at the token before it.
            for j in [0, len - 1] {
                let want = alone(&seq[..prompt.len() + j]);
                assert!((values[r][j] - want).abs() < 1e-5, "row {r} token {j}");
            }
            assert!(values[r][len..].iter().all(|&v| v == 0.0));
        }
    }

    /// Rows of very different lengths, which the models score in several groups.
    fn uneven_batch(vocab: i64) -> (RolloutBatch, Vec<Vec<i64>>, Vec<Vec<i64>>) {
        let prompt_lens = [3usize, 3, 4, 3, 20, 3, 4, 3];
        let response_lens = [2usize, 3, 2, 2, 15, 1, 2, 3];
        let mut next = 7i64;
        let mut token = || {
            next = (next * 48271) % 2147483647;
            1 + next % (vocab - 1)
        };
        let prompts: Vec<Vec<i64>> = prompt_lens
            .iter()
            .map(|&l| (0..l).map(|_| token()).collect())
            .collect();
        let responses: Vec<Vec<i64>> = response_lens
            .iter()
            .map(|&l| (0..l).map(|_| token()).collect())
            .collect();
        let (prompt_ids, prompt_mask) = left_pad(&prompts, 0);
        let n = 15;
        let rows = prompts.len() as i64;
        let mut ids = vec![0i64; (rows * n) as usize];
        let mut mask = vec![0f32; (rows * n) as usize];
        for (r, response) in responses.iter().enumerate() {
            for (j, &t) in response.iter().enumerate() {
                ids[r * n as usize + j] = t;
                mask[r * n as usize + j] = 1.0;
            }
        }
        let batch = RolloutBatch {
            id: 0,
            policy_version: 0,
            prompt_ids,
            prompt_mask,
            response_ids: Tensor::from_slice(&ids).view([rows, n]),
            response_mask: Tensor::from_slice(&mask).view([rows, n]),
            behaviour_logprobs: Tensor::zeros([rows, n], (Kind::Float, Device::Cpu)),
            ended_with_eos: Tensor::zeros([rows], (Kind::Bool, Device::Cpu)),
            ref_logprobs: None,
            scores: None,
            monitor_scores: None,
        };
        (batch, prompts, responses)
    }

    #[test]
    fn rows_of_uneven_length_score_as_each_row_alone() {
        let policy = fixture("llama-tiny", Head::LanguageModel);
        let rm = fixture("llama-tiny-score", Head::Scalar);
        let (batch, prompts, responses) = uneven_batch(policy.config().vocab_size);
        let lengths =
            |m: &Tensor| Vec::<i64>::try_from(m.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
        let groups = length_groups(&lengths(&batch.prompt_mask), &lengths(&batch.response_mask));
        assert!(groups.len() > 1, "{groups:?}");
        let sampling = options(None).sampling;
        let logprobs = rows_f64(&response_logprobs(&policy, &batch, &sampling, false));
        let trained = response_logprobs(&policy, &batch, &sampling, true);
        assert!(trained.requires_grad());
        let scores = sequence_scores(&rm, &batch);
        for (r, (prompt, response)) in prompts.iter().zip(&responses).enumerate() {
            let mut seq = prompt.clone();
            seq.extend(response);
            let ids = Tensor::from_slice(&seq).unsqueeze(0);
            let (log_probs, score) = tch::no_grad(|| {
                let hidden = policy.forward(&ids, None, None, false);
                let log_probs = sampling.log_probs(&policy.logits(&hidden));
                let rm_hidden = rm.forward(&ids, None, None, false);
                let score = rm
                    .scores(&rm_hidden.select(1, seq.len() as i64 - 1))
                    .double_value(&[0]);
                (log_probs, score)
            });
            for (j, &token) in response.iter().enumerate() {
                let at = (prompt.len() + j - 1) as i64;
                let want = log_probs.double_value(&[0, at, token]);
                assert!((logprobs[r][j] - want).abs() < 1e-5, "row {r} token {j}");
            }
            assert!(logprobs[r][response.len()..].iter().all(|&v| v == 0.0));
            let got = scores.double_value(&[r as i64]);
            assert!((got - score).abs() < 1e-5, "row {r}: {got} vs {score}");
        }
    }
}
