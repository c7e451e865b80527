//! `kind = "remote"`: the reward runs on another process (`rlhf node --role reward`, or a
//! plug-in calling [`crate::system::node::serve_reward`]) that joins the trainer's ractor_cluster.
//!
//! The trainer listens (a `NodeServer` on `listen`, the shared secret as its magic cookie);
//! a node connects, authenticates, and its reward actor joins the process group
//! [`wire::GROUP`], which ractor_cluster mirrors onto the trainer. Each batch is one RPC to
//! that actor with a bincode request ([`crate::system::serial`]); the answer is checked like every
//! other reward's. Every wait is bounded: joining by `wait_for_node_seconds`, each answer by
//! `timeout_seconds`, each batch by `1 + retries` tries.
//!
//! One `kind = "remote"` per trainer process: ractor_cluster numbers nodes per server, so two
//! servers in one process would confuse their peers' actors.

pub(crate) mod serve;
mod wire;

use super::contract::{checked_scores, Reward, ScoreRequest};
use crate::system::cluster::{self, Peer, Roster};
use anyhow::{anyhow, bail};
use ractor::rpc::CallResult;
use ractor::ActorRef;
use ractor_cluster::{NodeId, NodeServerMessage};
use rlhf::config::{OnDisconnect, RemoteRewardConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use wire::RewardNodeMsg;

/// How often waits look at the roster again.
const POLL: Duration = Duration::from_millis(20);

/// The runtime the cluster runs on: the trainer's, or our own when built outside one.
enum Runtime {
    Shared(tokio::runtime::Handle),
    Owned(tokio::runtime::Runtime),
}

impl Runtime {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        match self {
            Runtime::Shared(handle) => handle.block_on(f),
            Runtime::Owned(runtime) => runtime.block_on(f),
        }
    }
}

/// The node a batch goes to.
struct Node {
    id: NodeId,
    actor: ActorRef<RewardNodeMsg>,
    peer: Peer,
}

/// The trainer's side of a remote reward.
pub struct RemoteReward {
    config: RemoteRewardConfig,
    runtime: Runtime,
    server: ActorRef<NodeServerMessage>,
    roster: Arc<Roster>,
    node: Option<Node>,
}

/// Why one try of a batch failed.
enum Failure {
    /// The node's session closed (or its actor went away) before it answered.
    Lost,
    /// Anything worth another try: no answer in time, a malformed answer, a reward error.
    Retry(anyhow::Error),
}

impl RemoteReward {
    /// Listen on `config.listen` and wait up to `wait_for_node_seconds` for a reward node.
    /// Call from a plain thread (the reward actor's), not from async code: it blocks on
    /// `runtime` (or on a runtime of its own when there is none).
    pub fn start(
        config: &RemoteRewardConfig,
        runtime: Option<tokio::runtime::Handle>,
    ) -> anyhow::Result<RemoteReward> {
        let runtime = match runtime {
            Some(handle) => Runtime::Shared(handle),
            None => Runtime::Owned(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?,
            ),
        };
        let (server, roster) = runtime.block_on(cluster::trainer_server(
            "ppo.reward",
            "reward nodes",
            &config.listen,
            (config.secret_file.as_deref(), &config.secret_env),
            config.tls.as_ref(),
        ))?;
        info!(
            listen = %config.listen,
            "waiting up to {}s for a reward node (rlhf node --role reward --connect {})",
            config.wait_for_node_seconds,
            config.listen
        );
        let mut reward = RemoteReward {
            config: config.clone(),
            runtime,
            server,
            roster,
            node: None,
        };
        reward.node = Some(reward.wait_for_node("before the first batch")?);
        Ok(reward)
    }

    /// The first authenticated node whose reward actor has reached this side, within
    /// `wait_for_node_seconds`.
    fn wait_for_node(&self, when: &str) -> anyhow::Result<Node> {
        let wait = Duration::from_secs_f64(self.config.wait_for_node_seconds);
        let deadline = Instant::now() + wait;
        loop {
            if let Some(node) = self.find_node() {
                info!(node = %node.peer.name, "scoring on reward node {}", node.peer.label());
                return Ok(node);
            }
            if Instant::now() >= deadline {
                let hint = self.roster.refused_hint();
                bail!(
                    "no reward node joined the cluster at {} within {}s {when} (start one with \
                     `rlhf node --role reward --connect {}` and the same cluster secret){hint}",
                    self.config.listen,
                    self.config.wait_for_node_seconds,
                    self.config.listen
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn find_node(&self) -> Option<Node> {
        let (id, peer, cell) = self.roster.member_of(wire::GROUP, |_| false)?;
        Some(Node {
            id,
            actor: ActorRef::from(cell),
            peer,
        })
    }

    /// One try: the request to the node, its answer back.
    fn ask(&self, node: &Node, bytes: Vec<u8>, batch: u64) -> Result<Vec<f32>, Failure> {
        let timeout = Duration::from_secs_f64(self.config.timeout_seconds);
        let started = Instant::now();
        let answer = self.runtime.block_on(
            node.actor
                .call(|port| RewardNodeMsg::Score(bytes, port), Some(timeout)),
        );
        let timed_out = || {
            Failure::Retry(anyhow!(
                "remote reward node {} did not answer rollout batch {batch} within {}s",
                node.peer.label(),
                self.config.timeout_seconds
            ))
        };
        let reply = match answer {
            Ok(CallResult::Success(reply)) => reply,
            Ok(CallResult::Timeout) => return Err(timed_out()),
            // ractor's serializing reply port times out on its own clock too, and when it
            // wins the race the call ends as a dropped port instead of a timeout.
            Ok(CallResult::SenderError) | Err(_) if started.elapsed() >= timeout.mul_f64(0.95) => {
                return Err(timed_out())
            }
            Ok(CallResult::SenderError) | Err(_) => return Err(self.lost_or_dropped(node, batch)),
        };
        match wire::decode_reply(&reply) {
            Ok(Ok(scores)) => Ok(scores),
            Ok(Err(remote)) => Err(Failure::Retry(anyhow!(
                "remote reward node {}: {remote}",
                node.peer.label()
            ))),
            Err(e) => Err(Failure::Retry(anyhow!(
                "remote reward node {}: {e:#}",
                node.peer.label()
            ))),
        }
    }

    /// A call that ended without an answer: the session is closing (the roster hears of it a
    /// moment after the reply port drops), or the node dropped just this request.
    fn lost_or_dropped(&self, node: &Node, batch: u64) -> Failure {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.roster.live(node.id).is_none() {
                return Failure::Lost;
            }
            std::thread::sleep(POLL);
        }
        Failure::Retry(anyhow!(
            "remote reward node {} dropped rollout batch {batch} without an answer",
            node.peer.label()
        ))
    }

    /// The node to send to now: the current one while it is connected; after it left, an
    /// error (`on_disconnect = "fail"`) or the next node to join (`"reconnect"`).
    fn ensure_node(&mut self, batch: u64, during: bool) -> anyhow::Result<()> {
        let gone = match &self.node {
            Some(node) if self.roster.live(node.id).is_some() => None,
            Some(node) => Some(node.peer.label()),
            None => Some("(none)".into()),
        };
        if let Some(label) = gone {
            let when = if during { "during" } else { "before" };
            match self.config.on_disconnect {
                OnDisconnect::Fail => bail!(
                    "remote reward node {label} disconnected {when} rollout batch {batch} \
                     (on_disconnect = \"fail\")"
                ),
                OnDisconnect::Reconnect => {
                    warn!(
                        "remote reward node {label} disconnected {when} rollout batch {batch}; \
                         waiting up to {}s for a node to join",
                        self.config.wait_for_node_seconds
                    );
                    self.node = None;
                    let node = self.wait_for_node(&format!("after {label} left"))?;
                    self.node = Some(node);
                    // The reward actor's remote half was replaced: a restart.
                    crate::system::telemetry::add(&rlhf::metric_names::RESTARTS, "reward", 1);
                }
            }
        }
        Ok(())
    }
}

impl Reward for RemoteReward {
    /// At most `1 + retries` failed tries of the batch (timeouts, bad answers, reward errors)
    /// and, with `on_disconnect = "reconnect"`, at most as many resends after lost nodes, each
    /// after a bounded wait for a node to join.
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
        let bytes = wire::encode_request(request)?;
        let batch = request.batch_id;
        let tries = self.config.retries + 1;
        let (mut failed, mut lost) = (0u32, 0u32);
        // Whether the batch was sent already: what a disconnect error says.
        let mut during = false;
        loop {
            self.ensure_node(batch, during)?;
            let node = self.node.as_ref().expect("ensured");
            let label = node.peer.label();
            let answer = self.ask(node, bytes.clone(), batch);
            during = true;
            let error = match answer {
                Ok(scores) => {
                    match checked_scores(&format!("remote reward node {label}"), request, scores) {
                        Ok(scores) => return Ok(scores),
                        Err(e) => e,
                    }
                }
                Err(Failure::Lost) => {
                    lost += 1;
                    if lost > tries {
                        bail!(
                            "rollout batch {batch}: {lost} reward nodes were lost while scoring it"
                        );
                    }
                    continue;
                }
                Err(Failure::Retry(e)) => e,
            };
            failed += 1;
            if failed >= tries {
                return Err(error.context(format!("gave up after {failed} tries")));
            }
            warn!("{error:#}; trying again ({failed} of {tries} tries failed)");
        }
    }

    fn name(&self) -> String {
        "the remote reward".into()
    }
}

impl Drop for RemoteReward {
    /// Closing the server closes every node's session, which ends `rlhf node` cleanly. Off
    /// the runtime (the reward actor's thread) it waits, boundedly, for the port to be free,
    /// so a next run in this process can listen on it again.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            self.server.stop(None);
            return;
        }
        let server = self.server.clone();
        let _ = self
            .runtime
            .block_on(server.stop_and_wait(None, Some(Duration::from_secs(2))));
    }
}
