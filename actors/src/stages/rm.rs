//! `rlhf rm`: the reward model on K-wise rankings (stage 2). It starts from the SFT
//! checkpoint with the unembedding replaced by a scalar head read at the last token; after
//! training, a bias makes the demonstrations score 0 on average, as InstructGPT does.

use super::sft::load_split;
use super::supervised::{
    build_trainer, evaluate, save, spawn_learner, train, Best, Examples, Session,
};
use crate::stages::run_dir::RunDir;
use crate::system::learner::SupervisedMsg;
use crate::system::rpc::ask;
use rlhf::config::{RunConfig, StageConfig};
use rlhf::data::{
    collate_rm, read_rm, read_sft, split_holdout, tokenize_rm, tokenize_sft, Fitted, RankedExample,
    RankedSequences, SftExample,
};
use rlhf::generate::left_pad;
use rlhf::model::Head;
use rlhf::rng::Rng;
use rlhf::template::ChatTemplate;
use rlhf::text_side::TextSide;
use rlhf::train::Batch;
use serde_json::json;
use std::path::Path;
use tch::Tensor;
use tracing::info;

struct RankedSet {
    items: Vec<RankedSequences>,
    pad_id: i64,
}

impl Examples for RankedSet {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn collate(&self, indices: &[usize]) -> Batch {
        let picked: Vec<&RankedSequences> = indices.iter().map(|&i| &self.items[i]).collect();
        Batch::Rm(collate_rm(&picked, self.pad_id))
    }
}

pub async fn run(config_path: &Path, resume: bool) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    let stage = RunConfig::section(&config.rm, "rm", config_path)?.clone();
    let mut dir = RunDir::create(&config.run_dir.join("rm"), &config)?;
    let text = TextSide::load(&stage.init, &config.chat)?;
    let (train_ranked, train_items, val_items) =
        ranked_splits("rm", &config, &stage, &text, &mut dir)?;
    let demonstrations = demonstrations(&config, &stage, &text.template, &train_ranked)?;
    let pad_id = text.tokenizer.pad_id();
    let train_set = RankedSet {
        items: train_items,
        pad_id,
    };
    let val_set = RankedSet {
        items: val_items,
        pad_id,
    };
    let learner = super::supervised::start_learner(
        "rm",
        &stage,
        Head::Scalar,
        (train_set.len(), val_set.len()),
        config.seed,
    )
    .await?;
    let trained = train(
        Session {
            name: "rm",
            stage: &stage,
            seed: config.seed,
            learner: &learner,
            text: &text,
            resume,
        },
        &mut dir,
        (&train_set, &val_set),
        Best::HighestAccuracy,
    )
    .await;
    learner.stop(None);
    if trained?.is_none() {
        return Ok(());
    }

    // Centre both kept checkpoints on the demonstrations, then report the final figures.
    let demo = demo_batches(&demonstrations, &text, &stage)?;
    for kept in ["last", "best"] {
        let path = dir.path(&format!("checkpoints/{kept}"));
        let mut reload = stage.clone();
        reload.init = path.clone();
        let learner = spawn_learner(&reload, {
            let reload = reload.clone();
            move || build_trainer(&reload, Head::Scalar, 1, 1)
        })
        .await?;
        let batches: Vec<(Tensor, Tensor)> = demo
            .iter()
            .map(|(a, b)| (a.shallow_clone(), b.shallow_clone()))
            .collect();
        let mean = ask(&learner, "learner", |reply| {
            SupervisedMsg::CenterScores(batches, reply)
        })
        .await?;
        save(&learner, &text, &path).await?;
        let eval = evaluate(&learner, &val_set, stage.batch_size).await?;
        info!(checkpoint = kept, demonstration_mean_before = mean, accuracy = ?eval.accuracy, margin = ?eval.margin, "rm: centred on demonstrations");
        dir.log(&json!({"stage": "rm", "checkpoint": kept, "demonstration_mean_score": mean, "reward_bias": -mean,
            "validation_accuracy": eval.accuracy, "validation_margin": eval.margin, "validation_loss": eval.loss}))?;
        learner.stop(None);
    }
    Ok(())
}

/// A ranking stage's data (RM, DPO): its rankings split into train and held out (the
/// `validation` file, else `holdout_fraction` of `data`), each split tokenized with what the
/// over-long rule did logged; also the training rankings as read.
pub fn ranked_splits(
    name: &str,
    config: &RunConfig,
    stage: &StageConfig,
    text: &TextSide,
    dir: &mut RunDir,
) -> anyhow::Result<(
    Vec<RankedExample>,
    Vec<RankedSequences>,
    Vec<RankedSequences>,
)> {
    let template = &text.template;
    let ranked = read_rm(&stage.data, template, &stage.keys)?;
    let (train_ranked, held_out) = match &stage.validation {
        Some(path) => (ranked, read_rm(path, template, &stage.keys)?),
        None => split_holdout(
            ranked,
            stage.holdout_fraction,
            &mut Rng::new(config.seed ^ 0x7a3),
        ),
    };
    let mut splits = Vec::new();
    for (split, examples) in [("train", &train_ranked), ("validation", &held_out)] {
        let (items, fitted) = tokenize_rm(
            examples,
            &text.tokenizer,
            template,
            stage.max_seq_len,
            stage.truncate,
        )?;
        let limit = ("max_seq_len", stage.max_seq_len);
        dir.log_fitted(name, split, ("prompts", items.len()), fitted, limit)?;
        splits.push(items);
    }
    let held_out = splits.pop().expect("two splits");
    let train = splits.pop().expect("two splits");
    Ok((train_ranked, train, held_out))
}

/// `rm.demonstrations`, else the `[sft]` data, else the best-ranked response of each
/// training prompt.
fn demonstrations(
    config: &RunConfig,
    stage: &StageConfig,
    template: &ChatTemplate,
    ranked: &[RankedExample],
) -> anyhow::Result<Vec<SftExample>> {
    if let Some(path) = &stage.demonstrations {
        let (keys, turns) = match &config.sft {
            Some(sft) => (&sft.keys, sft.assistant_turns),
            None => (&stage.keys, Default::default()),
        };
        return Ok(read_sft(path, template, keys, turns)?);
    }
    if let Some(sft) = &config.sft {
        return Ok(load_split(sft, template, config.seed)?.0);
    }
    Ok(ranked
        .iter()
        .map(|r| SftExample::new(r.prompt.clone(), r.responses[0].clone(), r.category.clone()))
        .collect())
}

/// Demonstrations as left-padded (ids, valid) batches of reward-model inputs.
fn demo_batches(
    demos: &[SftExample],
    text: &TextSide,
    stage: &StageConfig,
) -> anyhow::Result<Vec<(Tensor, Tensor)>> {
    let (tokenizer, template) = (&text.tokenizer, &text.template);
    let (seqs, fitted) = tokenize_sft(
        demos,
        tokenizer,
        template,
        stage.max_seq_len,
        stage.truncate,
    )?;
    if fitted != Fitted::default() {
        info!(
            truncated = fitted.truncated,
            skipped = fitted.skipped,
            "over-long demonstrations"
        );
    }
    anyhow::ensure!(
        !seqs.is_empty(),
        "rm: no demonstrations to centre the reward on"
    );
    let ids: Vec<Vec<i64>> = seqs.into_iter().map(|s| s.ids).collect();
    Ok(ids
        .chunks(stage.batch_size.max(8))
        .map(|chunk| left_pad(chunk, text.tokenizer.pad_id()))
        .collect())
}
