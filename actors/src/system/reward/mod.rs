//! The reward-actor contract: what every reward receives and returns, wherever it runs (in
//! the trainer's process, behind an HTTP service, or on another node of the cluster).
//!
//! A reward implements [`Reward`]: one score per row of a [`ScoreRequest`], which carries
//! both the text (the prompt as the data file gives it, the response without EOS) and the
//! exact token ids (for neural rewards that must see what the policy sampled). The PPO
//! stage builds requests from rollout batches with a [`Decoder`] and checks every answer
//! with [`checked_scores`], so a plug-in that returns the wrong number of scores or a NaN
//! fails the run with a clear error instead of training on garbage.

mod build;
mod contract;
mod http;
mod model;
pub(crate) mod remote;
mod rules;
mod weighted;

pub use build::{build, BuildContext, LoadModel};
pub use contract::{checked_scores, Decoder, Reward, ScoreRequest};
pub use http::HttpReward;
pub use model::ModelReward;
pub use remote::RemoteReward;
pub use rules::Rules;
pub use weighted::Weighted;
