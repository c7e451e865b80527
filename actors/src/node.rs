//! `rlhf node`: this process joins a trainer's ractor_cluster and serves one of its actors
//! there. The reward role is the one built (`[ppo.reward] kind = "remote"` on the trainer).
//!
//! Plug-ins serve their own [`Reward`] the same way, with [`serve_reward`]:
//!
//! ```no_run
//! use rlhf_actors::node::{serve_reward, NodeOptions};
//! use rlhf_actors::reward::{Reward, ScoreRequest};
//!
//! struct Shouting;
//! impl Reward for Shouting {
//!     fn score(&mut self, r: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
//!         Ok(r.responses.iter().map(|t| t.matches('!').count() as f32).collect())
//!     }
//! }
//!
//! fn main() -> anyhow::Result<()> {
//!     serve_reward(
//!         Box::new(Shouting),
//!         NodeOptions {
//!             connect: "127.0.0.1:4697".into(),
//!             secret: NodeOptions::secret_from_env_or_file("RLHF_CLUSTER_SECRET", None)?,
//!             name: "shouting".into(),
//!         },
//!     )
//! }
//! ```

use crate::reward::remote::read_secret;
use crate::reward::remote::serve::{serve, Session};
use crate::reward::{self, BuildContext, Reward};
use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use rlhf::config::{RewardConfig, RunConfig};
use rlhf::device::parse_device;
use rlhf::model::{Head, Model};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a node connects, as whom, with which secret.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The trainer's cluster address, `HOST:PORT` (its `[ppo.reward] listen`).
    pub connect: String,
    /// The cluster's shared secret (see [`NodeOptions::secret_from_env_or_file`]).
    pub secret: String,
    /// This node's name in the trainer's logs and errors; unique per cluster, no `@`.
    pub name: String,
}

impl NodeOptions {
    /// The secret as the trainer reads it: the trimmed contents of `file` when given, else
    /// the environment variable `env` (the trainer's default is `RLHF_CLUSTER_SECRET`).
    pub fn secret_from_env_or_file(env: &str, file: Option<&Path>) -> anyhow::Result<String> {
        read_secret(file, env)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.name.is_empty() || self.name.contains('@') {
            bail!("node name {:?}: not empty and without `@`", self.name);
        }
        if self.connect.is_empty() {
            bail!("no trainer address to connect to (HOST:PORT)");
        }
        Ok(())
    }
}

/// Serve `reward` as a remote reward node: join the trainer's cluster at `options.connect`,
/// answer its score requests (on a dedicated thread) until the trainer goes away or the
/// process gets Ctrl-C / SIGTERM, then return `Ok`. Errors: the trainer is unreachable for
/// 60 s, refuses the secret, or the handshake does not finish in 30 s. Blocking; it runs its
/// own async runtime, so call it from `main`, not from async code.
pub fn serve_reward(reward: Box<dyn Reward>, options: NodeOptions) -> anyhow::Result<()> {
    options.check()?;
    // Intra-op threads for the reward's tensor work, as set on the calling thread.
    let threads = tch::get_num_threads();
    let runtime = crate::cli::runtime()?;
    let result = runtime.block_on(serve(
        reward,
        Session {
            connect: &options.connect,
            secret: &options.secret,
            name: &options.name,
            threads,
        },
    ));
    // Cluster tasks may still wait on sockets; they hold nothing worth waiting for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The actor a node hosts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Role {
    /// The reward actor of a PPO run.
    Reward,
}

/// `rlhf node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The actor this node hosts (only `reward` for now).
    #[arg(long, value_enum, default_value_t = Role::Reward)]
    pub role: Role,
    /// The trainer's cluster address (HOST:PORT); by default the config's
    /// `[ppo.reward] listen` when that section is `kind = "remote"`.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Run configuration; the trainer's own file works. The node serves its `[ppo.reward]`,
    /// where `kind = "remote"` means the neural reward model at `ppo.reward_model` (on
    /// `[ppo.actors.reward]`'s device and threads). The cluster secret is that remote
    /// section's `secret_file`, else its `secret_env` variable; when `[ppo.reward]` is not
    /// remote, the `RLHF_CLUSTER_SECRET` variable. Never a flag.
    #[arg(long, default_value = "configs/default.toml")]
    pub config: PathBuf,
    /// This node's name in the trainer's logs and errors (default `reward-<pid>`).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: &NodeArgs) -> anyhow::Result<()> {
    let Role::Reward = args.role;
    let config = RunConfig::load(&args.config)?;
    let stage = RunConfig::section(&config.ppo, "ppo", &args.config)?;
    let (served, secret, listen) = match &stage.reward {
        RewardConfig::Remote(remote) => (
            RewardConfig::Model,
            read_secret(remote.secret_file.as_deref(), &remote.secret_env),
            Some(remote.listen.clone()),
        ),
        other => (
            other.clone(),
            read_secret(None, "RLHF_CLUSTER_SECRET"),
            None,
        ),
    };
    let secret = secret.with_context(|| args.config.display().to_string())?;
    if has_remote(&served) {
        bail!(
            "{}: [ppo.reward] has a `kind = \"remote\"` part: a node serves its reward here",
            args.config.display()
        );
    }
    let connect = args.connect.clone().or(listen).ok_or_else(|| {
        anyhow!("--connect HOST:PORT: the trainer's address (its [ppo.reward] listen)")
    })?;
    let (path, dtype) = (stage.reward_model.clone(), stage.dtype);
    let context = BuildContext {
        model: Arc::new(move |device: &str| {
            Ok(Model::load(&path, Head::Scalar, dtype, parse_device(device)?)?.0)
        }),
        runtime: None,
    };
    let placement = &stage.actors.reward;
    tch::set_num_threads(placement.threads);
    let reward = reward::build(&served, &placement.device, &context)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("reward-{}", std::process::id()));
    serve_reward(
        reward,
        NodeOptions {
            connect,
            secret,
            name,
        },
    )
}

fn has_remote(config: &RewardConfig) -> bool {
    match config {
        RewardConfig::Remote(_) => true,
        RewardConfig::Weighted { parts } => parts.iter().any(|p| has_remote(&p.reward)),
        _ => false,
    }
}
