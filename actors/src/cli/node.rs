//! `rlhf node`: join a trainer's cluster and serve one of its actors there (see
//! [`crate::system::node`]).

use crate::system::node::{serve_reward, NodeOptions};
use crate::system::reward::remote::read_secret;
use crate::system::reward::{self, BuildContext};
use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use rlhf::config::{RewardConfig, RunConfig};
use rlhf::device::parse_device;
use rlhf::model::{Head, Model};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// remote, the `RLHF_CLUSTER_SECRET` variable. Never a flag. With `[ppo.reward.tls]` the
    /// node connects over TLS, trusting its `ca`.
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
    let (served, secret, listen, tls) = match &stage.reward {
        RewardConfig::Remote(remote) => (
            RewardConfig::Model,
            read_secret(remote.secret_file.as_deref(), &remote.secret_env),
            Some(remote.listen.clone()),
            remote.tls.clone(),
        ),
        other => (
            other.clone(),
            read_secret(None, "RLHF_CLUSTER_SECRET"),
            None,
            None,
        ),
    };
    let secret = secret.with_context(|| args.config.display().to_string())?;
    if served.has_remote() {
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
            tls,
        },
    )
}
