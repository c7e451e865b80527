//! `rlhf pretrain`: next-token training on plain text (the base model of the embedded
//! world learns its prose here; users bring their own pretrained models instead).

use super::sft::train_lm;
use rlhf::config::RunConfig;
use rlhf::data::{read_pretrain, split_holdout, Fitted, SftSequence};
use rlhf::rng::Rng;
use rlhf::text_side::TextSide;
use rlhf::tokenizer::Tokenizer;
use std::path::Path;

pub async fn run(config_path: &Path, resume: bool) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    let stage = RunConfig::section(&config.pretrain, "pretrain", config_path)?.clone();
    // Pretraining renders no prompt: the folder's own chat template is saved unchanged.
    let text = TextSide::load_untemplated(&stage.init)?;
    let tokenizer = &text.tokenizer;
    let documents = read_pretrain(&stage.data, &stage.keys)?;
    let (train_docs, held_out) = match &stage.validation {
        Some(path) => (documents, read_pretrain(path, &stage.keys)?),
        None => split_holdout(
            documents,
            stage.holdout_fraction,
            &mut Rng::new(config.seed ^ 0x9e7),
        ),
    };
    let chunk = |docs: &[String]| -> anyhow::Result<(Vec<SftSequence>, Fitted)> {
        Ok((
            text_sequences(docs, tokenizer, stage.max_seq_len)?,
            Fitted::default(),
        ))
    };
    let sequences = [chunk(&train_docs)?, chunk(&held_out)?];
    train_lm("pretrain", &config, &stage, &text, sequences, resume).await
}

/// Documents as EOS-terminated token chunks of at most `len` tokens (a document longer
/// than `len` continues in the next chunk), every token a training target. A document
/// starts with the BOS the tokenizer puts before any text, as `tokenizer(text)` does.
pub fn text_sequences(
    documents: &[String],
    tokenizer: &Tokenizer,
    len: usize,
) -> anyhow::Result<Vec<SftSequence>> {
    let mut seqs = Vec::new();
    for doc in documents {
        let mut ids = tokenizer.encode_with_bos(doc)?;
        ids.push(tokenizer.eos_id());
        seqs.extend(
            ids.chunks(len)
                .filter(|c| c.len() > 1)
                .map(|c| SftSequence::new(c.to_vec(), 0)),
        );
    }
    Ok(seqs)
}
