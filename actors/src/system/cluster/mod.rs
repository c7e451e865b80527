//! The ractor_cluster plumbing both sides share: the cluster secret, a node server bound
//! where asked, and a roster of peer sessions kept from the server's events (who joined,
//! who left, who failed to authenticate), which is what the logs and errors name. [`tls`]
//! encrypts the links; [`join`] is a node's side of a session.

pub mod join;
pub mod tls;

use anyhow::{anyhow, bail, Context};
use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeId, NodeServer, NodeServerMessage,
};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// Largest cluster frame either side accepts (ractor's default is 16 MiB); score requests of
/// large batches with long responses can pass that.
const MAX_FRAME: u64 = 256 << 20;

/// The cluster's shared secret: the trimmed contents of `file` if given, else the
/// environment variable `env`. Never a command-line argument (visible to every user of the
/// machine in the process list).
pub fn read_secret(file: Option<&Path>, env: &str) -> anyhow::Result<String> {
    let secret = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{}: reading the cluster secret", path.display()))?
            .trim()
            .to_string(),
        None => match std::env::var(env) {
            Ok(value) => value.trim().to_string(),
            Err(_) => bail!(
                "no cluster secret: set `secret_file` in [ppo.cluster] (or [ppo.reward] for a remote reward) or the environment variable {env}"
            ),
        },
    };
    if secret.is_empty() {
        let from = file.map_or_else(|| format!("${env}"), |p| p.display().to_string());
        bail!("{from}: the cluster secret is empty");
    }
    Ok(secret)
}

/// `HOST:PORT` as one socket address (the first a host name resolves to).
pub fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("`{addr}` is not a HOST:PORT address"))?
        .next()
        .ok_or_else(|| anyhow!("`{addr}` resolves to no address"))
}

/// Which end of the connection this process is: it decides what the roster logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Trainer,
    Node,
}

/// One peer session.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The peer's node name without `@host`.
    pub name: String,
    /// The peer's address as this side sees it.
    pub addr: String,
    pub authenticated: bool,
}

impl Peer {
    /// How errors name a node: `"node-a" (127.0.0.1:51234)`.
    pub fn label(&self) -> String {
        format!("{:?} ({})", self.name, self.addr)
    }

    fn from(ses: &NodeServerSessionInformation, authenticated: bool) -> Peer {
        let full = ses.peer_name.as_ref().map(|n| n.name.clone());
        Peer {
            name: full
                .as_deref()
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
                .unwrap_or_default(),
            addr: ses.peer_addr.clone(),
            authenticated,
        }
    }
}

#[derive(Default)]
struct RosterState {
    live: HashMap<NodeId, Peer>,
    /// Peers that closed before authenticating, as log lines say them.
    refused: Vec<String>,
}

/// The peer sessions of one node server, updated by its events.
pub struct Roster {
    side: Side,
    state: Mutex<RosterState>,
}

impl Roster {
    pub fn new(side: Side) -> Arc<Roster> {
        Arc::new(Roster {
            side,
            state: Mutex::new(RosterState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RosterState> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connected peer (authenticated or not).
    pub fn live(&self, id: NodeId) -> Option<Peer> {
        self.lock().live.get(&id).cloned()
    }

    pub fn authenticated(&self) -> Vec<(NodeId, Peer)> {
        let state = self.lock();
        let mut peers: Vec<_> = state
            .live
            .iter()
            .filter(|(_, p)| p.authenticated)
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        peers.sort_by_key(|(id, _)| *id);
        peers
    }

    /// The first authenticated peer, other than those `skip` names, whose actor in process
    /// group `group` has reached this side (the handshake's group sync carries it), with
    /// that actor.
    pub fn member_of(
        &self,
        group: &str,
        skip: impl Fn(NodeId) -> bool,
    ) -> Option<(NodeId, Peer, ractor::ActorCell)> {
        let members = ractor::pg::get_members(&group.to_string());
        self.authenticated()
            .into_iter()
            .filter(|(id, _)| !skip(*id))
            .find_map(|(id, peer)| {
                let cell = members.iter().find(|c| {
                    let actor = c.get_id();
                    !actor.is_local() && actor.node() == id
                })?;
                Some((id, peer, cell.clone()))
            })
    }

    pub fn refused(&self) -> Vec<String> {
        self.lock().refused.clone()
    }

    /// What a "no node joined" error adds: how many were refused, and the last reason.
    pub fn refused_hint(&self) -> String {
        let refused = self.refused();
        match refused.last() {
            Some(last) => format!("; {} refused, the last: {last}", refused.len()),
            None => String::new(),
        }
    }

    fn opened(&self, ses: &NodeServerSessionInformation) {
        self.lock().live.insert(ses.node_id, Peer::from(ses, false));
    }

    fn authenticated_now(&self, ses: &NodeServerSessionInformation) {
        let peer = Peer::from(ses, true);
        match self.side {
            Side::Trainer => info!(
                node = %peer.name,
                addr = %peer.addr,
                "node {} joined the cluster",
                peer.label()
            ),
            Side::Node => info!(addr = %peer.addr, "joined the trainer's cluster at {}", peer.addr),
        }
        self.lock().live.insert(ses.node_id, peer);
    }

    fn disconnected(&self, ses: &NodeServerSessionInformation) {
        let mut state = self.lock();
        let was = state.live.remove(&ses.node_id);
        let authenticated = was.as_ref().is_some_and(|p| p.authenticated);
        let peer = Peer::from(ses, authenticated);
        if authenticated {
            match self.side {
                Side::Trainer => warn!(
                    node = %peer.name,
                    addr = %peer.addr,
                    "node {} left the cluster",
                    peer.label()
                ),
                Side::Node => info!("the trainer at {} closed the connection", peer.addr),
            }
        } else {
            // The name exchange happened, the challenge did not pass: a wrong secret.
            let line = if peer.name.is_empty() {
                format!(
                    "refused node at {}: it closed before authenticating (not an rlhf node, or a wrong cluster secret)",
                    peer.addr
                )
            } else {
                format!(
                    "refused node {:?} at {}: wrong cluster secret (authentication failed)",
                    peer.name, peer.addr
                )
            };
            if self.side == Side::Trainer {
                tracing::error!("{line}");
            }
            state.refused.push(line);
        }
    }
}

/// Forwards a node server's events to its roster.
struct Events(Arc<Roster>);

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        self.0.opened(&ses);
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.0.disconnected(&ses);
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.0.authenticated_now(&ses);
    }
}

/// The trainer's node server: on `listen` with the secret from `secret_file` or `secret_env`,
/// TLS-encrypted with `tls` when given, and the roster of its sessions. `section` (the
/// config section these come from, `ppo.cluster` or `ppo.reward`) and `what` (the nodes it
/// waits for) name it in errors.
pub async fn trainer_server(
    section: &str,
    what: &str,
    listen: &str,
    secret: (Option<&Path>, &str),
    tls: Option<&rlhf::config::TlsFiles>,
) -> anyhow::Result<(ActorRef<NodeServerMessage>, Arc<Roster>)> {
    let secret = read_secret(secret.0, secret.1)?;
    let addr = resolve(listen).map_err(|e| anyhow!("{section}.listen: {e:#}"))?;
    let tls = match tls {
        Some(files) => Some(tls::acceptor(files).with_context(|| format!("{section}.tls"))?),
        None => None,
    };
    if !addr.ip().is_loopback() && tls.is_none() {
        warn!(
            "the cluster listens on {addr}: nodes authenticate with the secret, but their \
             traffic is not encrypted (configure [{section}.tls]) or keep it on a trusted network"
        );
    }
    let roster = Roster::new(Side::Trainer);
    let server = start_server(addr, secret, "rlhf-trainer", roster.clone(), tls)
        .await
        .map_err(|e| anyhow!("listening for {what} on {listen}: {e:#}"))?;
    Ok((server, roster))
}

/// A node server on `listen` (port 0: any free port) authenticating peers with `secret`,
/// reporting its sessions to `roster`, its links TLS-encrypted with `tls` when given.
/// Isolated: it connects to no peer of its peers.
pub async fn start_server(
    listen: SocketAddr,
    secret: String,
    name: &str,
    roster: Arc<Roster>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<ActorRef<NodeServerMessage>> {
    // ractor reports a failed bind as a nested startup error; binding once here first
    // gives the plain OS error ("Address already in use").
    drop(std::net::TcpListener::bind(listen)?);
    let server = NodeServer::new(
        listen.port(),
        secret,
        name.to_string(),
        "localhost".to_string(),
        tls.map(IncomingEncryptionMode::Tls),
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(listen.ip())
    .with_max_inbound_frame_size(MAX_FRAME);
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| anyhow!("starting the cluster node: {e}"))?;
    server
        .cast(NodeServerMessage::SubscribeToEvents {
            id: "rlhf.roster".into(),
            subscription: Box::new(Events(roster)),
        })
        .map_err(|e| anyhow!("subscribing to cluster events: {e}"))?;
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_comes_from_a_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("rlhf-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "  s3cret\n").unwrap();
        assert_eq!(
            read_secret(Some(&file), "RLHF_TEST_UNSET_VAR").unwrap(),
            "s3cret"
        );
        std::fs::write(&file, "\n").unwrap();
        let e = read_secret(Some(&file), "X").unwrap_err().to_string();
        assert!(e.ends_with("the cluster secret is empty"), "{e}");
        let e = read_secret(None, "RLHF_TEST_UNSET_VAR")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secret_file") && e.contains("RLHF_TEST_UNSET_VAR"),
            "{e}"
        );
        // A variable every test process has (setting one would race other tests' reads).
        let path = std::env::var("PATH").unwrap();
        assert_eq!(read_secret(None, "PATH").unwrap(), path.trim());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
