//! `rlhf node`: join a trainer's cluster and serve one of its actors there (see
//! [`crate::system::node`]).

use crate::system::cluster::read_secret;
use crate::system::node;
use crate::system::node::{serve_policy, serve_reward, NodeOptions};
use crate::system::reward::{self, BuildContext};
use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};
use rlhf::config::{PpoStage, RewardConfig, RunConfig};
use rlhf::device::parse_device;
use rlhf::model::{Head, Model};
use std::path::PathBuf;
use std::sync::Arc;

/// The actor a node hosts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Role {
    /// The reward actor of a PPO run (`[ppo.reward] kind = "remote"`).
    Reward,
    /// A generator replica (`[ppo.actors.generator] nodes`).
    Generator,
    /// A reference-policy replica (`[ppo.actors.reference] nodes`).
    Reference,
}

/// `rlhf node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The actor this node hosts.
    #[arg(long, value_enum, default_value_t = Role::Reward)]
    pub role: Role,
    /// The trainer's cluster address (HOST:PORT); by default the config's
    /// `[ppo.reward] listen` when that section is `kind = "remote"` (reward), or its
    /// `[ppo.cluster] listen` (generator, reference).
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// Run configuration; the trainer's own file works. A reward node serves its
    /// `[ppo.reward]`, where `kind = "remote"` means the neural reward model at
    /// `ppo.reward_model` (on `[ppo.actors.reward]`'s device and threads); its cluster
    /// secret is that remote section's `secret_file`, else its `secret_env` variable (when
    /// `[ppo.reward]` is not remote, `RLHF_CLUSTER_SECRET`). A generator or reference node
    /// serves the policy at `ppo.policy` (in `ppo.dtype`, on `[ppo.actors.<role>]`'s device
    /// and threads) with `[ppo.cluster]`'s secret and TLS. Never a flag. With TLS the node
    /// connects encrypted, trusting the section's `ca`.
    #[arg(long, default_value = "configs/default.toml")]
    pub config: PathBuf,
    /// This node's name in the trainer's logs, errors and metric labels (default
    /// `<role>-<pid>`).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: &NodeArgs) -> anyhow::Result<()> {
    let config = RunConfig::load(&args.config)?;
    let stage = RunConfig::section(&config.ppo, "ppo", &args.config)?;
    let role = match args.role {
        Role::Reward => return reward_node(args, stage),
        Role::Generator => node::Role::Generator,
        Role::Reference => node::Role::Reference,
    };
    let cluster = &stage.cluster;
    let secret = read_secret(cluster.secret_file.as_deref(), &cluster.secret_env)
        .with_context(|| args.config.display().to_string())?;
    let placement = match role {
        node::Role::Generator => &stage.actors.generator,
        node::Role::Reference => &stage.actors.reference,
    };
    let (path, dtype, device) = (stage.policy.clone(), stage.dtype, placement.device.clone());
    let load = Box::new(move || {
        Ok(Model::load(&path, Head::LanguageModel, dtype, parse_device(&device)?)?.0)
    });
    serve_policy(
        role,
        load,
        placement.threads,
        NodeOptions {
            connect: args
                .connect
                .clone()
                .unwrap_or_else(|| cluster.listen.clone()),
            secret,
            name: node_name(args, role.name()),
            tls: cluster.tls.clone(),
        },
    )
}

fn node_name(args: &NodeArgs, role: &str) -> String {
    args.name
        .clone()
        .unwrap_or_else(|| format!("{role}-{}", std::process::id()))
}

fn reward_node(args: &NodeArgs, stage: &PpoStage) -> anyhow::Result<()> {
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
    serve_reward(
        reward,
        NodeOptions {
            connect,
            secret,
            name: node_name(args, "reward"),
            tls,
        },
    )
}
