//! A node: this process joins a trainer's ractor_cluster and serves one of its actors
//! there (`rlhf node`, in [`crate::cli`]): the reward (`[ppo.reward] kind = "remote"` on
//! the trainer), or a generator or reference replica (`[ppo.actors.<role>] nodes`).
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
//!             tls: None,
//!         },
//!     )
//! }
//! ```

use crate::system::cluster::join::Session;
use crate::system::cluster::read_secret;
use crate::system::cluster::tls::connector;
use crate::system::reward::remote::serve::serve;
use crate::system::reward::Reward;
use rlhf::model::Model;

pub use crate::system::policy_node::node::Role;
use anyhow::bail;
use rlhf::config::TlsFiles;
use std::path::Path;
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
    /// The trainer's TLS (its `[ppo.reward.tls]`): connect encrypted, accepting a trainer
    /// whose certificate chains to `ca` (`cert` and `key` are the trainer's, unread here).
    pub tls: Option<TlsFiles>,
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
    // Intra-op threads for the reward's tensor work, as set on the calling thread.
    let threads = tch::get_num_threads();
    join(&options, |session| {
        Box::pin(serve(reward, threads, session))
    })
}

/// Serve the policy `load` builds as a generator or reference replica of the trainer at
/// `options.connect` (its `[ppo.actors.<role>] nodes`), its tensor work on a thread with
/// `threads` libtorch threads; otherwise as [`serve_reward`].
pub fn serve_policy(
    role: Role,
    load: Box<dyn FnOnce() -> anyhow::Result<Model> + Send>,
    threads: i32,
    options: NodeOptions,
) -> anyhow::Result<()> {
    join(&options, |session| {
        Box::pin(crate::system::policy_node::node::serve(
            role, load, threads, session,
        ))
    })
}

type Serving<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

/// Run `serve` with the session `options` describe on a runtime of its own.
fn join(
    options: &NodeOptions,
    serve: impl for<'a> FnOnce(Session<'a>) -> Serving<'a>,
) -> anyhow::Result<()> {
    options.check()?;
    let tls = match &options.tls {
        Some(files) => Some(connector(files, &options.connect)?),
        None => None,
    };
    let runtime = crate::system::runtime()?;
    let result = runtime.block_on(serve(Session {
        connect: &options.connect,
        secret: &options.secret,
        name: &options.name,
        tls,
    }));
    // Cluster tasks may still wait on sockets; they hold nothing worth waiting for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
