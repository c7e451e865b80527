//! The trainer's side of the cluster for policy nodes: listen, wait for the configured
//! nodes of each role, and call one with a frame, telling a node that left (its work goes
//! to the other replicas) from one that failed (the run fails).

use super::node::Role;
use super::wire::{self, Answer, PolicyNodeMsg};
use crate::system::cluster::{self, Roster};
use anyhow::{anyhow, bail};
use ractor::rpc::CallResult;
use ractor::ActorRef;
use ractor_cluster::{NodeId, NodeServerMessage};
use rlhf::config::ClusterConfig;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

const POLL: Duration = Duration::from_millis(20);

/// A node that left the cluster with a request unanswered: its work is still to be done.
#[derive(Debug)]
pub struct NodeLost(pub String);

impl std::fmt::Display for NodeLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} left the cluster", self.0)
    }
}

impl std::error::Error for NodeLost {}

/// Whether `error` is (or was caused by) a lost node.
pub fn is_lost(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<NodeLost>())
}

/// The trainer's cluster node while a run uses policy nodes; closing it ends their sessions.
pub struct Cluster {
    config: ClusterConfig,
    server: ActorRef<NodeServerMessage>,
    roster: Arc<Roster>,
    /// Nodes already given a replica.
    taken: std::sync::Mutex<BTreeSet<NodeId>>,
}

impl Cluster {
    /// Listen on `config.listen`.
    pub async fn start(config: &ClusterConfig) -> anyhow::Result<Cluster> {
        let (server, roster) = cluster::trainer_server(
            "ppo.cluster",
            "policy nodes",
            &config.listen,
            (config.secret_file.as_deref(), &config.secret_env),
            config.tls.as_ref(),
        )
        .await?;
        Ok(Cluster {
            config: config.clone(),
            server,
            roster,
            taken: Default::default(),
        })
    }

    /// `count` nodes serving `role` that joined within `wait_for_nodes_seconds`, in the
    /// order they joined.
    pub async fn wait_for(&self, role: Role, count: usize) -> anyhow::Result<Vec<NodeLink>> {
        let config = &self.config;
        let mut links: Vec<NodeLink> = Vec::new();
        if count > 0 {
            info!(
                listen = %config.listen,
                "waiting up to {}s for {count} {} node(s) (rlhf node --role {} --connect {})",
                config.wait_for_nodes_seconds,
                role.name(),
                role.name(),
                config.listen
            );
        }
        let deadline = Instant::now() + Duration::from_secs_f64(config.wait_for_nodes_seconds);
        while links.len() < count {
            if let Some(link) = self.next_node(role) {
                info!(node = %link.name, "{} node {} joined", role.name(), link.label);
                links.push(link);
                continue;
            }
            if Instant::now() >= deadline {
                let hint = self.roster.refused_hint();
                bail!(
                    "{} of {count} {} nodes joined the cluster at {} within {}s (start them with \
                     `rlhf node --role {} --connect {}` and the same cluster secret){hint}",
                    links.len(),
                    role.name(),
                    config.listen,
                    config.wait_for_nodes_seconds,
                    role.name(),
                    config.listen
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(links)
    }

    /// An authenticated node not yet taken whose `role` actor has reached this side.
    pub fn next_node(&self, role: Role) -> Option<NodeLink> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let (id, peer, cell) = self
            .roster
            .member_of(role.group(), |id| taken.contains(&id))?;
        taken.insert(id);
        Some(NodeLink {
            name: peer.name.clone(),
            label: peer.label(),
            id,
            actor: ActorRef::from(cell),
            roster: self.roster.clone(),
            timeout: Duration::from_secs_f64(self.config.timeout_seconds),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Stop listening and end every node's session (which ends `rlhf node` cleanly).
    pub fn close(&self) {
        self.server.stop(None);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.close();
    }
}

/// One node's actor, as the trainer calls it.
pub struct NodeLink {
    /// The node's name (`--name`).
    pub name: String,
    /// `"name" (address)`, as errors say it.
    pub label: String,
    id: NodeId,
    actor: ActorRef<PolicyNodeMsg>,
    roster: Arc<Roster>,
    timeout: Duration,
}

impl NodeLink {
    /// Send `frame` and wait for the answer's frame: an error for a node's failure, a
    /// [`NodeLost`] when the node left before answering.
    pub async fn call(&self, frame: Vec<u8>) -> anyhow::Result<(Answer, Vec<u8>)> {
        let started = Instant::now();
        let answer = self
            .actor
            .call(|port| PolicyNodeMsg::Call(frame, port), Some(self.timeout))
            .await;
        let bytes = match answer {
            Ok(CallResult::Success(bytes)) => bytes,
            Ok(CallResult::Timeout) => bail!(self.timed_out()),
            // ractor's serializing reply port times out on its own clock too.
            Ok(CallResult::SenderError) | Err(_)
                if started.elapsed() >= self.timeout.mul_f64(0.95) =>
            {
                bail!(self.timed_out())
            }
            Ok(CallResult::SenderError) | Err(_) => return Err(self.lost_or_dropped().await),
        };
        let (answer, raw): (Answer, &[u8]) =
            wire::unframe(&bytes, &format!("node {}", self.label))?;
        let raw = raw.to_vec();
        match answer {
            Answer::Failed(e) => bail!("node {}: {e}", self.label),
            answer => Ok((answer, raw)),
        }
    }

    fn timed_out(&self) -> String {
        format!(
            "node {} did not answer within {}s (ppo.cluster.timeout_seconds)",
            self.label,
            self.timeout.as_secs_f64()
        )
    }

    /// A call that ended without an answer: the session is closing (the roster hears of it
    /// a moment after the reply port drops), or the node dropped just this request.
    async fn lost_or_dropped(&self) -> anyhow::Error {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.roster.live(self.id).is_none() {
                return NodeLost(self.label.clone()).into();
            }
            tokio::time::sleep(POLL).await;
        }
        anyhow!("node {} dropped a request without an answer", self.label)
    }
}
