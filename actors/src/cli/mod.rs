//! Argument parsing and dispatch. Each subcommand's flags are documented by `--help`.

mod eval;
pub mod generate;
mod node;
mod plan;

use crate::pipeline::init;
use crate::system::{runtime, telemetry};
use crate::{bench, stages};
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use rlhf::config::{MetricsConfig, RunConfig};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rlhf",
    version,
    about = "Align language models with human feedback: SFT, reward model, PPO."
)]
pub struct Cli {
    /// Log lines as human-readable text or as JSON objects.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Serve Prometheus metrics at http://ADDR/metrics while a training command runs
    /// (HOST:PORT, or `off`); overrides the config's `[metrics] listen`.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// `--resume` of the supervised stages.
#[derive(clap::Args)]
pub struct ResumeArg {
    /// Continue from the newest valid training-state checkpoint in `<run_dir>/<stage>/state/`
    /// (saying which, and which newer ones were skipped as corrupt); without one, start over.
    #[arg(long)]
    pub resume: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build the embedded world's tokenizer and base model into the run directory.
    Init {
        /// Run configuration (TOML).
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
    },
    /// The whole method on the embedded world: data, pretraining, SFT, labeling, RM, PPO,
    /// PPO-ptx, PPO against the gold labeler, and the evaluation report. Finished stages are
    /// not redone.
    Pipeline {
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
    },
    /// Pretrain a language model on plain text (the config's [pretrain] section).
    Pretrain {
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Stage 1: supervised fine-tuning on demonstrations (the config's [sft] section).
    Sft {
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Stage 2: the reward model on K-wise rankings (the config's [rm] section).
    Rm {
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// DPO on ranked responses from the SFT policy (the config's [dpo] section).
    Dpo {
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Stage 3: PPO (and PPO-ptx) on the actor system (the config's [ppo] section).
    Ppo {
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
        #[command(flatten)]
        resume: ResumeArg,
    },
    /// Compare models on your prompts, judged by a reward model: win rates against a
    /// baseline with bootstrap intervals, per category, and perplexity on your text.
    Eval(eval::EvalArgs),
    /// Complete prompts with a model in Hugging Face layout.
    Generate(generate::GenerateArgs),
    /// The memory plan: bytes per actor and device (weights, gradients, optimizer state,
    /// KV cache, activations) against each device's budget; fails naming the actor, the
    /// device and the shortfall when a stage cannot fit. Training commands run the same
    /// check at start.
    Plan(plan::PlanArgs),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Join a trainer's cluster as a remote actor: `--role reward` serves the reward of
    /// --config to the trainer at --connect (its `[ppo.reward] kind = "remote"`) until the
    /// trainer finishes. The cluster secret comes from the config's secret file or the
    /// environment, never from a flag.
    Node(node::NodeArgs),
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // ractor's own spans and events are internals; its warnings still show.
        tracing_subscriber::EnvFilter::new("info,ractor=warn,ractor_cluster=warn")
    });
    // Actor messages are debug spans: at RUST_LOG=debug each one's close is logged with its
    // actor, policy_version, batch id and busy time.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        // Colours only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(config) = cli.command.training_config() {
        // The memory plan before any model is loaded.
        plan::check(config, cli.command.stages())?;
        start_metrics(config, cli.metrics_addr.as_deref())?;
    }
    match cli.command {
        Command::Init { config } => init::run(&config),
        Command::Pipeline { config } => runtime()?.block_on(crate::pipeline::run(&config)),
        Command::Pretrain { config, resume } => {
            runtime()?.block_on(stages::pretrain::run(&config, resume.resume))
        }
        Command::Sft { config, resume } => {
            runtime()?.block_on(stages::sft::run(&config, resume.resume))
        }
        Command::Rm { config, resume } => {
            runtime()?.block_on(stages::rm::run(&config, resume.resume))
        }
        Command::Ppo { config, resume } => {
            runtime()?.block_on(stages::ppo::run(&config, resume.resume))
        }
        Command::Dpo { config, resume } => {
            runtime()?.block_on(stages::dpo::run(&config, resume.resume))
        }
        Command::Eval(args) => eval::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Bench(command) => bench::run(command),
        Command::Node(args) => node::run(&args),
    }
}

impl Command {
    /// The config of a command that trains (and so serves metrics).
    fn training_config(&self) -> Option<&PathBuf> {
        match self {
            Command::Pipeline { config }
            | Command::Pretrain { config, .. }
            | Command::Sft { config, .. }
            | Command::Rm { config, .. }
            | Command::Dpo { config, .. }
            | Command::Ppo { config, .. } => Some(config),
            _ => None,
        }
    }

    /// The stages a training command runs, whose memory plan it checks at start.
    fn stages(&self) -> &'static [&'static str] {
        match self {
            Command::Pretrain { .. } => &["pretrain"],
            Command::Sft { .. } => &["sft"],
            Command::Rm { .. } => &["rm"],
            Command::Dpo { .. } => &["dpo"],
            Command::Ppo { .. } => &["ppo"],
            Command::Pipeline { .. } => &["pretrain", "sft", "rm", "dpo", "ppo"],
            _ => &[],
        }
    }
}

/// Start the metrics endpoint before the first step. An address the user chose (the flag
/// or a non-default config value) must work; the default one is best effort, so two runs
/// on one machine do not fail for it.
fn start_metrics(config: &std::path::Path, flag: Option<&str>) -> anyhow::Result<()> {
    let configured = RunConfig::load(config)?.metrics.listen;
    let chosen = flag.unwrap_or(&configured);
    let strict = flag.is_some() || configured != MetricsConfig::default().listen;
    let what = if flag.is_some() {
        "--metrics-addr".to_string()
    } else {
        format!("{}: [metrics] listen", config.display())
    };
    let Some(addr) = telemetry::parse_listen(chosen).with_context(|| what.clone())? else {
        return Ok(());
    };
    match telemetry::serve(addr) {
        Ok(()) => Ok(()),
        Err(e) if !strict => {
            tracing::warn!("no metrics endpoint: {e:#} (set --metrics-addr or [metrics] listen)");
            Ok(())
        }
        Err(e) => Err(e.context(what)),
    }
}
