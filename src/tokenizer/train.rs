//! Training a byte-level BPE tokenizer (GPT-2 style) on the engine's own corpus.

use std::collections::HashSet;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use super::Tokenizer;
use crate::{Error, Result};

impl Tokenizer {
    /// Trains a byte-level BPE with at most `vocab_size` ids on `texts`: the GPT-2
    /// pre-tokenizer (no prefix space), all 256 byte symbols in the base alphabet (so any
    /// text encodes without unknown tokens), and `special_tokens` as the first ids. The
    /// first special token is the EOS and padding token.
    ///
    /// Deterministic: the same texts and arguments give a byte-identical `tokenizer.json`.
    pub fn train_bpe(
        texts: &[String],
        vocab_size: usize,
        special_tokens: &[&str],
    ) -> Result<Tokenizer> {
        let Some(eos) = special_tokens.first() else {
            return Err(Error::Invalid(
                "train_bpe needs at least one special token (the first is the EOS)".into(),
            ));
        };
        let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        let minimum = alphabet.len() + special_tokens.len();
        if vocab_size < minimum {
            return Err(Error::Invalid(format!(
                "a byte-level BPE vocabulary needs at least {minimum} ids (256 bytes and {} \
                 special tokens), not {vocab_size}",
                special_tokens.len()
            )));
        }
        let special: Vec<AddedToken> = special_tokens
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .special_tokens(special.clone())
            .initial_alphabet(alphabet)
            .build();
        let mut inner = tokenizers::Tokenizer::new(BPE::default());
        inner
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)))
            .with_post_processor(Some(
                ByteLevel::default()
                    .add_prefix_space(false)
                    .trim_offsets(true),
            ))
            .with_decoder(Some(ByteLevel::default()));
        // Registered before training so special-token strings in the texts are kept whole
        // instead of being learned as pieces; the trainer gives them the same first ids.
        inner.add_special_tokens(&special);
        inner
            .train(&mut TrainerWrapper::BpeTrainer(trainer), texts.iter())
            .map_err(|e| Error::Invalid(format!("BPE training failed: {e}")))?;
        Ok(Tokenizer {
            inner,
            eos: eos.to_string(),
            pad: eos.to_string(),
            bos: None,
            model_max_length: None,
            bos_prefix: Vec::new(),
            chat_template: None,
            config: Default::default(),
        })
    }
}
