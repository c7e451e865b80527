//! The learner actors: they own the trainable model(s) and optimizer(s) on a dedicated
//! thread and are the only place weights change. Two engines, two actors of one shape:
//! [`SupervisedLearner`] runs a `Trainer` (pretraining, SFT, RM) and [`PpoLearnerActor`] a
//! [`PpoEngine`] (policy and value model). Both answer the [`Common`] requests (save,
//! checkpoint, hand out weights) the same way, so the checkpoint code serves both.

mod common;
mod ppo;
mod supervised;

pub use common::{ask_common, Common, LearnerArgs, LearnerMsg};
pub use ppo::{PpoEngine, PpoLearnerActor, PpoMsg};
pub use supervised::{SupervisedLearner, SupervisedMsg};
