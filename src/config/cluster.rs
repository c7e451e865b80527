//! `[ppo.cluster]`: where the trainer listens for generator and reference nodes
//! (`rlhf node --role generator|reference`, counted by `[ppo.actors.<kind>] nodes`), and
//! how weights cross to them.

use super::reward::TlsFiles;
use crate::device::DType;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default `cluster.listen`: loopback only, so the cluster port is never exposed unasked
/// (one above the remote reward's default, so the two never collide unasked).
const DEFAULT_LISTEN: &str = "127.0.0.1:4698";
/// Default `cluster.secret_env`: the variable holding the cluster secret.
const DEFAULT_SECRET_ENV: &str = "RLHF_CLUSTER_SECRET";
/// Default `cluster.wait_for_nodes_seconds`: nodes start after the trainer.
const DEFAULT_WAIT_SECONDS: f64 = 120.0;
/// Default `cluster.timeout_seconds`: one chunk's generation or scoring on a node.
const DEFAULT_TIMEOUT_SECONDS: f64 = 600.0;
/// Default `cluster.weight_chunk_mib`: the bytes of one weight message on the wire.
const DEFAULT_WEIGHT_CHUNK_MIB: usize = 32;
/// The largest `cluster.weight_chunk_mib`: half the cluster's frame limit.
const MAX_WEIGHT_CHUNK_MIB: usize = 128;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `HOST:PORT` the trainer's cluster node listens on.
    pub listen: String,
    /// A file whose contents (trimmed) are the cluster's shared secret.
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the secret, used when `secret_file` is not set.
    pub secret_env: String,
    /// Seconds to wait for every configured node to join before the first batch.
    pub wait_for_nodes_seconds: f64,
    /// Seconds to wait for one chunk's answer (or one weight message's) from a node.
    pub timeout_seconds: f64,
    /// The dtype policy weights cross the wire in: `f32` (exact) or `bf16` (half the bytes;
    /// the node's copy is rounded, so its samples are no longer bit-identical to a local
    /// replica's).
    pub weights_dtype: DType,
    /// Weights are sent in messages of at most this many MiB.
    pub weight_chunk_mib: usize,
    /// Encrypt the cluster's links with TLS (`[ppo.cluster.tls]`); none: plain TCP.
    pub tls: Option<TlsFiles>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            listen: DEFAULT_LISTEN.into(),
            secret_file: None,
            secret_env: DEFAULT_SECRET_ENV.into(),
            wait_for_nodes_seconds: DEFAULT_WAIT_SECONDS,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            weights_dtype: DType::F32,
            weight_chunk_mib: DEFAULT_WEIGHT_CHUNK_MIB,
            tls: None,
        }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (key, value) in [
            ("wait_for_nodes_seconds", self.wait_for_nodes_seconds),
            ("timeout_seconds", self.timeout_seconds),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("ppo.cluster.{key} must be positive, not {value}"));
            }
        }
        if self.weights_dtype == DType::F16 {
            return Err("ppo.cluster.weights_dtype: \"f32\" or \"bf16\"".into());
        }
        if !(1..=MAX_WEIGHT_CHUNK_MIB).contains(&self.weight_chunk_mib) {
            return Err(format!(
                "ppo.cluster.weight_chunk_mib must be between 1 and {MAX_WEIGHT_CHUNK_MIB} \
                 (a cluster message carries at most 256 MiB), not {}",
                self.weight_chunk_mib
            ));
        }
        Ok(())
    }
}
