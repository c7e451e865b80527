//! `rlhf-actors`: the actor system that runs each stage, the stage loops, the embedded
//! world's pipeline, the evaluation report, the benchmarks and the command line (`cli`,
//! which the `rlhf` binary calls).
//!
//! The rooms, each a folder; an arrow is "uses", and there are no circles:
//!
//! ```text
//! cli ──> bench, pipeline, report, stages, system      argument parsing and dispatch
//! bench ──> stages, report, system                      `rlhf bench`: throughput figures
//! pipeline ──> stages, report, system                   `rlhf pipeline`: the embedded world
//! report ──> system                                     `rlhf eval`, report.md, PNG plots
//! stages ──> system                                     the loops: pretrain, SFT, RM, PPO
//! system                                                the actors: workers, learner,
//!                                                       generator, reference and reward
//!                                                       actors, nodes, shutdown, telemetry
//! ```
//! `completions.rs` (text in, text out with a model) is shared by the CLI, the pipeline and
//! the report.
//!
//! Plug-ins use [`reward`]: the contract every reward actor implements, wherever it runs
//! (in process, behind HTTP, or on another node of the cluster), and [`node`] to serve one.

pub mod cli;
mod system;

mod bench;
mod completions;
mod pipeline;
mod report;
mod stages;

pub use system::{allocator, node, reward};

/// Held by a test while it seeds libtorch's global generator and initialises a random model
/// from it, so that tests running in parallel threads do not interleave their draws (two
/// copies of one seeded model must come out equal).
#[cfg(test)]
static GLOBAL_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `init` holding [`GLOBAL_RNG`], after seeding libtorch's generator with `seed`.
#[cfg(test)]
fn seeded<T>(seed: i64, init: impl FnOnce() -> T) -> T {
    let _held = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    init()
}
