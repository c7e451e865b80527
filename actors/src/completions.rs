//! Text in, text out: completions of prompts with a model, for `rlhf generate`, the
//! pipeline's labeling and every evaluation.

use anyhow::Context;
use rlhf::generate::{generate, left_pad, GenerateOptions};
use rlhf::model::Model;
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use rlhf::tokenizer::Tokenizer;

/// Prompts per generation batch of [`sample_responses`].
const BATCH: usize = 64;

/// Generate a completion for each text; the model and tokenizer must agree on the vocabulary.
pub fn complete(
    model: &Model,
    tokenizer: &Tokenizer,
    texts: &[String],
    max_new_tokens: i64,
    sampling: Sampling,
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    let encoded = texts
        .iter()
        .map(|t| tokenizer.encode(t))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(empty) = encoded.iter().position(Vec::is_empty) {
        anyhow::bail!("prompt {} encodes to no tokens", empty + 1);
    }
    let (ids, mask) = left_pad(&encoded, tokenizer.pad_id());
    let options = GenerateOptions {
        sampling,
        max_new_tokens,
        eos_token_id: Some(tokenizer.eos_id()),
        pad_token_id: tokenizer.pad_id(),
    };
    let mut cache = model.new_cache(ids.size()[0], ids.size()[1] + max_new_tokens);
    let out = generate(
        model,
        &mut cache,
        &ids,
        &mask,
        &options,
        &mut Rng::new(seed),
    )
    .context("generation failed")?;
    let eos = tokenizer.eos_id();
    (0..texts.len() as i64)
        .map(|row| {
            let tokens = Vec::<i64>::try_from(out.tokens.get(row))?;
            let kept: Vec<i64> = tokens.into_iter().take_while(|&t| t != eos).collect();
            Ok(tokenizer.decode(&kept)?)
        })
        .collect()
}

/// One sampled completion per templated prompt, in batches, reproducible from `seed`.
/// Completions stop at EOS; the text is cut at a chat-template marker, should the model
/// write the next turn itself.
pub fn sample_responses(
    model: &Model,
    tokenizer: &Tokenizer,
    texts: &[String],
    max_new_tokens: i64,
    sampling: &Sampling,
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(texts.len());
    for (i, chunk) in texts.chunks(BATCH).enumerate() {
        let seed = Rng::new(seed ^ i as u64).next_u64();
        for text in complete(
            model,
            tokenizer,
            chunk,
            max_new_tokens,
            sampling.clone(),
            seed,
        )? {
            let cut = text.find("<|").map_or(text.as_str(), |at| &text[..at]);
            out.push(cut.to_string());
        }
    }
    Ok(out)
}
