//! Stage 3, `rlhf ppo`: PPO (and PPO-ptx) as an actor system.
//!
//! ```text
//! prompts -> Generator -> ReferencePolicy -> RewardModel -> bounded channel -> Learner
//! Learner --(weights, version)--> Generator            (after every update)
//! ```
//! A producer task drives generation, reference log-probs and scoring; the consumer feeds
//! the learner and syncs weights back. Before generating batch k the producer waits until
//! the generator holds version k - max_staleness, so `max_staleness = 0` is synchronous PPO
//! and 1 lets batch k+1 be generated while batch k trains. No batch is ever more than
//! `max_staleness` versions old; each step records its staleness.

mod checkpoint;
pub mod generator;
mod metrics;
pub mod scorers;
mod stage;

pub use stage::{pipeline, run, run_variant, spawn, ModelSource, Run, Tokens};
