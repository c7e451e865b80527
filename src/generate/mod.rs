//! Batched autoregressive generation with a KV cache, continuously batched.
//!
//! The cache's rows are the batch. Rows start by prefilling their prompts (all but the
//! last token, left-padded so every row's prompt ends in the same column), then every step
//! feeds one token per row. A row stops at any of its EOS ids or after `max_new_tokens`
//! and leaves the batch at once (a live row moves into its cache row), so later steps compute
//! only the rows still generating. While prompts remain, freed rows are refilled: the new
//! prompts are prefilled on their own and placed in the cache so they end where the other
//! rows' tokens do ([`KvCache::admit_rows`]), and they join the next step. A run therefore
//! costs what its responses' real lengths cost, not its longest response times the batch.
//!
//! Every row samples from its own random stream: its t-th token uses its stream's t-th
//! uniform. A row's tokens therefore depend on its prompt, its stream and the weights, not
//! on which other rows share its batch or how large the batch is, up to float rounding: a
//! row's logits differ in their last bits between batch compositions, so a uniform within
//! that rounding of a token boundary can pick the neighbouring token (rare: one draw in
//! about 70,000 of the default run's labeling changed when the admission order did).

mod batch;
mod engine;

pub use batch::{eos_ids, left_pad, Episode, GenerateOptions, Generation};

use crate::model::{KvCache, Model};
use crate::rng::Rng;
use crate::{Error, Result};

/// Generate a continuation of every prompt (token ids, each non-empty), prompt i drawing
/// its t-th token from `streams[i]`'s t-th uniform (none when greedy). The cache's rows are
/// the engine's batch: with fewer rows than prompts, rows freed by finished episodes are
/// refilled from the prompts not yet started, shortest first (less padding in each
/// prefill; no episode depends on its batch). The cache needs room for the
/// longest prompt and `max_new_tokens` ([`cache_shape`] sizes one); it is reset first.
pub fn generate(
    model: &Model,
    cache: &mut KvCache,
    prompts: &[Vec<i64>],
    options: &GenerateOptions,
    streams: &mut [Rng],
) -> Result<Generation> {
    run(model, cache, prompts, options, streams, None)
}

/// [`generate`], handing each episode to `on_done` as soon as it ends, in the order they
/// end (rows ending at the same step by prompt index), so a caller can
/// pass it on while the others still generate.
pub fn generate_each(
    model: &Model,
    cache: &mut KvCache,
    prompts: &[Vec<i64>],
    options: &GenerateOptions,
    streams: &mut [Rng],
    mut on_done: impl FnMut(Episode) -> Result<()>,
) -> Result<Generation> {
    run(model, cache, prompts, options, streams, Some(&mut on_done))
}

fn run(
    model: &Model,
    cache: &mut KvCache,
    prompts: &[Vec<i64>],
    options: &GenerateOptions,
    streams: &mut [Rng],
    on_done: Option<&mut dyn FnMut(Episode) -> Result<()>>,
) -> Result<Generation> {
    options.sampling.validate().map_err(Error::Invalid)?;
    let steps = options.max_new_tokens;
    let config = model.config();
    if prompts.is_empty() || steps <= 0 {
        return Err(Error::Invalid(format!(
            "generation needs prompts and max_new_tokens > 0 (got {} prompts, {steps})",
            prompts.len()
        )));
    }
    if let Some(empty) = prompts.iter().position(Vec::is_empty) {
        return Err(Error::Invalid(format!("prompt {empty} has no tokens")));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    if config.arch == crate::model::Architecture::Gpt2 && longest + steps > config.max_positions {
        return Err(Error::Invalid(format!(
            "prompt of {longest} tokens + max_new_tokens {steps} exceeds the model's {} positions",
            config.max_positions
        )));
    }
    if streams.len() != prompts.len() {
        return Err(Error::Invalid(format!(
            "{} random streams for {} prompts",
            streams.len(),
            prompts.len()
        )));
    }
    if !cache.suits(config, model.var_store().kind()) || cache.capacity() < longest + steps {
        return Err(Error::Invalid(format!(
            "KV cache of {}x{} does not fit prompts of up to {longest} tokens + {steps} new tokens for this model",
            cache.allocated_rows(),
            cache.capacity(),
        )));
    }
    let _guard = tch::no_grad_guard();
    engine::Engine::new(model, options, prompts, streams, cache.allocated_rows())
        .run(cache, on_done)
}

/// The KV cache (rows, capacity) [`generate`] wants for `prompts` with at most `rows`
/// rows: room for the longest prompt and every new token, and with more prompts than rows
/// as much again, so that refilled rows shift the columns left only now and then.
pub fn cache_shape(prompts: &[Vec<i64>], max_new_tokens: i64, rows: usize) -> (i64, i64) {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let once = longest + max_new_tokens;
    let rows = rows.min(prompts.len()).max(1);
    let refills = prompts.len() > rows;
    (rows as i64, if refills { 2 * once } else { once })
}

/// One stream per prompt, `Rng::stream(seed, [first + i])` for prompt i: what a caller
/// that numbers its prompts (a file's lines, say) gives [`generate`], so each prompt's
/// completion is the same in any batch.
pub fn prompt_streams(seed: u64, first: usize, count: usize) -> Vec<Rng> {
    (first..first + count)
        .map(|i| Rng::stream(seed, &[i as u64]))
        .collect()
}
