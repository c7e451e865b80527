//! One trainable model with its optimizer and schedule: the engine behind the learner actor.
//! SFT, reward-model and DPO batches share the step logic: gradient accumulation over
//! micro-batches (each weighted by its share of the step's tokens or prompts, so the step's
//! loss is the same as one big batch's), gradient-norm clipping, then AdamW at the
//! scheduled learning rate.
//!
//! Dropout draws its masks from libtorch's global generator, whose state a checkpoint does
//! not hold. Instead every training step of a model with dropout reseeds it from the
//! trainer's seed and the step's number ([`dropout_seed`]), so a step's masks depend on
//! nothing but (seed, step): a run resumed from a checkpoint draws the masks an
//! uninterrupted run draws, and nothing needs saving.

use crate::data::{DpoBatch, RmBatch, SftBatch};
use crate::dpo::{dpo_loss, DpoObjective};
use crate::losses::{kwise_loss, sequence_logps, sft_loss};
use crate::model::{Head, Model};
use crate::optim::{AdamW, OptimizerConfig};
use crate::rng::Rng;
use crate::schedule::ScheduleConfig;
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;
use tch::{Kind, Tensor};

/// A batch for one of the supervised objectives.
pub enum Batch {
    Sft(SftBatch),
    Rm(RmBatch),
    Dpo(DpoBatch, DpoObjective),
}

impl Batch {
    /// Sequences (rows) and real, non-padding tokens in the batch.
    pub fn rows_and_tokens(&self) -> (i64, i64) {
        let valid = match self {
            Batch::Sft(b) => &b.valid,
            Batch::Rm(b) => &b.valid,
            Batch::Dpo(b, _) => &b.sequences.valid,
        };
        (valid.size()[0], valid.sum(Kind::Int64).int64_value(&[]))
    }

    /// What this batch contributes to a step's mean: loss tokens (SFT) or prompts (RM,
    /// DPO).
    fn weight(&self) -> f64 {
        match self {
            Batch::Sft(b) => b.tokens as f64,
            Batch::Rm(b) => b.groups.len() as f64,
            Batch::Dpo(b, _) => b.groups.len() as f64,
        }
    }
}

/// Figures of one optimizer step or one evaluation pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Mean loss (token-mean for SFT, prompt-mean for RM and DPO).
    pub loss: f64,
    /// Loss tokens (SFT) or sequences (RM, DPO) processed.
    pub tokens: i64,
    /// Ranked pairs compared (RM, DPO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparisons: Option<usize>,
    /// Fraction of pairs the model orders like the labels (RM; DPO: by implicit reward).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Mean reward margin r(preferred) - r(other) (RM; DPO: implicit rewards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Mean implicit reward of each pair's better response (DPO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_reward: Option<f64>,
    /// Mean implicit reward of each pair's worse response (DPO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_reward: Option<f64>,
    /// Mean log pi - log pi_ref of a response over the batch's responses (DPO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implicit_kl: Option<f64>,
    /// Token-mean NLL of each ranking's best response (DPO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_nll: Option<f64>,
    /// Gradient norm before clipping (training steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Learning rate used (training steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

impl Stats {
    /// Weighted accumulation of a batch's figures (weights: tokens or prompts); the pair
    /// figures mix by pairs, the implicit KL by responses.
    fn add(&mut self, other: &Stats, weight: f64, total: f64) {
        let share = weight / total;
        self.loss += other.loss * share;
        let rows_before = self.tokens as f64;
        self.tokens += other.tokens;
        let pairs_before = self.comparisons.unwrap_or(0) as f64;
        let mix = |old: Option<f64>, new: Option<f64>, before: f64, count: f64| {
            new.map(|new| (old.unwrap_or(0.0) * before + new * count) / (before + count))
        };
        if let Some(pairs) = other.comparisons {
            let pairs = pairs as f64;
            self.accuracy = mix(self.accuracy, other.accuracy, pairs_before, pairs);
            self.margin = mix(self.margin, other.margin, pairs_before, pairs);
            self.chosen_reward = mix(self.chosen_reward, other.chosen_reward, pairs_before, pairs);
            self.rejected_reward = mix(
                self.rejected_reward,
                other.rejected_reward,
                pairs_before,
                pairs,
            );
            self.comparisons = Some((pairs_before + pairs) as usize);
        }
        let rows = other.tokens as f64;
        self.implicit_kl = mix(self.implicit_kl, other.implicit_kl, rows_before, rows);
        self.chosen_nll = mix(self.chosen_nll, other.chosen_nll, rows_before, rows);
    }
}

/// Loss and figures of one batch (train decides dropout).
pub fn batch_loss(model: &Model, batch: &Batch, train: bool) -> (Tensor, Stats) {
    match batch {
        Batch::Sft(b) => {
            let hidden = model.forward(&b.input_ids, Some(&b.valid), None, train);
            let (loss, stats) = sft_loss(&model.logits(&hidden), &b.targets, &b.loss_mask);
            let stats = Stats {
                loss: stats.loss,
                tokens: stats.tokens,
                ..Stats::default()
            };
            (loss, stats)
        }
        Batch::Rm(b) => {
            let hidden = model.forward(&b.input_ids, Some(&b.valid), None, train);
            // Left padding puts every sequence's last token (EOS) in the last column.
            let last = hidden.size()[1] - 1;
            let rewards = model.scores(&hidden.select(1, last)).to_kind(Kind::Float);
            let (loss, rank) = kwise_loss(&rewards, &b.groups);
            let stats = Stats {
                loss: loss.double_value(&[]),
                tokens: b.input_ids.size()[0],
                comparisons: Some(rank.pairs),
                accuracy: Some(rank.accuracy),
                margin: Some(rank.mean_margin),
                ..Stats::default()
            };
            (loss, stats)
        }
        Batch::Dpo(b, objective) => {
            let logps = policy_logps(model, b, train);
            let device = model.device();
            let (reference, tokens) = (
                b.reference.to_device(device),
                b.response_tokens.to_device(device),
            );
            let (loss, dpo) = dpo_loss(&logps, &reference, &tokens, &b.groups, objective);
            let stats = Stats {
                loss: dpo.loss,
                tokens: b.sequences.input_ids.size()[0],
                comparisons: Some(dpo.pairs),
                accuracy: Some(dpo.accuracy),
                margin: Some(dpo.margin),
                chosen_reward: Some(dpo.chosen_reward),
                rejected_reward: Some(dpo.rejected_reward),
                implicit_kl: Some(dpo.implicit_kl),
                chosen_nll: Some(dpo.chosen_nll),
                ..Stats::default()
            };
            (loss, stats)
        }
    }
}

/// Each row's response log-probability under `model` ([N] f32 with the graph).
fn policy_logps(model: &Model, batch: &DpoBatch, train: bool) -> Tensor {
    let b = &batch.sequences;
    let hidden = model.forward(&b.input_ids, Some(&b.valid), None, train);
    sequence_logps(&model.logits(&hidden), &b.targets, &b.loss_mask)
}

/// The trainer's files in a checkpoint folder: `model.safetensors` and
/// `model-optimizer.safetensors`.
const STATE: &str = "model";

/// The schedule's position in a checkpoint folder (see [`Trainer::scheduled_steps`]).
const SCHEDULE: &str = "schedule.json";

pub struct Trainer {
    model: Model,
    optimizer: AdamW,
    optimizer_config: OptimizerConfig,
    schedule: ScheduleConfig,
    steps_per_epoch: u64,
    total_steps: u64,
    /// Steps taken or refused as non-finite: where the schedule stands. A refused step
    /// consumes its batch, so the schedule moves on with the data, and the last batch
    /// still gets the schedule's last rate.
    scheduled: u64,
    /// Fault injection: the next step's loss is NaN (see [`Trainer::poison_next_step`]).
    #[cfg(any(test, feature = "fault-injection"))]
    poison_next_step: bool,
    /// Seeds libtorch's generator before every step (see [`dropout_seed`]).
    seed: u64,
}

/// The seed of libtorch's global generator for optimizer step `step` (1-based: the step
/// taken after `step - 1` steps) of a trainer seeded with `seed`: the step-th output of a
/// SplitMix64 stream of its own. A step that is refused (a non-finite loss) leaves the
/// step count, so the step retried after it draws the same masks.
pub fn dropout_seed(seed: u64, step: u64) -> i64 {
    const STREAM: u64 = 0xd20f;
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    let start = (seed ^ STREAM).wrapping_add(step.wrapping_sub(1).wrapping_mul(GAMMA));
    Rng::new(start).next_u64() as i64
}

impl Trainer {
    /// Fault injection (tests and the `fault-injection` feature only): make the next
    /// training step's loss NaN, to test how callers handle one.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn poison_next_step(&mut self) {
        self.poison_next_step = true;
    }

    pub fn new(
        model: Model,
        optimizer: &OptimizerConfig,
        schedule: &ScheduleConfig,
        steps_per_epoch: u64,
        total_steps: u64,
    ) -> Trainer {
        let params = model.trainable();
        Trainer {
            optimizer: AdamW::new(params, optimizer),
            model,
            optimizer_config: optimizer.clone(),
            schedule: schedule.clone(),
            steps_per_epoch: steps_per_epoch.max(1),
            total_steps: total_steps.max(1),
            scheduled: 0,
            #[cfg(any(test, feature = "fault-injection"))]
            poison_next_step: false,
            seed: 0,
        }
    }

    /// The seed that, with the step number, fixes each step's dropout masks (0 unless
    /// set; see [`dropout_seed`]).
    pub fn set_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    /// Steps taken or refused as non-finite: the schedule's position. Ahead of
    /// [`Trainer::steps`] by the refused ones.
    pub fn scheduled_steps(&self) -> u64 {
        self.scheduled
    }

    /// The learning rate the next step will use.
    pub fn lr(&self) -> f64 {
        self.lr_at(self.scheduled)
    }

    /// The learning rate after `steps` optimizer steps.
    pub fn lr_at(&self, steps: u64) -> f64 {
        let base = self.optimizer_config.lr;
        self.schedule
            .lr(base, steps, self.steps_per_epoch, self.total_steps)
    }

    /// Weights, optimizer state (moments and step count) and the schedule's position into
    /// the checkpoint folder `dir`.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        crate::checkpoint::save_trainable(dir, STATE, &self.model, &self.optimizer)?;
        let position = serde_json::json!({ "scheduled_steps": self.scheduled });
        crate::model::weights::write_atomic(&dir.join(SCHEDULE), position.to_string().as_bytes())
    }

    /// Restores what [`Trainer::save_state`] wrote; errors name the file and tensor. A
    /// folder without the schedule's position (written before it was saved) puts the
    /// schedule at the optimizer's step count.
    pub fn load_state(&mut self, dir: &Path) -> Result<()> {
        crate::checkpoint::load_trainable(dir, STATE, &mut self.model, &mut self.optimizer)?;
        let path = dir.join(SCHEDULE);
        self.scheduled = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["scheduled_steps"].as_u64())
                .ok_or_else(|| Error::format(&path, "needs `scheduled_steps`"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.optimizer.steps(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Ok(())
    }

    /// One optimizer step over the micro-batches of one batch.
    pub fn train_step(&mut self, micro_batches: &[Batch]) -> Result<Stats> {
        let total: f64 = micro_batches.iter().map(Batch::weight).sum();
        if total <= 0.0 {
            return Err(Error::Invalid(
                "a training step needs at least one loss token or prompt".into(),
            ));
        }
        self.optimizer.zero_grad();
        // Dropout masks from (seed, step) alone: what makes a resumed run exact. Without
        // dropout nothing draws from the generator, and it is left alone.
        if self.model.draws_dropout() {
            tch::manual_seed(dropout_seed(self.seed, self.steps() + 1));
        }
        #[cfg(any(test, feature = "fault-injection"))]
        let poison = std::mem::take(&mut self.poison_next_step);
        let mut stats = Stats::default();
        for batch in micro_batches {
            let weight = batch.weight();
            #[allow(unused_mut)] // mutated by fault injection only
            let (mut loss, mut batch_stats) = batch_loss(&self.model, batch, true);
            #[cfg(any(test, feature = "fault-injection"))]
            if poison {
                loss *= f64::NAN;
                batch_stats.loss = f64::NAN;
            }
            // With gradient checkpointing, also the blocks' share of the gradients, before
            // the next micro-batch's forward (one micro-batch's block inputs at a time).
            crate::model::backward(&(loss * (weight / total)), &[&self.model]);
            stats.add(&batch_stats, weight, total);
        }
        let step = self.steps() + 1;
        let lr = self.lr();
        // Taken or refused, the step's batch is consumed: the schedule moves on.
        self.scheduled += 1;
        let non_finite = |what: String| Error::NonFinite { what, step };
        if !stats.loss.is_finite() {
            self.optimizer.zero_grad();
            return Err(non_finite(format!("loss ({})", stats.loss)));
        }
        let norm = self
            .optimizer
            .clip_grad_norm(self.optimizer_config.max_grad_norm);
        if !norm.is_finite() {
            self.optimizer.zero_grad();
            return Err(non_finite(format!("gradient norm ({norm})")));
        }
        stats.grad_norm = Some(norm);
        self.optimizer.step(lr);
        stats.lr = Some(lr);
        Ok(stats)
    }

    /// Loss and figures over held-out batches, without dropout or gradients.
    pub fn evaluate(&self, batches: &[Batch]) -> Stats {
        evaluate(&self.model, batches)
    }

    /// Each row's response log-probability under the model as it is (no dropout, no
    /// gradients), per DPO batch: the reference log-probs a DPO stage computes before its
    /// first step, when the policy is still the reference.
    pub fn sequence_logps(&self, batches: &[Batch]) -> Result<Vec<Vec<f32>>> {
        let _guard = tch::no_grad_guard();
        batches
            .iter()
            .map(|batch| match batch {
                Batch::Dpo(b, _) => {
                    let logps = policy_logps(&self.model, b, false).to_device(tch::Device::Cpu);
                    Ok(Vec::<f32>::try_from(&logps).expect("f32 log-probs"))
                }
                _ => Err(Error::Invalid(
                    "sequence log-probs are computed for DPO batches only".into(),
                )),
            })
            .collect()
    }

    /// Mean score of left-padded (ids, valid) batches of reward-model inputs, such as a
    /// reward model's demonstrations, for its bias.
    pub fn mean_score(&self, batches: &[(Tensor, Tensor)]) -> f64 {
        let (mut sum, mut n) = (0.0, 0i64);
        for (ids, mask) in batches {
            let scores = last_token_scores(&self.model, ids, mask);
            sum += scores.sum(Kind::Double).double_value(&[]);
            n += scores.size()[0];
        }
        sum / n.max(1) as f64
    }

    /// Shifts the scalar head's bias so that the mean score of `sequences` (left-padded
    /// (ids, valid) batches, such as the demonstrations) becomes 0, as InstructGPT
    /// normalises its reward model; returns the mean before the shift.
    pub fn center_scores(&mut self, sequences: &[(Tensor, Tensor)]) -> f64 {
        let mean = self.mean_score(sequences);
        let bias = self.model.score_bias() - mean;
        self.model.set_score_bias(bias);
        mean
    }
}

/// Loss and figures of `model` over batches, without dropout or gradients.
pub fn evaluate(model: &Model, batches: &[Batch]) -> Stats {
    let total: f64 = batches.iter().map(Batch::weight).sum();
    let mut stats = Stats::default();
    let _guard = tch::no_grad_guard();
    for batch in batches {
        let (_, batch_stats) = batch_loss(model, batch, false);
        stats.add(&batch_stats, batch.weight(), total.max(1e-12));
    }
    stats
}

/// A scalar-head model's score of each left-padded sequence ([B] f32 on the CPU), read at
/// the last column where left padding puts every sequence's last token.
pub fn last_token_scores(model: &Model, ids: &Tensor, valid: &Tensor) -> Tensor {
    assert_eq!(model.head(), Head::Scalar);
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let hidden = model.forward(
        &ids.to_device(device),
        Some(&valid.to_device(device)),
        None,
        false,
    );
    model
        .scores(&hidden.select(1, hidden.size()[1] - 1))
        .to_kind(Kind::Float)
        .to_device(tch::Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SftBatch;
    use crate::device::DType;
    use crate::model::Head;

    fn trainer() -> Trainer {
        trainer_with(&ScheduleConfig::default(), 4, 8)
    }

    fn trainer_with(schedule: &ScheduleConfig, per_epoch: u64, total: u64) -> Trainer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
        let model = Model::load(&dir, Head::LanguageModel, DType::F32, tch::Device::Cpu)
            .unwrap()
            .0;
        let config = OptimizerConfig {
            lr: 1e-2,
            ..OptimizerConfig::default()
        };
        Trainer::new(model, &config, schedule, per_epoch, total)
    }

    /// A refused (NaN) step consumes its batch, so the schedule moves on with the data: the
    /// last of four batches gets the floor although only three steps were taken, and a
    /// checkpoint keeps that position.
    #[test]
    fn a_refused_step_moves_the_schedule_on() {
        let schedule = ScheduleConfig {
            per: crate::schedule::DecayUnit::Step,
            ..ScheduleConfig::default()
        };
        let mut t = trainer_with(&schedule, 4, 4);
        let first = t.train_step(&[batch(0)]).unwrap().lr.unwrap();
        assert_eq!(first, t.lr_at(0));
        t.poison_next_step();
        assert!(t.train_step(&[batch(1)]).is_err());
        assert_eq!((t.steps(), t.scheduled_steps()), (1, 2));
        assert_eq!(t.lr(), t.lr_at(2));
        let dir = std::env::temp_dir().join(format!("rlhf-train-sched-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        t.save_state(&dir).unwrap();
        let mut resumed = trainer_with(&schedule, 4, 4);
        resumed.load_state(&dir).unwrap();
        assert_eq!((resumed.steps(), resumed.scheduled_steps()), (1, 2));
        let _ = std::fs::remove_dir_all(&dir);
        t.train_step(&[batch(2)]).unwrap();
        let last = t.train_step(&[batch(3)]).unwrap().lr.unwrap();
        assert!((last - 1e-3).abs() < 1e-15, "the last batch's rate {last}");
    }

    fn batch(offset: i64) -> Batch {
        let input_ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([1, 6]) + offset;
        Batch::Sft(SftBatch {
            targets: input_ids.roll([-1], [1]),
            loss_mask: Tensor::from_slice(&[0f32, 1., 1., 1., 1., 0.]).view([1, 6]),
            valid: Tensor::ones_like(&input_ids),
            input_ids,
            tokens: 4,
        })
    }

    fn weights(t: &Trainer) -> Vec<(String, Tensor)> {
        let mut w: Vec<(String, Tensor)> = t
            .model()
            .var_store()
            .variables()
            .into_iter()
            .map(|(n, v)| (n, v.copy()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    }

    fn same(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> bool {
        a.iter().zip(b).all(|((_, x), (_, y))| x.equal(y))
    }

    #[test]
    fn a_non_finite_step_is_refused_and_changes_nothing() {
        let mut t = trainer();
        t.train_step(&[batch(0)]).unwrap();
        let before = weights(&t);
        t.poison_next_step();
        match t.train_step(&[batch(1)]) {
            Err(Error::NonFinite { what, step }) => {
                assert!(what.starts_with("loss (NaN)"), "{what}");
                assert_eq!(step, 2);
            }
            other => panic!("expected a non-finite error, got {other:?}"),
        }
        assert!(
            same(&before, &weights(&t)),
            "a refused step moved the weights"
        );
        assert_eq!(t.steps(), 1);
        // The poison lasts one step; the next one trains.
        t.train_step(&[batch(1)]).unwrap();
        assert_eq!(t.steps(), 2);
        assert!(!same(&before, &weights(&t)));
    }

    #[test]
    fn center_scores_shifts_the_bias_to_a_zero_mean() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny-score");
        let mut model = Model::load(&dir, Head::Scalar, DType::F32, tch::Device::Cpu)
            .unwrap()
            .0;
        model.set_score_bias(0.25);
        let mut t = Trainer::new(
            model,
            &OptimizerConfig::default(),
            &ScheduleConfig::default(),
            1,
            1,
        );
        let ids = Tensor::from_slice(&[0i64, 5, 6, 7, 8, 9, 10, 11]).view([2, 4]);
        let valid = Tensor::from_slice(&[0i64, 1, 1, 1, 1, 1, 1, 1]).view([2, 4]);
        let sequences = [(ids, valid)];
        let mean = t.mean_score(&sequences);
        assert_eq!(t.center_scores(&sequences), mean);
        assert_eq!(t.model().score_bias(), 0.25 - mean);
        assert!(t.mean_score(&sequences).abs() < 1e-5);
    }

    #[test]
    fn each_step_has_its_own_dropout_seed() {
        let seeds: Vec<i64> = (1..=4).map(|step| dropout_seed(7, step)).collect();
        assert_eq!(
            seeds,
            (1..=4)
                .map(|step| dropout_seed(7, step))
                .collect::<Vec<_>>()
        );
        let mut distinct = seeds.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{seeds:?}");
        assert_ne!(dropout_seed(7, 1), dropout_seed(8, 1));
        // The step-th output of one SplitMix64 stream.
        let mut stream = Rng::new(7 ^ 0xd20f);
        let outputs: Vec<i64> = (0..4).map(|_| stream.next_u64() as i64).collect();
        assert_eq!(seeds, outputs);
    }

    #[test]
    fn saved_state_continues_bit_for_bit() {
        let dir = std::env::temp_dir().join(format!("rlhf-train-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = trainer();
        t.train_step(&[batch(0)]).unwrap();
        t.train_step(&[batch(1)]).unwrap();
        t.save_state(&dir).unwrap();
        t.train_step(&[batch(2)]).unwrap();
        let mut resumed = trainer();
        resumed.load_state(&dir).unwrap();
        assert_eq!(resumed.steps(), 2);
        assert_eq!(resumed.lr(), t.lr_at(2));
        resumed.train_step(&[batch(2)]).unwrap();
        assert!(same(&weights(&t), &weights(&resumed)));
        // A truncated optimizer file is an error naming it.
        let path = dir.join("model-optimizer.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = trainer().load_state(&dir).unwrap_err().to_string();
        assert!(e.contains("model-optimizer.safetensors"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
