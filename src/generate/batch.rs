//! What goes into a generation and what comes out: the options, left-padded prompt
//! tensors, and the episodes.

use crate::sampling::Sampling;
use tch::Tensor;

/// What to generate and when to stop.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerateOptions {
    pub sampling: Sampling,
    pub max_new_tokens: i64,
    /// Rows stop after producing any of these tokens (a model may have several, as Llama 3
    /// and Qwen instruct models do); empty generates exactly `max_new_tokens`.
    pub eos_token_ids: Vec<i64>,
    /// Written after a row has stopped.
    pub pad_token_id: i64,
    /// Static batching: fill the rows, run until the last of them ends (finished rows stay
    /// in the batch, computing padding), then fill them again; instead of letting finished
    /// rows leave and refilling them at once. The same tokens, for measuring the saving.
    pub static_batch: bool,
}

/// One finished episode, as [`generate_each`] hands it on.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    /// The prompt's index in the call.
    pub index: usize,
    /// The generated tokens, EOS included when the episode stopped at one.
    pub tokens: Vec<i64>,
    pub logprobs: Vec<f32>,
}

/// Generated continuations in prompt order, [B, N] each, N <= max_new_tokens.
#[derive(Debug)]
pub struct Generation {
    /// Token ids; `pad_token_id` after a row's EOS.
    pub tokens: Tensor,
    /// Log-probability of each token under `Sampling::log_probs`; 0 where `mask` is false.
    pub logprobs: Tensor,
    /// True for generated tokens, up to and including EOS.
    pub mask: Tensor,
}

/// Left-pad token sequences into ids [B, T] and a validity mask [B, T] (int64 0/1).
pub fn left_pad(seqs: &[Vec<i64>], pad_id: i64) -> (Tensor, Tensor) {
    let width = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(seqs.len() * width);
    let mut mask = Vec::with_capacity(seqs.len() * width);
    for seq in seqs {
        let pad = width - seq.len();
        ids.extend(std::iter::repeat_n(pad_id, pad).chain(seq.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, seq.len())));
    }
    let shape = [seqs.len() as i64, width as i64];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
    )
}

/// The EOS ids as a tensor on `device`, for `Tensor::isin` (one comparison a step,
/// whatever the number of ids).
pub fn eos_ids(ids: &[i64], device: tch::Device) -> Tensor {
    Tensor::from_slice(ids).to_device(device)
}
