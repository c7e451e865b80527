//! TLS for the cluster's links (`[ppo.reward.tls]`): the trainer's acceptor presents its
//! certificate; a node's connector accepts a trainer whose certificate chains to the CA.
//! The secret handshake runs inside the encrypted link as before.

use anyhow::{anyhow, bail, Context};
use rlhf::config::TlsFiles;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: reading the TLS {what}", path.display()))
}

fn certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: not a PEM {what}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in the TLS {what}", path.display());
    }
    Ok(certs)
}

/// The trainer's side: present `files.cert` with `files.key`.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let chain = certificates(&files.cert, "certificate")?;
    let pem = read(&files.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| anyhow!("{}: not a PEM private key: {e}", files.key.display()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| anyhow!("{} with {}: {e}", files.cert.display(), files.key.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A node's side: trust certificates that chain to `files.ca`, and check the trainer's
/// against `files.server_name`, else the host of `connect` (`HOST:PORT`).
pub fn connector(
    files: &TlsFiles,
    connect: &str,
) -> anyhow::Result<(TlsConnector, ServerName<'static>)> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(&files.ca, "CA")? {
        roots
            .add(ca)
            .map_err(|e| anyhow!("{}: not a usable CA certificate: {e}", files.ca.display()))?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = match &files.server_name {
        Some(name) => name.clone(),
        None => host_of(connect).to_string(),
    };
    let name = ServerName::try_from(host.clone())
        .map_err(|e| anyhow!("`{host}` is not a TLS server name: {e}"))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// `HOST` of `HOST:PORT` (`[::1]:PORT` gives `::1`).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/tls")
            .join(name)
    }

    fn files() -> TlsFiles {
        TlsFiles {
            cert: fixture("cert.pem"),
            key: fixture("key.pem"),
            ca: fixture("ca.pem"),
            server_name: None,
        }
    }

    #[test]
    fn the_fixture_files_make_an_acceptor_and_a_connector() {
        acceptor(&files()).unwrap();
        let (_, name) = connector(&files(), "127.0.0.1:7000").unwrap();
        assert_eq!(name.to_str(), "127.0.0.1");
        let (_, name) = connector(&files(), "[::1]:7000").unwrap();
        assert_eq!(name.to_str(), "::1");
        let named = TlsFiles {
            server_name: Some("localhost".into()),
            ..files()
        };
        assert_eq!(
            connector(&named, "10.0.0.1:7000").unwrap().1.to_str(),
            "localhost"
        );
    }

    fn refusal(files: &TlsFiles) -> String {
        match acceptor(files) {
            Ok(_) => panic!("accepted {files:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn bad_files_are_named() {
        let missing = TlsFiles {
            key: fixture("missing.pem"),
            ..files()
        };
        let e = refusal(&missing);
        assert!(e.contains("missing.pem: reading the TLS key"), "{e}");
        let swapped = TlsFiles {
            cert: fixture("key.pem"),
            ..files()
        };
        let e = refusal(&swapped);
        assert!(e.contains("key.pem: no PEM certificate"), "{e}");
        let wrong_key = TlsFiles {
            key: fixture("cert.pem"),
            ..files()
        };
        let e = refusal(&wrong_key);
        assert!(e.contains("cert.pem: not a PEM private key"), "{e}");
    }
}
