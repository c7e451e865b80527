//! Collation of token sequences into left-padded tensors; held-out splits and shuffled
//! index batches.

use tch::{Kind, Tensor};

use super::rm::pairs;
use super::tokenize::{RankedSequences, SftSequence};
use crate::generate::left_pad;
use crate::rng::Rng;

/// A collated SFT batch; B sequences left-padded to the longest, T.
#[derive(Debug)]
pub struct SftBatch {
    /// [B, T] int64, left-padded.
    pub input_ids: Tensor,
    /// [B, T] int64: 1 on real tokens, 0 on padding.
    pub valid: Tensor,
    /// [B, T] int64: `input_ids` shifted left by one (the token each position predicts),
    /// the pad id in the last column.
    pub targets: Tensor,
    /// [B, T] f32: 1 where the target is a response token (EOS included) or in one of the
    /// sequence's `prompt_spans`; with `loss_on_prompt` also where it is a prompt token
    /// after the first. Never on padding
    /// (neither a padding input nor a padding target).
    pub loss_mask: Tensor,
    /// Sum of `loss_mask`: the number of predicted tokens.
    pub tokens: i64,
}

impl SftBatch {
    /// The batch with every tensor on `device`.
    pub fn to_device(&self, device: tch::Device) -> SftBatch {
        SftBatch {
            input_ids: self.input_ids.to_device(device),
            valid: self.valid.to_device(device),
            targets: self.targets.to_device(device),
            loss_mask: self.loss_mask.to_device(device),
            tokens: self.tokens,
        }
    }
}

/// Collates SFT sequences into one left-padded batch (tensors on the CPU).
pub fn collate_sft(seqs: &[&SftSequence], pad_id: i64, loss_on_prompt: bool) -> SftBatch {
    let rows: Vec<Vec<i64>> = seqs.iter().map(|s| s.ids.clone()).collect();
    let (input_ids, valid) = left_pad(&rows, pad_id);
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let targets = if width == 0 {
        input_ids.copy()
    } else {
        let last = Tensor::full(
            [seqs.len() as i64, 1],
            pad_id,
            (Kind::Int64, input_ids.device()),
        );
        Tensor::cat(&[input_ids.narrow(1, 1, width as i64 - 1), last], 1)
    };
    let mut mask = vec![0f32; seqs.len() * width];
    let mut tokens = 0i64;
    for (row, seq) in mask.chunks_mut(width.max(1)).zip(seqs) {
        let pad = width - seq.ids.len();
        // Position pad + j - 1 (a real token) predicts token j of the sequence, j >= 1.
        let first = if loss_on_prompt {
            1
        } else {
            seq.prompt_len.max(1)
        };
        let spans = seq.prompt_spans.iter().filter(|_| !loss_on_prompt);
        for j in spans.cloned().flatten().chain(first..seq.ids.len()) {
            row[pad + j - 1] = 1.0;
            tokens += 1;
        }
    }
    let loss_mask = Tensor::from_slice(&mask).view([seqs.len() as i64, width as i64]);
    SftBatch {
        input_ids,
        valid,
        targets,
        loss_mask,
        tokens,
    }
}

/// `size` sequences drawn from `seqs` with replacement (one `rng.below` each, in order),
/// collated as pretraining text (the loss on every token after the first), with the
/// batch's real (non-pad) token count, the sum of `valid`, taken from the sequences'
/// lengths: PPO-ptx's pretraining batch. Panics when `seqs` is empty.
pub fn sample_batch(
    seqs: &[SftSequence],
    size: usize,
    pad_id: i64,
    rng: &mut Rng,
) -> (SftBatch, u64) {
    let picked: Vec<&SftSequence> = (0..size).map(|_| &seqs[rng.below(seqs.len())]).collect();
    let real_tokens = picked.iter().map(|s| s.ids.len() as u64).sum();
    (collate_sft(&picked, pad_id, true), real_tokens)
}

/// A collated reward-model batch: the rows of all its prompts, N in all.
#[derive(Debug)]
pub struct RmBatch {
    /// [N, T] int64, left-padded: every row's last token (EOS) is in column T-1, where
    /// the reward is read.
    pub input_ids: Tensor,
    /// [N, T] int64: 1 on real tokens, 0 on padding.
    pub valid: Tensor,
    /// Per prompt: its rows in `input_ids`, best to worst.
    pub groups: Vec<Vec<usize>>,
    /// Number of pairwise comparisons: the sum of C(K, 2) over the prompts.
    pub comparisons: usize,
}

/// Collates ranked groups into one left-padded batch (tensors on the CPU); each group's
/// rows are consecutive and keep their best-to-worst order.
pub fn collate_rm(items: &[&RankedSequences], pad_id: i64) -> RmBatch {
    let mut rows = Vec::new();
    let mut groups = Vec::with_capacity(items.len());
    let mut comparisons = 0;
    for item in items {
        groups.push((rows.len()..rows.len() + item.rows.len()).collect());
        comparisons += pairs(item.rows.len());
        rows.extend(item.rows.iter().cloned());
    }
    let (input_ids, valid) = left_pad(&rows, pad_id);
    RmBatch {
        input_ids,
        valid,
        groups,
        comparisons,
    }
}

/// A collated DPO batch: the rows of all its prompts, N in all, as SFT sequences trained on
/// their responses, with each row's reference log-probability.
#[derive(Debug)]
pub struct DpoBatch {
    /// The rows left-padded, `loss_mask` on every response token (EOS included).
    pub sequences: SftBatch,
    /// Per prompt: its rows, best to worst.
    pub groups: Vec<Vec<usize>>,
    /// [N] f32: response tokens per row (IPO's normaliser).
    pub response_tokens: Tensor,
    /// [N] f32: each row's response log-probability under the reference policy; zeros
    /// until the caller fills them in.
    pub reference: Tensor,
}

/// Collates ranked groups into one DPO batch (tensors on the CPU, reference log-probs 0);
/// each group's rows are consecutive and keep their best-to-worst order.
pub fn collate_dpo(items: &[&RankedSequences], pad_id: i64) -> DpoBatch {
    let mut rows = Vec::new();
    let mut groups = Vec::with_capacity(items.len());
    for item in items {
        groups.push((rows.len()..rows.len() + item.rows.len()).collect());
        rows.extend(
            item.rows
                .iter()
                .map(|ids| SftSequence::new(ids.clone(), item.prompt_len)),
        );
    }
    let tokens: Vec<f32> = rows
        .iter()
        .map(|s| (s.ids.len() - s.prompt_len) as f32)
        .collect();
    let refs: Vec<&SftSequence> = rows.iter().collect();
    DpoBatch {
        sequences: collate_sft(&refs, pad_id, false),
        groups,
        reference: Tensor::zeros([tokens.len() as i64], (Kind::Float, tch::Device::Cpu)),
        response_tokens: Tensor::from_slice(&tokens),
    }
}

/// Splits `items` into (train, held out) at random: `round(len * fraction)` items are held
/// out, but at least one on each side when `len >= 2` and `fraction > 0` (`fraction` <= 0
/// or NaN holds nothing out; a single item always goes to train). Which items are held out
/// is drawn from `rng`; both sides keep the items' original order.
pub fn split_holdout<T>(items: Vec<T>, fraction: f64, rng: &mut Rng) -> (Vec<T>, Vec<T>) {
    let len = items.len();
    let held = if len >= 2 && fraction > 0.0 {
        ((len as f64 * fraction.min(1.0)).round() as usize).clamp(1, len - 1)
    } else {
        0
    };
    let mut order: Vec<usize> = (0..len).collect();
    rng.shuffle(&mut order);
    let mut held_out = vec![false; len];
    for &i in &order[..held] {
        held_out[i] = true;
    }
    let (mut train, mut test) = (Vec::with_capacity(len - held), Vec::with_capacity(held));
    for (item, out) in items.into_iter().zip(held_out) {
        if out {
            test.push(item);
        } else {
            train.push(item);
        }
    }
    (train, test)
}

/// Index batches over `0..len` of `batch_size` (> 0) indices each, the last one partial
/// when `len` is not a multiple; in order, or shuffled when an `rng` is given.
///
/// # Panics
/// When `batch_size` is 0.
pub fn batches(len: usize, batch_size: usize, rng: Option<&mut Rng>) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batches: batch_size must be positive");
    let mut order: Vec<usize> = (0..len).collect();
    if let Some(rng) = rng {
        rng.shuffle(&mut order);
    }
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &Tensor) -> Vec<Vec<i64>> {
        Vec::<Vec<i64>>::try_from(t).unwrap()
    }

    fn rows_f32(t: &Tensor) -> Vec<Vec<f32>> {
        assert_eq!(t.kind(), Kind::Float);
        Vec::<Vec<f32>>::try_from(t).unwrap()
    }

    #[test]
    fn collate_sft_left_pads_shifts_and_masks() {
        // Prompt [5, 6], response [7, 8], EOS 0; prompt [9, 10, 11], response [], EOS 0.
        let a = SftSequence::new(vec![5, 6, 7, 8, 0], 2);
        let b = SftSequence::new(vec![9, 10, 11, 0], 3);
        let batch = collate_sft(&[&a, &b], 0, false);
        assert_eq!(rows(&batch.input_ids), [[5, 6, 7, 8, 0], [0, 9, 10, 11, 0]]);
        assert_eq!(rows(&batch.valid), [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]);
        assert_eq!(rows(&batch.targets), [[6, 7, 8, 0, 0], [9, 10, 11, 0, 0]]);
        // a: positions 1..=3 predict 7, 8, EOS; b: position 3 predicts EOS.
        assert_eq!(
            rows_f32(&batch.loss_mask),
            [[0., 1., 1., 1., 0.], [0., 0., 0., 1., 0.]]
        );
        assert_eq!(batch.tokens, 4);

        // With the prompt: every real position but the last; b's position 0 is padding
        // (its target 9 is not predicted from anything).
        let batch = collate_sft(&[&a, &b], 0, true);
        assert_eq!(
            rows_f32(&batch.loss_mask),
            [[1., 1., 1., 1., 0.], [0., 1., 1., 1., 0.]]
        );
        assert_eq!(batch.tokens, 7);
        assert_eq!(batch.loss_mask.sum(Kind::Float).double_value(&[]), 7.0);

        // A distinct pad id shows where padding lands.
        let batch = collate_sft(&[&b, &a], 1, false);
        assert_eq!(rows(&batch.input_ids), [[1, 9, 10, 11, 0], [5, 6, 7, 8, 0]]);
        assert_eq!(rows(&batch.targets), [[9, 10, 11, 0, 1], [6, 7, 8, 0, 1]]);
        assert_eq!(batch.tokens, 4);

        let empty = collate_sft(&[], 0, false);
        assert_eq!(empty.input_ids.size(), [0, 0]);
        assert_eq!(empty.targets.size(), [0, 0]);
        assert_eq!(empty.tokens, 0);
    }

    #[test]
    fn collate_rm_aligns_eos_and_groups_rows() {
        let one = RankedSequences {
            rows: vec![vec![5, 6, 7, 0], vec![5, 6, 0]],
            prompt_len: 2,
        };
        let two = RankedSequences {
            rows: vec![vec![9, 8, 0], vec![9, 7, 7, 7, 0], vec![9, 6, 0]],
            prompt_len: 1,
        };
        let batch = collate_rm(&[&one, &two], 0);
        assert_eq!(
            rows(&batch.input_ids),
            [
                [0, 5, 6, 7, 0],
                [0, 0, 5, 6, 0],
                [0, 0, 9, 8, 0],
                [9, 7, 7, 7, 0],
                [0, 0, 9, 6, 0],
            ]
        );
        assert_eq!(
            rows(&batch.valid),
            [
                [0, 1, 1, 1, 1],
                [0, 0, 1, 1, 1],
                [0, 0, 1, 1, 1],
                [1, 1, 1, 1, 1],
                [0, 0, 1, 1, 1],
            ]
        );
        assert_eq!(batch.groups, [vec![0, 1], vec![2, 3, 4]]);
        assert_eq!(batch.comparisons, 1 + 3);
    }

    #[test]
    fn split_holdout_is_deterministic_and_keeps_both_sides() {
        let items: Vec<u32> = (0..10).collect();
        let (train, test) = split_holdout(items.clone(), 0.2, &mut Rng::new(7));
        assert_eq!((train.len(), test.len()), (8, 2));
        let mut all: Vec<u32> = train.iter().chain(&test).copied().collect();
        all.sort();
        assert_eq!(all, items);
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        assert!(test.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            split_holdout(items.clone(), 0.2, &mut Rng::new(7)),
            (train, test)
        );
        let sizes = |n: u32, f: f64| {
            let (a, b) = split_holdout((0..n).collect::<Vec<_>>(), f, &mut Rng::new(1));
            (a.len(), b.len())
        };
        assert_eq!(sizes(2, 0.01), (1, 1));
        assert_eq!(sizes(3, 0.99), (1, 2));
        assert_eq!(sizes(3, 5.0), (1, 2));
        assert_eq!(sizes(10, 0.0), (10, 0));
        assert_eq!(sizes(10, -1.0), (10, 0));
        assert_eq!(sizes(10, f64::NAN), (10, 0));
        assert_eq!(sizes(1, 0.5), (1, 0));
        assert_eq!(sizes(0, 0.5), (0, 0));
    }

    #[test]
    fn batches_cover_every_index_once() {
        assert_eq!(batches(7, 3, None), [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(batches(0, 3, None), Vec::<Vec<usize>>::new());
        let shuffled = batches(7, 3, Some(&mut Rng::new(3)));
        assert_eq!(shuffled.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        let mut all: Vec<usize> = shuffled.concat();
        all.sort();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
        assert_eq!(shuffled, batches(7, 3, Some(&mut Rng::new(3))));
        assert_ne!(
            batches(50, 50, Some(&mut Rng::new(3))),
            batches(50, 50, None)
        );
    }

    #[test]
    fn sample_batch_draws_in_order_and_counts_real_tokens() {
        let seqs: Vec<SftSequence> = [vec![1i64, 2, 3], vec![4, 5], vec![6, 7, 8, 9, 10]]
            .into_iter()
            .map(|ids| SftSequence::new(ids, 1))
            .collect();
        let mut rng = Rng::new(5);
        let (batch, real) = sample_batch(&seqs, 4, 0, &mut rng);
        // The same draws, by hand.
        let mut again = Rng::new(5);
        let picked: Vec<&SftSequence> = (0..4).map(|_| &seqs[again.below(3)]).collect();
        let expected = collate_sft(&picked, 0, true);
        assert!(batch.input_ids.equal(&expected.input_ids));
        assert!(batch.loss_mask.equal(&expected.loss_mask));
        assert_eq!(batch.tokens, expected.tokens);
        assert_eq!(rng.next_u64(), again.next_u64());
        let lengths: u64 = picked.iter().map(|s| s.ids.len() as u64).sum();
        assert_eq!(real, lengths);
        assert_eq!(real as i64, batch.valid.sum(Kind::Int64).int64_value(&[]));
    }
}
