//! The reward a config asks for, built on the reward actor's thread.

use super::contract::Reward;
use super::http::HttpReward;
use super::model::ModelReward;
use super::remote::RemoteReward;
use super::rules::Rules;
use super::weighted::Weighted;
use rlhf::config::RewardConfig;
use rlhf::model::Model;
use std::sync::Arc;

/// Loads the neural reward model onto a device.
pub type LoadModel = Arc<dyn Fn(&str) -> anyhow::Result<Model> + Send + Sync>;

/// What building a reward may need besides its config.
#[derive(Clone)]
pub struct BuildContext {
    /// The reward model of `ppo.reward_model` (for `kind = "model"`).
    pub model: LoadModel,
    /// The trainer's async runtime, for rewards that talk to other processes.
    pub runtime: Option<tokio::runtime::Handle>,
}

pub fn build(
    config: &RewardConfig,
    device: &str,
    context: &BuildContext,
) -> anyhow::Result<Box<dyn Reward>> {
    Ok(match config {
        RewardConfig::Model => Box::new(ModelReward {
            model: (context.model)(device)?,
        }),
        RewardConfig::Rules { rules } => Box::new(Rules::new(rules)?),
        RewardConfig::Weighted { parts } => Box::new(Weighted {
            parts: parts
                .iter()
                .map(|p| Ok((p.weight, build(&p.reward, device, context)?)))
                .collect::<anyhow::Result<_>>()?,
        }),
        RewardConfig::Http(h) => Box::new(HttpReward::new(h)?),
        RewardConfig::Remote(r) => Box::new(RemoteReward::start(r, context.runtime.clone())?),
    })
}
