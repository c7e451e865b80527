//! The stage loops. Pretraining, SFT, RM and DPO share one supervised loop on the learner
//! actor ([`supervised`]); PPO runs the four actors of the PPO system ([`ppo`]). Every
//! stage writes a run directory ([`run_dir`]), shows progress ([`progress`]) and keeps
//! training-state checkpoints for exact resume ([`resume`]).

pub mod dpo;
pub mod ppo;
pub mod pretrain;
pub mod progress;
pub mod resume;
pub mod rm;
pub mod run_dir;
pub mod sft;
pub mod supervised;
