//! Tokenization of examples into training sequences, and the over-long rule
//! (`truncate`): skip, cut the prompt's start, or cut the end.

use std::ops::Range;

use super::rm::RankedExample;
use super::sft::SftExample;
use crate::config::Truncate;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// One SFT sequence: prompt tokens then response tokens then EOS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftSequence {
    pub ids: Vec<i64>,
    /// Number of prompt tokens at the start of `ids`.
    pub prompt_len: usize,
    /// Token ranges inside the prompt that are trained too: the earlier assistant turns of
    /// a conversation, each with the EOS that ends it when the template writes one. Never
    /// position 0.
    pub prompt_spans: Vec<Range<usize>>,
}

impl SftSequence {
    /// A sequence trained on everything after its first `prompt_len` tokens.
    pub fn new(ids: Vec<i64>, prompt_len: usize) -> SftSequence {
        SftSequence {
            ids,
            prompt_len,
            prompt_spans: Vec::new(),
        }
    }
}

/// K sequences per prompt: prompt + response_k + EOS, ordered best to worst.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankedSequences {
    pub rows: Vec<Vec<i64>>,
    /// Number of prompt tokens at the start of every row.
    pub prompt_len: usize,
}

/// How many examples the over-long rule cut to fit, and how many it dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fitted {
    pub truncated: usize,
    pub skipped: usize,
}

impl Fitted {
    /// Counts what the rule did to one item (`None`: dropped; the flag: cut) and keeps
    /// what survived in `out`.
    pub fn count<T>(&mut self, fitted: Option<(T, bool)>, out: &mut Vec<T>) {
        match fitted {
            Some((item, cut)) => {
                self.truncated += usize::from(cut);
                out.push(item);
            }
            None => self.skipped += 1,
        }
    }
}

/// Tokenizes demonstrations: `encode(prompt) ++ encode(response) ++ [EOS]`, prompt and
/// response encoded separately so the boundary is exactly where generation starts; the
/// prompt as `template` says, with the tokenizer's BOS when it is used as given. A prompt
/// with earlier trained turns is encoded piece by piece at their edges; a plain-text
/// example (empty prompt) is the tokenizer's BOS, the text and EOS, all trained.
///
/// An example longer than `max_seq_len` is fitted by `truncate` ([`Truncate`]). Returns
/// the kept sequences, in order, and what the rule did.
pub fn tokenize_sft(
    examples: &[SftExample],
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    max_seq_len: usize,
    truncate: Truncate,
) -> Result<(Vec<SftSequence>, Fitted)> {
    let mut out = Vec::with_capacity(examples.len());
    let mut fitted = Fitted::default();
    for example in examples {
        let seq = sft_sequence(example, tokenizer, template)?;
        let keep = bos_len(&seq.ids, tokenizer);
        fitted.count(fit_sft(seq, max_seq_len, truncate, keep), &mut out);
    }
    Ok((out, fitted))
}

fn sft_sequence(
    example: &SftExample,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
) -> Result<SftSequence> {
    let eos = tokenizer.eos_id();
    let mut ids = Vec::new();
    let mut spans: Vec<Range<usize>> = Vec::new();
    if example.prompt.is_empty() {
        ids.extend_from_slice(tokenizer.bos_prefix());
    } else {
        let mut at = 0;
        for range in &example.earlier_responses {
            let context = &example.prompt[at..range.start];
            extend_context(&mut ids, &mut spans, context, at == 0, tokenizer, template)?;
            let start = ids.len();
            ids.extend(tokenizer.encode(&example.prompt[range.clone()])?);
            spans.push(start..ids.len());
            at = range.end;
        }
        let context = &example.prompt[at..];
        extend_context(&mut ids, &mut spans, context, at == 0, tokenizer, template)?;
    }
    let prompt_len = ids.len();
    ids.extend(tokenizer.encode(&example.response)?);
    ids.push(eos);
    Ok(SftSequence {
        ids,
        prompt_len,
        prompt_spans: spans,
    })
}

/// Appends a piece of the prompt that is not trained (the first as the template encodes a
/// prompt); when it opens with the EOS that ends the trained turn before it, that EOS joins
/// the turn's span.
fn extend_context(
    ids: &mut Vec<i64>,
    spans: &mut [Range<usize>],
    text: &str,
    first: bool,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
) -> Result<()> {
    let piece = if first {
        template.encode_prompt(tokenizer, text)?
    } else {
        tokenizer.encode(text)?
    };
    if let Some(span) = spans.last_mut() {
        if piece.first() == Some(&tokenizer.eos_id()) {
            span.end += 1;
        }
    }
    ids.extend(piece);
    Ok(())
}

/// Tokenizes ranked examples like [`tokenize_sft`]; an over-long prompt is fitted as a
/// whole (every response keeps the same prompt; never thinned to fewer responses).
/// Returns the kept groups and what the rule did.
pub fn tokenize_rm(
    examples: &[RankedExample],
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    max_seq_len: usize,
    truncate: Truncate,
) -> Result<(Vec<RankedSequences>, Fitted)> {
    let eos = tokenizer.eos_id();
    let mut out = Vec::with_capacity(examples.len());
    let mut fitted = Fitted::default();
    for example in examples {
        let prompt = template.encode_prompt(tokenizer, &example.prompt)?;
        let mut rows = Vec::with_capacity(example.responses.len());
        for response in &example.responses {
            let mut ids = prompt.clone();
            ids.extend(tokenizer.encode(response)?);
            ids.push(eos);
            rows.push(ids);
        }
        let keep = bos_len(&prompt, tokenizer);
        let group = RankedSequences {
            rows,
            prompt_len: prompt.len(),
        };
        fitted.count(fit_ranked(group, max_seq_len, truncate, keep), &mut out);
    }
    Ok((out, fitted))
}

/// The length of the BOS the tokenizer puts before any text when `ids` starts with it: left
/// truncation keeps it.
pub fn bos_len(ids: &[i64], tokenizer: &Tokenizer) -> usize {
    let bos = tokenizer.bos_prefix();
    if !bos.is_empty() && ids.starts_with(bos) {
        bos.len()
    } else {
        0
    }
}

/// A prompt for generation of at most `max` tokens: `skip` drops a longer one, `left` cuts
/// tokens after its first `keep` (its BOS), keeping the end where the generation prompt
/// is. `None`: dropped; the flag: cut.
///
/// # Panics
/// On `Truncate::Right`, which would cut the generation prompt (the config refuses it).
pub fn fit_prompt(
    mut ids: Vec<i64>,
    max: usize,
    truncate: Truncate,
    keep: usize,
) -> Option<(Vec<i64>, bool)> {
    if ids.len() <= max {
        return Some((ids, false));
    }
    match truncate {
        Truncate::Skip => None,
        Truncate::Left if keep < max => {
            ids.drain(keep..keep + ids.len() - max);
            Some((ids, true))
        }
        Truncate::Left => None,
        Truncate::Right => panic!("fit_prompt: a prompt is never cut on the right"),
    }
}

fn fit_sft(
    mut seq: SftSequence,
    max: usize,
    truncate: Truncate,
    keep: usize,
) -> Option<(SftSequence, bool)> {
    let len = seq.ids.len();
    if len <= max {
        return Some((seq, false));
    }
    let cut = len - max;
    match truncate {
        Truncate::Skip => return None,
        Truncate::Left => {
            if seq.prompt_len < keep + cut {
                return None;
            }
            seq.ids.drain(keep..keep + cut);
            seq.prompt_len -= cut;
            // Positions in the removed stretch move to its start (never 0), the rest back
            // by `cut`.
            let first = keep.max(1);
            let moved = |p: usize| if p >= keep + cut { p - cut } else { first };
            seq.prompt_spans = seq
                .prompt_spans
                .iter()
                .map(|s| moved(s.start)..moved(s.end))
                .filter(|s| !s.is_empty())
                .collect();
        }
        Truncate::Right => {
            if seq.prompt_len >= max {
                return None;
            }
            seq.ids.truncate(max);
        }
    }
    Some((seq, true))
}

fn fit_ranked(
    mut group: RankedSequences,
    max: usize,
    truncate: Truncate,
    keep: usize,
) -> Option<(RankedSequences, bool)> {
    let longest = group.rows.iter().map(Vec::len).max().unwrap_or(0);
    if longest <= max {
        return Some((group, false));
    }
    let cut = longest - max;
    match truncate {
        Truncate::Skip => return None,
        Truncate::Left => {
            if group.prompt_len < keep + cut {
                return None;
            }
            for row in &mut group.rows {
                row.drain(keep..keep + cut);
            }
            group.prompt_len -= cut;
        }
        Truncate::Right => {
            if group.prompt_len >= max {
                return None;
            }
            for row in &mut group.rows {
                row.truncate(max);
            }
            // Responses that only differ past the cut cannot be ranked.
            let rows = &group.rows;
            if (1..rows.len()).any(|i| rows[..i].contains(&rows[i])) {
                return None;
            }
        }
    }
    Some((group, true))
}

#[cfg(test)]
mod tests;
