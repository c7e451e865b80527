//! `rlhf sft`: supervised fine-tuning on demonstrations (stage 1).

use super::supervised::{train, Best, Examples, Session};
use crate::stages::run_dir::RunDir;
use rlhf::config::{RunConfig, StageConfig};
use rlhf::data::{
    collate_sft, read_sft, split_holdout, tokenize_sft, Fitted, SftExample, SftSequence,
};
use rlhf::model::Head;
use rlhf::rng::Rng;
use rlhf::template::ChatTemplate;
use rlhf::text_side::TextSide;
use rlhf::train::Batch;
use std::path::Path;
use tracing::info;

struct SftSet {
    seqs: Vec<SftSequence>,
    pad_id: i64,
    loss_on_prompt: bool,
}

impl Examples for SftSet {
    fn len(&self) -> usize {
        self.seqs.len()
    }

    fn collate(&self, indices: &[usize]) -> Batch {
        let picked: Vec<&SftSequence> = indices.iter().map(|&i| &self.seqs[i]).collect();
        Batch::Sft(collate_sft(&picked, self.pad_id, self.loss_on_prompt))
    }
}

pub async fn run(config_path: &Path, resume: bool) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    let stage = RunConfig::section(&config.sft, "sft", config_path)?.clone();
    let text = TextSide::load(&stage.init, &config.chat)?;
    let (train_examples, held_out) = load_split(&stage, &text.template, config.seed)?;
    let tokenized = [&train_examples, &held_out].map(|examples| {
        let (tokenizer, template) = (&text.tokenizer, &text.template);
        tokenize_sft(
            examples,
            tokenizer,
            template,
            stage.max_seq_len,
            stage.truncate,
        )
        .map_err(anyhow::Error::from)
    });
    let [train_seqs, val_seqs] = tokenized;
    train_lm(
        "sft",
        &config,
        &stage,
        &text,
        [train_seqs?, val_seqs?],
        resume,
    )
    .await
}

/// Train a language model on token sequences (train, held-out), each with what the
/// over-long rule did; keeps the best held-out checkpoint in `<run_dir>/<name>/`.
pub async fn train_lm(
    name: &'static str,
    config: &RunConfig,
    stage: &StageConfig,
    text: &TextSide,
    sequences: [(Vec<SftSequence>, Fitted); 2],
    resume: bool,
) -> anyhow::Result<()> {
    let mut dir = RunDir::create(&config.run_dir.join(name), config)?;
    let mut sets = Vec::new();
    for (split, (seqs, fitted)) in ["train", "validation"].into_iter().zip(sequences) {
        let limit = ("max_seq_len", stage.max_seq_len);
        dir.log_fitted(name, split, ("examples", seqs.len()), fitted, limit)?;
        sets.push(SftSet {
            seqs,
            pad_id: text.tokenizer.pad_id(),
            loss_on_prompt: stage.loss_on_prompt,
        });
    }
    let (train_set, val_set) = (&sets[0], &sets[1]);
    let learner = super::supervised::start_learner(
        name,
        stage,
        Head::LanguageModel,
        (train_set.len(), val_set.len()),
        config.seed,
    )
    .await?;
    let best = train(
        Session {
            name,
            stage,
            seed: config.seed,
            learner: &learner,
            text,
            resume,
        },
        &mut dir,
        (train_set, val_set),
        Best::LowestLoss,
    )
    .await;
    learner.stop(None);
    let Some(best) = best? else {
        return Ok(());
    };
    info!(stage = name, loss = best.loss, perplexity = best.loss.exp(), dir = %dir.path("checkpoints/best").display(), "best held-out");
    Ok(())
}

/// The training data and its held-out part (the validation file, or a seeded split).
pub fn load_split(
    stage: &StageConfig,
    template: &ChatTemplate,
    seed: u64,
) -> anyhow::Result<(Vec<SftExample>, Vec<SftExample>)> {
    let read = |path| read_sft(path, template, &stage.keys, stage.assistant_turns);
    let examples = read(&stage.data)?;
    Ok(match &stage.validation {
        Some(path) => (examples, read(path)?),
        None => split_holdout(
            examples,
            stage.holdout_fraction,
            &mut Rng::new(seed ^ 0x5f7),
        ),
    })
}
