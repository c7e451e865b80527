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
