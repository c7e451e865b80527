//! `rlhf init`: build what the embedded default needs, from the config's seed alone:
//! the prose corpus, a byte-level BPE tokenizer trained on it, and a randomly initialised model saved in
//! Hugging Face layout (`<run_dir>/init/`); then complete the config's demo prompts with it.

use crate::completions::complete;
use anyhow::Context;
use rlhf::config::RunConfig;
use rlhf::device::parse_device;
use rlhf::generation_config::GenerationConfig;
use rlhf::model::{Head, Model, ModelConfig};
use rlhf::template::{ChatTemplate, BUILTIN_MARKERS};
use rlhf::text_side::TextSide;
use rlhf::tokenizer::Tokenizer;
use rlhf::world::prose;
use std::path::Path;
use std::time::Instant;
use tracing::info;

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    write_resolved(&config)?;
    let (model, text) = build(&config, config_path)?;
    if !config.generate.prompts.is_empty() {
        // The demo prompts are plain text, completed as given.
        let plain = TextSide {
            template: ChatTemplate::None,
            ..text
        };
        let completions = complete(
            &model,
            &plain,
            &config.generate.prompts,
            config.generate.max_new_tokens,
            config.generate.sampling.clone(),
            config.seed,
        )?;
        for (prompt, completion) in config.generate.prompts.iter().zip(completions) {
            println!("{prompt}{completion}\n");
        }
    }
    Ok(())
}

/// The resolved config as `<run_dir>/config.toml`.
pub fn write_resolved(config: &RunConfig) -> anyhow::Result<()> {
    let run_dir = &config.run_dir;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let resolved = toml::to_string_pretty(config).context("serialising the resolved config")?;
    let path = run_dir.join("config.toml");
    std::fs::write(&path, resolved).with_context(|| format!("writing {}", path.display()))
}

/// Train the tokenizer on the prose corpus and save it with a randomly initialised model
/// of the config's shape into `<run_dir>/init/`; the folder advertises the built-in chat
/// template, the one the embedded world's stages use.
pub fn build(config: &RunConfig, config_path: &Path) -> anyhow::Result<(Model, TextSide)> {
    let start = Instant::now();
    let corpus = prose::corpus(config.seed, config.world.documents);
    let bytes: usize = corpus.iter().map(String::len).sum();
    info!(
        documents = corpus.len(),
        bytes, "generated the prose corpus"
    );
    let mut specials = vec!["<|endoftext|>"];
    specials.extend(BUILTIN_MARKERS);
    let tokenizer = Tokenizer::train_bpe(&corpus, config.tokenizer.vocab_size, &specials)?;
    info!(
        vocab = tokenizer.vocab_size(),
        seconds = start.elapsed().as_secs_f32(),
        "trained the tokenizer"
    );
    let init_dir = config.run_dir.join("init");
    let model_section = RunConfig::section(&config.model, "model", config_path)?;
    let shape = model_section.shape(tokenizer.vocab_size() as i64, tokenizer.eos_id());
    tch::manual_seed(config.seed as i64);
    let device = parse_device(&model_section.device)?;
    let model = Model::new(
        ModelConfig::new_json(&shape),
        Head::LanguageModel,
        model_section.dtype,
        device,
    )?;
    model.save(&init_dir)?;
    let generation = GenerationConfig::for_tokenizer(&tokenizer);
    let text = TextSide::new(tokenizer, ChatTemplate::builtin(), generation);
    text.save(&init_dir)?;
    info!(
        parameters = model.config().num_parameters(),
        dir = %init_dir.display(),
        "saved the randomly initialised model (pretraining makes it a base model)"
    );
    Ok((model, text))
}
