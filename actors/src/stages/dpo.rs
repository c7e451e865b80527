//! `rlhf dpo`: direct preference optimisation on the reward model's rankings, from the SFT
//! policy, on the learner like SFT and RM. The SFT policy is also the reference: before the
//! first step the learner (whose weights are still the SFT policy's) computes every
//! ranked response's reference log-probability once, and the stage keeps them in
//! `reference_logps.json` for a resumed run. No second model is held.

use super::rm::ranked_splits;
use super::run_dir::RunDir;
use super::supervised::{train, Best, Examples, Session};
use crate::system::learner::SupervisedMsg;
use crate::system::rpc::ask;
use anyhow::Context;
use ractor::ActorRef;
use rlhf::config::RunConfig;
use rlhf::data::{batches, collate_dpo, RankedSequences};
use rlhf::dpo::DpoObjective;
use rlhf::model::Head;
use rlhf::text_side::TextSide;
use rlhf::train::Batch;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Tensor;
use tracing::info;

/// Ranked examples with each row's reference log-probability.
struct PreferenceSet {
    items: Vec<RankedSequences>,
    /// Per item, per row: log pi_ref of the response (empty until computed).
    reference: Vec<Vec<f32>>,
    objective: DpoObjective,
    pad_id: i64,
}

impl PreferenceSet {
    fn batch(&self, indices: &[usize]) -> rlhf::data::DpoBatch {
        let picked: Vec<&RankedSequences> = indices.iter().map(|&i| &self.items[i]).collect();
        collate_dpo(&picked, self.pad_id)
    }
}

impl Examples for PreferenceSet {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn collate(&self, indices: &[usize]) -> Batch {
        let mut batch = self.batch(indices);
        let reference: Vec<f32> = indices
            .iter()
            .flat_map(|&i| self.reference[i].iter().copied())
            .collect();
        batch.reference = Tensor::from_slice(&reference);
        Batch::Dpo(batch, self.objective.clone())
    }
}

/// `reference_logps.json`: the reference log-probs of both splits, item by item.
#[derive(Serialize, Deserialize)]
struct ReferenceFile {
    train: Vec<Vec<f32>>,
    validation: Vec<Vec<f32>>,
}

pub async fn run(config_path: &Path, resume: bool) -> anyhow::Result<()> {
    let config = RunConfig::load(config_path)?;
    let mut stage = RunConfig::section(&config.dpo, "dpo", config_path)?.clone();
    // Off unless asked for: the reference log-probs are computed without dropout.
    stage.dropout = Some(stage.dropout.unwrap_or(0.0));
    let objective = stage.objective.clone().unwrap_or_default();
    let mut dir = RunDir::create(&config.run_dir.join("dpo"), &config)?;
    let text = TextSide::load(&stage.init, &config.chat)?;
    let (_, train_items, val_items) = ranked_splits("dpo", &config, &stage, &text, &mut dir)?;
    let set = |items| PreferenceSet {
        items,
        reference: Vec::new(),
        objective: objective.clone(),
        pad_id: text.tokenizer.pad_id(),
    };
    let (mut train_set, mut val_set) = (set(train_items), set(val_items));
    let learner = super::supervised::start_learner(
        "dpo",
        &stage,
        Head::LanguageModel,
        (train_set.len(), val_set.len()),
        config.seed,
    )
    .await?;
    let cache = dir.path("reference_logps.json");
    let cached = match resume {
        true => read_cache(&cache, &train_set, &val_set)?,
        false => None,
    };
    let file = match cached {
        Some(file) => {
            info!(file = %cache.display(), "dpo: reference log-probs from the run directory");
            file
        }
        None => {
            info!("dpo: reference log-probs of the SFT policy");
            let file = ReferenceFile {
                train: reference_logps(&learner, &train_set, stage.batch_size).await?,
                validation: reference_logps(&learner, &val_set, stage.batch_size).await?,
            };
            let bytes = serde_json::to_vec(&file).expect("log-probs serialise");
            rlhf::model::weights::write_atomic(&cache, &bytes)?;
            file
        }
    };
    train_set.reference = file.train;
    val_set.reference = file.validation;
    let trained = train(
        Session {
            name: "dpo",
            stage: &stage,
            seed: config.seed,
            learner: &learner,
            text: &text,
            resume,
        },
        &mut dir,
        (&train_set, &val_set),
        Best::LowestLoss,
    )
    .await;
    learner.stop(None);
    trained.map(|_| ())
}

/// Every row's response log-probability under the learner's current weights, item by item,
/// computed in batches of `batch_size` prompts.
async fn reference_logps(
    learner: &ActorRef<SupervisedMsg>,
    set: &PreferenceSet,
    batch_size: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let order = batches(set.items.len(), batch_size, None);
    let collated: Vec<Batch> = order
        .iter()
        .map(|idx| Batch::Dpo(set.batch(idx), set.objective.clone()))
        .collect();
    let logps = ask(learner, "learner", |reply| {
        SupervisedMsg::SequenceLogps(collated, reply)
    })
    .await?;
    let mut out = Vec::with_capacity(set.items.len());
    for (idx, rows) in order.iter().zip(logps) {
        let mut rows = rows.into_iter();
        for &i in idx {
            out.push(rows.by_ref().take(set.items[i].rows.len()).collect());
        }
    }
    Ok(out)
}

/// The cached log-probs when they fit these sets row for row; `None` when there are none
/// or they were made for other data (then they are computed again).
fn read_cache(
    path: &Path,
    train_set: &PreferenceSet,
    val_set: &PreferenceSet,
) -> anyhow::Result<Option<ReferenceFile>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: ReferenceFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not a reference log-prob file", path.display()))?;
    let fits = |logps: &[Vec<f32>], set: &PreferenceSet| {
        logps.len() == set.items.len()
            && logps
                .iter()
                .zip(&set.items)
                .all(|(l, item)| l.len() == item.rows.len())
    };
    if fits(&file.train, train_set) && fits(&file.validation, val_set) {
        Ok(Some(file))
    } else {
        tracing::warn!(file = %path.display(), "dpo: cached reference log-probs do not fit the data; computing them again");
        Ok(None)
    }
}
