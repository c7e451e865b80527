//! Fault injection: the test-only seam through which tests make a run fail on purpose, to
//! watch it fail cleanly (a NaN step stopped or skipped, a reward actor that errors).
//!
//! Everything here is live only with the `fault-injection` cargo feature, which the
//! actors crate turns on for its tests alone; in a build without it each function reads
//! nothing and does nothing, and the poison hooks of [`PpoLearner`] and [`Trainer`] do not
//! exist. The variables, read when the feature is on:
//!
//! - `RLHF_NAN_AT_STEP=N`: the N-th training step of a supervised stage's learner (its
//!   N-th train message, [`poison_trainer_if`]), or the N-th PPO update (its last
//!   minibatch step, [`arm_ppo_learner`]), gets a NaN loss.
//! - `RLHF_FAIL_REWARD_AT_BATCH=N`: the reward actor fails on rollout batch N
//!   ([`fail_reward_at_batch`]).

use crate::ppo::PpoLearner;
use crate::train::Trainer;

/// `RLHF_NAN_AT_STEP` as a number; always `None` without the `fault-injection` feature.
pub fn nan_at_step() -> Option<u64> {
    var("RLHF_NAN_AT_STEP")
}

/// `RLHF_FAIL_REWARD_AT_BATCH` as a number: the rollout batch id on which the reward actor
/// fails. Always `None` without the `fault-injection` feature.
pub fn fail_reward_at_batch() -> Option<u64> {
    var("RLHF_FAIL_REWARD_AT_BATCH")
}

/// Makes the learner's `RLHF_NAN_AT_STEP`-th update from now NaN (its
/// `poison_update`) when that variable is set; otherwise nothing.
pub fn arm_ppo_learner(learner: &mut PpoLearner) {
    #[cfg(feature = "fault-injection")]
    if let Some(n) = nan_at_step() {
        learner.poison_update(n);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = learner;
}

/// Makes the trainer's next step NaN (its `poison_next_step`) when
/// `RLHF_NAN_AT_STEP` equals `train_message`, the 1-based count of train messages the
/// learner has received including this one; otherwise nothing.
pub fn poison_trainer_if(trainer: &mut Trainer, train_message: u64) {
    #[cfg(feature = "fault-injection")]
    if nan_at_step() == Some(train_message) {
        trainer.poison_next_step();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (trainer, train_message);
}

#[cfg(feature = "fault-injection")]
fn var(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok())
}

#[cfg(not(feature = "fault-injection"))]
fn var(_name: &str) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_are_read_only_with_the_feature() {
        // No other test reads these variables.
        std::env::set_var("RLHF_NAN_AT_STEP", "3");
        std::env::set_var("RLHF_FAIL_REWARD_AT_BATCH", "not a number");
        let expected = cfg!(feature = "fault-injection").then_some(3);
        assert_eq!(nan_at_step(), expected);
        assert_eq!(fail_reward_at_batch(), None);
        std::env::remove_var("RLHF_NAN_AT_STEP");
        std::env::remove_var("RLHF_FAIL_REWARD_AT_BATCH");
        assert_eq!(nan_at_step(), None);
    }
}
