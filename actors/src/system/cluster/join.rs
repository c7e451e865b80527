//! A node's side of the cluster: connect to the trainer (over TLS when configured), pass
//! the secret handshake, and stay until either side goes away. The node's actor joins a
//! process group first, so the handshake's group sync carries it to the trainer.

use super::{start_server, Roster, Side};
use anyhow::bail;
use ractor::{ActorRef, ActorStatus, Message};
use ractor_cluster::ClientConnectErr;
use rustls_pki_types::ServerName;
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;
use tracing::{debug, info};

/// How long a node keeps trying to reach a trainer that is not listening yet.
const CONNECT_WAIT: Duration = Duration::from_secs(60);
/// How long the handshake may take once connected.
const AUTH_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Where the node connects, as whom, with which secret.
pub struct Session<'a> {
    pub connect: &'a str,
    pub secret: &'a str,
    pub name: &'a str,
    /// Connect over TLS, checking the trainer's certificate against this name.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// Serve `actor` (called `what` in the log), a member of process group `group`, to the
/// trainer at `session.connect` until the trainer goes away (Ok) or a signal asks the node
/// to stop (Ok); a refused handshake, an unreachable trainer or a stopped actor is an
/// error. The actor is stopped on the way out.
pub async fn serve_in_group<M: Message>(
    actor: ActorRef<M>,
    group: &str,
    what: &str,
    session: Session<'_>,
) -> anyhow::Result<()> {
    ractor::pg::join(group.to_string(), vec![actor.get_cell()]);
    let roster = Roster::new(Side::Node);
    // The node's own listener accepts nothing useful; keep it on a free loopback port.
    let local = "127.0.0.1:0".parse().expect("a socket address");
    let server = start_server(
        local,
        session.secret.to_string(),
        session.name,
        roster.clone(),
        None,
    )
    .await?;
    let result = async {
        connect(&server, session.connect, session.tls.as_ref()).await?;
        authenticate(&roster, session.connect).await?;
        info!(
            node = session.name,
            "serving {what} to the trainer at {} as node {:?}", session.connect, session.name
        );
        until_done(&roster, &actor, session.connect).await
    }
    .await;
    server.stop(None);
    actor.stop(None);
    result
}

async fn connect(
    server: &ActorRef<ractor_cluster::NodeServerMessage>,
    addr: &str,
    tls: Option<&(TlsConnector, ServerName<'static>)>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONNECT_WAIT;
    loop {
        let connected = match tls {
            Some((connector, name)) => {
                ractor_cluster::client_connect_enc(server, addr, connector.clone(), name.clone())
                    .await
            }
            None => ractor_cluster::client_connect(server, addr).await,
        };
        match connected {
            Ok(()) => return Ok(()),
            // A certificate the CA does not vouch for will not change by waiting.
            Err(ClientConnectErr::Encryption(e)) => {
                bail!("TLS with the trainer at {addr} failed: {e}")
            }
            Err(e) if Instant::now() >= deadline => bail!(
                "could not reach the trainer at {addr} within {}s: {e}",
                CONNECT_WAIT.as_secs()
            ),
            Err(e) => {
                debug!("the trainer at {addr} is not reachable yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn authenticate(roster: &Roster, addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + AUTH_WAIT;
    while roster.authenticated().is_empty() {
        if !roster.refused().is_empty() {
            // The trainer closed the session during the challenge: the secrets differ.
            bail!(
                "the trainer at {addr} refused this node: wrong cluster secret (authentication failed)"
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no handshake with the trainer at {addr} within {}s",
                AUTH_WAIT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Until the trainer's session closes, a signal arrives, or the node's actor stops.
async fn until_done<M: Message>(
    roster: &Roster,
    actor: &ActorRef<M>,
    addr: &str,
) -> anyhow::Result<()> {
    let stop = crate::system::shutdown::listen();
    loop {
        tokio::time::sleep(POLL).await;
        if *stop.borrow() {
            info!("stopping on a signal");
            return Ok(());
        }
        if roster.authenticated().is_empty() {
            info!("the trainer at {addr} went away; the node is done");
            return Ok(());
        }
        if matches!(
            actor.get_status(),
            ActorStatus::Stopping | ActorStatus::Stopped
        ) {
            bail!("the node's actor stopped");
        }
    }
}
