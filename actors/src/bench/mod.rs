//! `rlhf bench`: throughput of the engine's hot paths on a model of a given shape (random
//! weights) or a Hugging Face folder (`--model DIR`, so the Python peers run the very same
//! weights). Each command runs one warm-up and `--repeats` timed repeats (optionally
//! waiting for an idle machine before each), printing one JSON line per repeat and a
//! summary line with min/median/max, the achieved FLOP/s against the machine's measured
//! matmul peak for the dtype, and the peak resident memory (see [`crate::bench::sys`]).

//!
//! The files: [`shape`] (the model and timing flags every bench shares), [`generate`],
//! [`train`], [`score`], [`ppo`] (with [`nodes`], its replicas as node processes) and
//! [`scaling`] (one command each), [`project`] (a model of
//! the PPO pipeline on more devices, from `ppo`'s measurements), and [`sys`]
//! (FLOP counts, the matmul peak, peak memory, the idle-machine wait).

mod generate;
mod nodes;
mod ppo;
mod project;
mod scaling;
mod score;
mod shape;
mod sys;
mod train;

use clap::Subcommand;
use shape::ShapeArgs;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Generation tokens per second (prefill + decode with the KV cache, no early stop).
    Generate {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: generate::GenerateBench,
    },
    /// Learner throughput: SFT tokens per second or RM comparisons per second, each a full
    /// optimizer step (forward, backward, clipping, AdamW).
    Train {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: train::TrainBench,
    },
    /// Scoring tokens per second of the reference policy (log-probs of given response
    /// tokens) and of the reward model (scalar head at each sequence's last token), as the
    /// reference and reward actors run them.
    Score {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: score::ScoreBench,
    },
    /// A full PPO step on the actor system (generator, reference, reward, learner), run
    /// synchronously (max_staleness 0) and asynchronously (1) in the same invocation:
    /// samples/s, per-phase seconds, and the speed-up against the ideal overlap.
    Ppo {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: ppo::PpoBench,
    },
    /// Predicted PPO episodes/s with more generator devices, from the per-stage costs of
    /// `rlhf bench ppo` runs (a discrete-event model, checked against those runs): a table
    /// and a PNG chart.
    Project {
        #[command(flatten)]
        settings: project::ProjectBench,
    },
    /// Step time of a training step and of a generation run as the batch size doubles and
    /// as the model doubles (d_model or layers): a table and a PNG chart.
    Scaling {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: scaling::ScalingBench,
    },
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ppo { shape, settings } => {
            shape.setup()?;
            crate::system::runtime()?.block_on(ppo::run(&shape, &settings))
        }
        BenchCommand::Generate { shape, settings } => generate::run(&shape, &settings),
        BenchCommand::Train { shape, settings } => train::run(&shape, &settings),
        BenchCommand::Score { shape, settings } => score::run(&shape, &settings),
        BenchCommand::Scaling { shape, settings } => scaling::run(&shape, &settings),
        BenchCommand::Project { settings } => project::run(&settings),
    }
}
