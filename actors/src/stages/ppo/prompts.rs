//! What PPO samples from: the prompts (templated, tokenized, over-long ones skipped) in a
//! fresh shuffled order each pass, and the pretraining text PPO-ptx mixes in.

use crate::stages::pretrain::text_sequences;
use crate::stages::run_dir::RunDir;
use rlhf::config::{DataKeys, PpoStage};
use rlhf::data::{
    bos_len, fit_prompt, read_pretrain, read_prompts, sample_batch, Fitted, SftBatch, SftSequence,
};
use rlhf::rng::Rng;
use rlhf::text_side::TextSide;
use rlhf::tokenizer::Tokenizer;
use std::path::Path;

/// The prompt order's random stream, derived from the run's seed.
const PROMPT_STREAM: u64 = 0x51a;

/// Prompts in a fresh shuffled order each pass over the set.
pub struct PromptCycle {
    rng: Rng,
    order: Vec<usize>,
}

impl PromptCycle {
    pub fn new(seed: u64) -> PromptCycle {
        PromptCycle {
            rng: Rng::new(seed ^ PROMPT_STREAM),
            order: Vec::new(),
        }
    }

    /// The next `size` prompts of the cycle, each repeated `samples` times in a row (the
    /// learner's leave-one-out groups): `size * samples` rows.
    pub fn next(&mut self, prompts: &[Vec<i64>], size: usize, samples: usize) -> Vec<Vec<i64>> {
        let mut rows = Vec::with_capacity(size * samples);
        for _ in 0..size {
            if self.order.is_empty() {
                self.order = (0..prompts.len()).collect();
                self.rng.shuffle(&mut self.order);
            }
            let prompt = &prompts[self.order.pop().expect("refilled")];
            rows.extend(std::iter::repeat_n(prompt, samples).cloned());
        }
        rows
    }
}

/// Prompt token ids (in the run's chat template) and raw texts; prompts over
/// `max_prompt_len` tokens are skipped or cut (`truncate`) and counted.
pub fn tokenize_prompts(
    stage: &PpoStage,
    text: &TextSide,
    dir: &mut RunDir,
) -> anyhow::Result<(Vec<Vec<i64>>, Vec<String>)> {
    let prompts = read_prompts(&stage.prompts, &text.template, &stage.keys)?;
    let mut kept = Vec::with_capacity(prompts.len());
    let mut fitted = Fitted::default();
    for p in prompts.iter() {
        let ids = text.encode_prompt(&p.text)?;
        let keep = bos_len(&ids, &text.tokenizer);
        let fit = fit_prompt(ids, stage.max_prompt_len, stage.truncate, keep);
        fitted.count(fit.map(|(ids, cut)| ((ids, p.raw.clone()), cut)), &mut kept);
    }
    let (kept, raw): (Vec<Vec<i64>>, Vec<String>) = kept.into_iter().unzip();
    let limit = ("max_prompt_len", stage.max_prompt_len);
    dir.log_fitted("ppo", "train", ("prompts", kept.len()), fitted, limit)?;
    anyhow::ensure!(
        !kept.is_empty(),
        "{}: no prompt fits ppo.max_prompt_len",
        stage.prompts.display()
    );
    Ok((kept, raw))
}

/// Pretraining documents (their `text` field under `keys`) as token chunks of at most
/// `len` tokens.
pub fn pretrain_sequences(
    path: &Path,
    keys: &DataKeys,
    tokenizer: &Tokenizer,
    len: usize,
) -> anyhow::Result<Vec<SftSequence>> {
    let seqs = text_sequences(&read_pretrain(path, keys)?, tokenizer, len)?;
    anyhow::ensure!(!seqs.is_empty(), "{}: no pretraining text", path.display());
    Ok(seqs)
}

/// PPO-ptx's pretraining batches for one update: `count` (one per optimizer step) batches
/// of `size` sequences drawn from `seqs` with `rng`, and the loss tokens they hold in all.
pub fn ptx_batches(
    seqs: &[SftSequence],
    count: usize,
    size: usize,
    pad_id: i64,
    rng: &mut Rng,
) -> (Vec<SftBatch>, u64) {
    let batches: Vec<SftBatch> = (0..count)
        .map(|_| sample_batch(seqs, size, pad_id, rng).0)
        .collect();
    let tokens = batches.iter().map(|b| b.tokens as u64).sum();
    (batches, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One fresh batch per optimizer step, counted by loss tokens (a sequence of n tokens
    /// predicts n - 1 of them).
    #[test]
    fn each_step_gets_its_own_pretraining_batch() {
        let seqs: Vec<SftSequence> = (0..20)
            .map(|i| SftSequence::new((0..2 + i % 5).map(|t| 100 * i + t).collect(), 0))
            .collect();
        let (batches, tokens) = ptx_batches(&seqs, 4, 3, 0, &mut Rng::new(7));
        assert_eq!(batches.len(), 4);
        let loss_tokens: f64 = batches
            .iter()
            .map(|b| b.loss_mask.sum(tch::Kind::Double).double_value(&[]))
            .sum();
        assert_eq!(tokens as f64, loss_tokens);
        let valid: i64 = batches
            .iter()
            .map(|b| b.valid.sum(tch::Kind::Int64).int64_value(&[]))
            .sum();
        assert_eq!(
            tokens as i64,
            valid - 12,
            "one unpredicted token per sequence"
        );
        for pair in batches.windows(2) {
            assert!(!pair[0].input_ids.equal(&pair[1].input_ids));
        }
    }

    #[test]
    fn a_cycle_repeats_each_prompt_for_its_samples_and_covers_the_set_once_per_pass() {
        let prompts: Vec<Vec<i64>> = (0..5).map(|i| vec![i]).collect();
        let mut cycle = PromptCycle::new(3);
        let rows = cycle.next(&prompts, 5, 3);
        assert_eq!(rows.len(), 15);
        for group in rows.chunks(3) {
            assert!(group.iter().all(|r| r == &group[0]), "{rows:?}");
        }
        let mut firsts: Vec<i64> = rows.chunks(3).map(|g| g[0][0]).collect();
        firsts.sort_unstable();
        assert_eq!(firsts, vec![0, 1, 2, 3, 4]);
    }
}
