//! `rlhf-actors`: the actor system that runs each stage, the orchestration of the embedded
//! world's pipeline, and the command line (`cli`, which the `rlhf` binary calls).
//!
//! Plug-ins use [`reward`]: the contract every reward actor implements, wherever it runs
//! (in process, behind HTTP, or on another node of the cluster).

pub mod allocator;
pub mod cli;
pub mod node;
pub mod reward;

mod bench;
mod bench_ppo;
mod bench_scaling;
mod bench_score;
mod bench_sys;
mod evaluate;
mod init;
mod learner;
mod pipeline;
mod plot;
mod ppo;
mod progress;
mod report;
mod run_dir;
mod serial;
mod shutdown;
mod stages;
mod telemetry;
mod worker;
