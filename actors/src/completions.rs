//! Text in, text out: completions of prompts with a model, for `rlhf generate`, the
//! pipeline's labeling and every evaluation.

use anyhow::Context;
use rlhf::generate::{cache_shape, generate, prompt_streams, GenerateOptions};
use rlhf::model::Model;
use rlhf::sampling::Sampling;
use rlhf::text_side::TextSide;

/// The generation engine's rows: prompts generate this many at a time, a finished one's
/// row refilled with the next prompt.
const ROWS: usize = 64;

/// Generate a completion for each text, encoded as `text`'s chat template says (rendered
/// prompts as they are; with no template, after the tokenizer's BOS); a completion ends at
/// any of the model's EOS ids. Text i samples from the stream `(seed, i)`, so its
/// completion does not depend on the others. The model and tokenizer must agree
/// on the vocabulary.
pub fn complete(
    model: &Model,
    text: &TextSide,
    texts: &[String],
    max_new_tokens: i64,
    sampling: Sampling,
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    let tokenizer = &text.tokenizer;
    let encoded = texts
        .iter()
        .map(|t| text.encode_prompt(t))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(empty) = encoded.iter().position(Vec::is_empty) {
        anyhow::bail!("prompt {} encodes to no tokens", empty + 1);
    }
    let options = GenerateOptions {
        sampling,
        max_new_tokens,
        eos_token_ids: text.eos_token_ids().to_vec(),
        pad_token_id: tokenizer.pad_id(),
        static_batch: false,
    };
    let (rows, columns) = cache_shape(&encoded, max_new_tokens, ROWS);
    let out = generate(
        model,
        &mut model.new_cache(rows, columns),
        &encoded,
        &options,
        &mut prompt_streams(seed, 0, texts.len()),
    )
    .context("generation failed")?;
    let eos = text.eos_token_ids();
    (0..texts.len() as i64)
        .map(|row| {
            let tokens = Vec::<i64>::try_from(out.tokens.get(row))?;
            let kept: Vec<i64> = tokens
                .into_iter()
                .take_while(|t| !eos.contains(t))
                .collect();
            Ok(tokenizer.decode(&kept)?)
        })
        .collect()
}

/// One sampled completion per templated prompt, reproducible from `seed`: prompt i samples
/// from the stream `(seed, i)`. Completions stop at EOS; the text is cut at a chat-template
/// marker, should the model write the next turn itself.
pub fn sample_responses(
    model: &Model,
    text: &TextSide,
    texts: &[String],
    max_new_tokens: i64,
    sampling: &Sampling,
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    let completions = complete(model, text, texts, max_new_tokens, sampling.clone(), seed)?;
    Ok(completions
        .into_iter()
        .map(|c| c.find("<|").map_or(c.clone(), |at| c[..at].to_string()))
        .collect())
}
