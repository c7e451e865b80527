//! `rlhf bench score`: the scoring passes of a PPO step, as the reference and reward actors
//! run them, on random prompt and response tokens: the reference policy's log-probs of
//! the response tokens, and the reward model's scalar head at each sequence's last token.
//! Tokens/s counts every token of `prompt ++ response`.

use super::shape::{load_folder, random_ids, ShapeArgs};
use super::sys;
use crate::system::reward::ModelReward;
use crate::system::scorers::{reward_apply, Reference, RewardEngine};
use clap::{Args, ValueEnum};
use rlhf::model::{Head, Model};
use rlhf::rng::Rng;
use rlhf::rollout::RolloutBatch;
use rlhf::sampling::Sampling;
use serde_json::json;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scorer {
    Reference,
    Reward,
    Both,
}

/// Settings of `rlhf bench score`.
#[derive(Args, Clone)]
pub struct ScoreBench {
    /// Which pass to time.
    #[arg(long, value_enum, default_value_t = Scorer::Both)]
    pub scorer: Scorer,
    /// Reward model folder (scalar head). Defaults to --model with a fresh scalar head, or
    /// to a random model of the shape flags.
    #[arg(long, value_name = "DIR")]
    pub reward_model: Option<PathBuf>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: i64,
    #[arg(long, default_value_t = 64)]
    pub prompt_len: i64,
    /// Response tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub response_len: i64,
}

pub fn run(shape: &ShapeArgs, s: &ScoreBench) -> anyhow::Result<()> {
    shape.setup()?;
    anyhow::ensure!(
        s.batch > 0 && s.prompt_len > 0 && s.response_len > 0,
        "--batch, --prompt-len and --response-len must be at least 1"
    );
    let positions = s.prompt_len + s.response_len;
    let tokens = (s.batch * positions) as f64;
    let settings = |name: &str| json!({"bench": name, "batch": s.batch, "prompt_len": s.prompt_len, "response_len": s.response_len});
    if s.scorer != Scorer::Reward {
        let model = shape.build_model(Head::LanguageModel, positions, &shape.device)?;
        let batch = random_rollout(&model, s);
        let config = model.config().clone();
        let flops = sys::forward_flops(config.num_parameters(), s.batch * positions);
        let reference = Reference {
            model,
            sampling: Sampling::default(),
        };
        shape.time(
            &config,
            "tokens",
            settings("score-reference"),
            flops,
            || {
                let scored = reference.add_ref_logprobs(batch.shallow_clone());
                anyhow::ensure!(scored.ref_logprobs.is_some(), "no reference log-probs");
                Ok(tokens)
            },
        )?;
    }
    if s.scorer != Scorer::Reference {
        let model = match &s.reward_model {
            Some(dir) => load_folder(
                dir,
                Head::Scalar,
                (&shape.dtype, &shape.device),
                positions,
                None,
            )?,
            None => shape.build_model(Head::Scalar, positions, &shape.device)?,
        };
        let batch = random_rollout(&model, s);
        let config = model.config().clone();
        let flops = sys::forward_flops(config.num_parameters(), s.batch * positions);
        let mut engine = RewardEngine::new(ModelReward { model });
        let mut settings = settings("score-reward");
        if let Some(dir) = &s.reward_model {
            settings["model"] = json!(dir.display().to_string());
        }
        shape.time(&config, "tokens", settings, flops, || {
            let scored = reward_apply(&mut engine, batch.shallow_clone())?;
            anyhow::ensure!(scored.scores.is_some(), "no scores");
            Ok(tokens)
        })?;
    }
    Ok(())
}

/// A rollout batch of random, unpadded prompts and full-length responses (no EOS).
fn random_rollout(model: &Model, s: &ScoreBench) -> RolloutBatch {
    let vocab = model.config().vocab_size;
    let mut rng = Rng::new(1);
    let prompt_ids = random_ids(&mut rng, s.batch, s.prompt_len, vocab);
    let response_ids = random_ids(&mut rng, s.batch, s.response_len, vocab);
    let cpu = (Kind::Float, Device::Cpu);
    RolloutBatch {
        id: 0,
        policy_version: 0,
        prompt_mask: Tensor::ones_like(&prompt_ids),
        prompt_ids,
        response_mask: Tensor::ones([s.batch, s.response_len], cpu),
        behaviour_logprobs: Tensor::zeros([s.batch, s.response_len], cpu),
        response_ids,
        ended_with_eos: Tensor::zeros([s.batch], (Kind::Bool, Device::Cpu)),
        ref_logprobs: None,
        scores: None,
        monitor_scores: None,
    }
}
