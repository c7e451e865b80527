//! Batched autoregressive generation with a KV cache.
//!
//! Prompts are left-padded so every row's last prompt token sits in the same column; the
//! cache is filled by one prefill forward, then one token per step for all rows. A row
//! stops at any of its EOS ids (later columns are padding, masked out); the loop stops when
//! all rows have.
//!
//! A row that reaches EOS leaves the batch: its KV-cache row is compacted away
//! ([`KvCache::retain_rows`]) and later steps compute only the rows still generating, so a
//! batch costs what its responses' real lengths cost, not its longest response times its
//! size.
//!
//! Every row samples from its own random stream: its t-th token uses its stream's t-th
//! uniform. A row's tokens therefore depend on its prompt, its stream and the weights, not
//! on which other rows share its batch or how large the batch is.

use crate::model::{KvCache, Model};
use crate::rng::Rng;
use crate::sampling::Sampling;
use crate::{Error, Result};
use tch::{Kind, Tensor};

/// What to generate and when to stop.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub sampling: Sampling,
    pub max_new_tokens: i64,
    /// Rows stop after producing any of these tokens (a model may have several, as Llama 3
    /// and Qwen instruct models do); empty generates exactly `max_new_tokens`.
    pub eos_token_ids: Vec<i64>,
    /// Written after a row has stopped.
    pub pad_token_id: i64,
    /// Keep finished rows in the batch until the last one ends (static batching), instead
    /// of compacting them away: the same tokens, for measuring what compaction saves.
    pub static_batch: bool,
}

/// Generated continuations, [B, N] each, N <= max_new_tokens.
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

/// Generate continuations of left-padded `prompt` ids [B, P] with validity `prompt_mask`,
/// row b drawing from `streams[b]` (B streams; each advances by `max_new_tokens` draws
/// unless greedy). The cache must come from `model.new_cache(B, P + max_new_tokens)` (or be
/// reused from an earlier call of at least that size); it is reset first.
pub fn generate(
    model: &Model,
    cache: &mut KvCache,
    prompt: &Tensor,
    prompt_mask: &Tensor,
    options: &GenerateOptions,
    streams: &mut [Rng],
) -> Result<Generation> {
    options.sampling.validate().map_err(Error::Invalid)?;
    let (batch, prompt_len) = (prompt.size()[0], prompt.size()[1]);
    let steps = options.max_new_tokens;
    let config = model.config();
    if prompt_len == 0 || batch == 0 || steps <= 0 {
        return Err(Error::Invalid(format!(
            "generation needs a non-empty prompt batch and max_new_tokens > 0 (got {batch}x{prompt_len}, {steps})"
        )));
    }
    if config.arch == crate::model::Architecture::Gpt2 && prompt_len + steps > config.max_positions
    {
        return Err(Error::Invalid(format!(
            "prompt of {prompt_len} tokens + max_new_tokens {steps} exceeds the model's {} positions",
            config.max_positions
        )));
    }
    if streams.len() as i64 != batch {
        return Err(Error::Invalid(format!(
            "{} random streams for a batch of {batch} prompts",
            streams.len()
        )));
    }
    if !cache.fits(config, batch, prompt_len + steps, model.var_store().kind()) {
        return Err(Error::Invalid(format!(
            "KV cache of {}x{} does not fit a batch of {batch} x {} tokens for this model",
            cache.batch(),
            cache.capacity(),
            prompt_len + steps
        )));
    }
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let noise = if options.sampling.greedy {
        Tensor::ones([steps, batch], (Kind::Float, device))
    } else {
        let rows = streams.len();
        let mut draws = vec![0f32; steps as usize * rows];
        for (b, stream) in streams.iter_mut().enumerate() {
            for t in 0..steps as usize {
                draws[t * rows + b] = stream.uniform() as f32;
            }
        }
        Tensor::from_slice(&draws)
            .view([steps, batch])
            .to_device(device)
    };
    cache.reset();
    let hidden = model.forward(
        &prompt.to_device(device),
        Some(&prompt_mask.to_device(device)),
        Some(cache),
        false,
    );
    let mut logits = model.logits(&hidden.select(1, prompt_len - 1));
    let eos = eos_ids(&options.eos_token_ids, device);
    let tokens = Tensor::full([batch, steps], options.pad_token_id, (Kind::Int64, device));
    let logprobs = Tensor::zeros([batch, steps], (Kind::Float, device));
    let mask = Tensor::zeros([batch, steps], (Kind::Bool, device));
    // The original row of each row still generating, ascending; its noise columns follow.
    let mut index = Tensor::arange(batch, (Kind::Int64, device));
    let mut noise = noise;
    // Static batching only: the rows that have ended but stay in the batch.
    let mut finished = options
        .static_batch
        .then(|| Tensor::zeros([batch], (Kind::Bool, device)));
    let pad = Tensor::from(options.pad_token_id).to_device(device);
    let mut used = 0;
    for t in 0..steps {
        let (next, logprob) = options.sampling.sample(&logits, &noise.get(t));
        let logprob = logprob.to_kind(Kind::Float);
        let mut chosen = match &finished {
            Some(done) => {
                // An ended row's later samples are padding, not kept.
                let live = done.logical_not();
                let _ = mask.select(1, t).index_copy_(0, &index, &live);
                let logprob = logprob * live.to_kind(Kind::Float);
                let _ = logprobs.select(1, t).index_copy_(0, &index, &logprob);
                next.where_self(&live, &pad)
            }
            None => {
                let _ = mask.select(1, t).index_fill_(0, &index, 1);
                let _ = logprobs.select(1, t).index_copy_(0, &index, &logprob);
                next
            }
        };
        let _ = tokens.select(1, t).index_copy_(0, &index, &chosen);
        used = t + 1;
        if t + 1 == steps {
            break;
        }
        if !options.eos_token_ids.is_empty() {
            let ended = Tensor::isin(&chosen, &eos, false, false);
            if let Some(done) = &mut finished {
                *done = done.logical_or(&ended);
                if done.all().int64_value(&[]) == 1 {
                    break;
                }
            } else {
                let ended = Vec::<bool>::try_from(ended)
                    .map_err(|e| Error::Invalid(format!("reading finished rows: {e}")))?;
                let keep: Vec<i64> = (0..ended.len() as i64)
                    .filter(|&i| !ended[i as usize])
                    .collect();
                if keep.is_empty() {
                    break;
                }
                if keep.len() < ended.len() {
                    let kept = Tensor::from_slice(&keep).to_device(device);
                    cache.retain_rows(&kept);
                    index = index.index_select(0, &kept);
                    noise = noise.index_select(1, &kept);
                    chosen = chosen.index_select(0, &kept);
                }
            }
        }
        let hidden = model.forward(&chosen.unsqueeze(1), None, Some(cache), false);
        logits = model.logits(&hidden.squeeze_dim(1));
    }
    Ok(Generation {
        tokens: tokens.narrow(1, 0, used),
        logprobs: logprobs.narrow(1, 0, used),
        mask: mask.narrow(1, 0, used),
    })
}

/// One stream per prompt, `Rng::stream(seed, [first + i])` for prompt i: what a caller
/// that numbers its prompts (a file's lines, say) gives [`generate`], so each prompt's
/// completion is the same in any batch.
pub fn prompt_streams(seed: u64, first: usize, count: usize) -> Vec<Rng> {
    (first..first + count)
        .map(|i| Rng::stream(seed, &[i as u64]))
        .collect()
}

/// The EOS ids as a tensor on `device`, for `Tensor::isin` (one comparison a step,
/// whatever the number of ids).
pub fn eos_ids(ids: &[i64], device: tch::Device) -> Tensor {
    Tensor::from_slice(ids).to_device(device)
}
