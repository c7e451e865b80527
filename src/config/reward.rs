//! `[ppo.reward]`: what scores PPO's rollouts. `kind` picks a built-in reward; every kind
//! answers the same contract (one score per response), so they compose.
//!
//! ```toml
//! [ppo.reward]
//! kind = "weighted"
//! parts = [
//!   { weight = 1.0, reward = { kind = "model" } },
//!   { weight = 0.5, reward = { kind = "rules", rules = [
//!       { kind = "regex", pattern = "^[A-Z]", score = 1.0 },
//!       { kind = "length", min_words = 3, max_words = 40, score = 1.0 } ] } },
//! ]
//! ```

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One reward.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardConfig {
    /// The neural reward model at `ppo.reward_model`.
    #[default]
    Model,
    /// The sum of rule scores on the response text.
    Rules { rules: Vec<RuleConfig> },
    /// A service that takes POSTed JSON score requests and answers `{"scores": [...]}`.
    Http(HttpRewardConfig),
    /// A reward actor on another node (`rlhf node --role reward`) over ractor_cluster.
    Remote(RemoteRewardConfig),
    /// The weighted sum of several rewards.
    Weighted { parts: Vec<WeightedReward> },
}

/// One part of a weighted reward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedReward {
    pub weight: f64,
    pub reward: RewardConfig,
}

/// A rule on the response text; a response scores the sum of the rules it satisfies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleConfig {
    /// `score` when the response matches the regular expression (Rust `regex` syntax).
    Regex { pattern: String, score: f64 },
    /// `score` when the response has between `min_words` and `max_words` words.
    Length {
        min_words: usize,
        max_words: usize,
        score: f64,
    },
    /// `score` when the response, trimmed, equals the prompt's answer in `answers`
    /// (JSONL `{"prompt", "answer"}`); prompts without an answer score 0.
    ExactMatch { answers: PathBuf, score: f64 },
}

/// `kind = "http"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRewardConfig {
    /// `http://HOST:PORT/PATH` the requests are POSTed to.
    pub url: String,
    /// Seconds to wait for one answer.
    #[serde(default = "default_http_timeout")]
    pub timeout_seconds: f64,
    /// Further tries of a request that failed (timeout, connection, bad answer).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Rows per request; a rollout batch is split into requests of at most this many.
    #[serde(default = "default_http_batch")]
    pub batch_size: usize,
}

/// `kind = "remote"`: the trainer listens; the node connects and serves the reward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteRewardConfig {
    /// Where the trainer's cluster node listens (loopback by default).
    #[serde(default = "default_cluster_listen")]
    pub listen: String,
    /// A file whose contents (trimmed) are the cluster's shared secret.
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the secret, used when `secret_file` is not set.
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// Seconds to wait for the reward node to join before the first batch.
    #[serde(default = "default_wait")]
    pub wait_for_node_seconds: f64,
    /// Seconds to wait for one batch's scores.
    #[serde(default = "default_remote_timeout")]
    pub timeout_seconds: f64,
    /// Further tries of a batch whose scoring failed.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// What to do when the node goes away: fail the run (with a checkpoint) or wait up to
    /// `wait_for_node_seconds` for a node to join again.
    #[serde(default)]
    pub on_disconnect: OnDisconnect,
    /// Encrypt the cluster's links with TLS (`[ppo.reward.tls]`); none: plain TCP.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

/// The TLS files of a cluster: the trainer presents `cert` (PEM chain) with `key` (PEM);
/// a node accepts the trainer only if `cert` chains to a certificate in `ca`. One section
/// serves both sides (a node reads the trainer's config); each reads only its own files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The name the node checks the trainer's certificate against; default: the host of
    /// the address it connects to.
    pub server_name: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDisconnect {
    #[default]
    Fail,
    Reconnect,
}

/// Default `http.timeout_seconds`: seconds to wait for one scoring answer.
const DEFAULT_HTTP_TIMEOUT_SECONDS: f64 = 30.0;
/// Default `remote.timeout_seconds`: seconds to wait for one batch's scores from the node.
const DEFAULT_REMOTE_TIMEOUT_SECONDS: f64 = 60.0;
/// Default `retries` (http and remote): further tries of a failed request.
const DEFAULT_RETRIES: u32 = 2;
/// Default `http.batch_size`: rows per request.
const DEFAULT_HTTP_BATCH_SIZE: usize = 64;
/// Default `remote.listen`: loopback only, so the cluster port is never exposed unasked.
const DEFAULT_CLUSTER_LISTEN: &str = "127.0.0.1:4697";
/// Default `remote.secret_env`: the variable holding the cluster secret.
const DEFAULT_SECRET_ENV: &str = "RLHF_CLUSTER_SECRET";
/// Default `remote.wait_for_node_seconds`.
const DEFAULT_WAIT_FOR_NODE_SECONDS: f64 = 60.0;

fn default_http_timeout() -> f64 {
    DEFAULT_HTTP_TIMEOUT_SECONDS
}

fn default_remote_timeout() -> f64 {
    DEFAULT_REMOTE_TIMEOUT_SECONDS
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

fn default_http_batch() -> usize {
    DEFAULT_HTTP_BATCH_SIZE
}

fn default_cluster_listen() -> String {
    DEFAULT_CLUSTER_LISTEN.into()
}

fn default_secret_env() -> String {
    DEFAULT_SECRET_ENV.into()
}

fn default_wait() -> f64 {
    DEFAULT_WAIT_FOR_NODE_SECONDS
}

impl RewardConfig {
    /// Whether any part is `kind = "remote"` (served by a cluster node).
    pub fn has_remote(&self) -> bool {
        match self {
            RewardConfig::Remote(_) => true,
            RewardConfig::Weighted { parts } => parts.iter().any(|p| p.reward.has_remote()),
            _ => false,
        }
    }

    /// Checks that need no file or network; `at` names the key in errors.
    pub fn validate(&self, at: &str) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "{at}.{name} must be a positive number of seconds, got {v}"
                ))
            }
        };
        match self {
            RewardConfig::Model => Ok(()),
            RewardConfig::Rules { rules } => {
                if rules.is_empty() {
                    return Err(format!("{at}.rules: at least one rule"));
                }
                for (i, rule) in rules.iter().enumerate() {
                    if let RuleConfig::Length {
                        min_words,
                        max_words,
                        ..
                    } = rule
                    {
                        if min_words > max_words {
                            return Err(format!(
                                "{at}.rules[{i}]: min_words {min_words} > max_words {max_words}"
                            ));
                        }
                    }
                }
                Ok(())
            }
            RewardConfig::Http(h) => {
                if !h.url.starts_with("http://") {
                    return Err(format!(
                        "{at}.url: `{}` is not an http:// address (https is not supported)",
                        h.url
                    ));
                }
                if h.batch_size == 0 {
                    return Err(format!("{at}.batch_size must be positive"));
                }
                positive("timeout_seconds", h.timeout_seconds)
            }
            RewardConfig::Remote(r) => {
                positive("timeout_seconds", r.timeout_seconds)?;
                positive("wait_for_node_seconds", r.wait_for_node_seconds)
            }
            RewardConfig::Weighted { parts } => {
                if parts.is_empty() {
                    return Err(format!("{at}.parts: at least one part"));
                }
                for (i, part) in parts.iter().enumerate() {
                    if !part.weight.is_finite() {
                        return Err(format!("{at}.parts[{i}].weight must be finite"));
                    }
                    part.reward.validate(&format!("{at}.parts[{i}].reward"))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RewardConfig, String> {
        #[derive(Deserialize)]
        struct Wrap {
            reward: RewardConfig,
        }
        let w: Wrap = toml::from_str(text).map_err(|e| e.to_string())?;
        w.reward.validate("ppo.reward")?;
        Ok(w.reward)
    }

    #[test]
    fn every_kind_parses_and_composes() {
        let r = parse(
            r#"[reward]
kind = "weighted"
parts = [
  { weight = 1.0, reward = { kind = "model" } },
  { weight = 0.5, reward = { kind = "rules", rules = [
      { kind = "regex", pattern = "^[A-Z]", score = 1.0 },
      { kind = "length", min_words = 3, max_words = 40, score = 2.0 } ] } },
  { weight = 2.0, reward = { kind = "http", url = "http://127.0.0.1:8000/score" } },
  { weight = 1.0, reward = { kind = "remote", on_disconnect = "reconnect" } },
]"#,
        )
        .unwrap();
        let RewardConfig::Weighted { parts } = r else {
            panic!("{r:?}")
        };
        assert_eq!(parts[0].reward, RewardConfig::Model);
        let RewardConfig::Http(h) = &parts[2].reward else {
            panic!()
        };
        assert_eq!((h.retries, h.batch_size, h.timeout_seconds), (2, 64, 30.0));
        let RewardConfig::Remote(remote) = &parts[3].reward else {
            panic!()
        };
        assert_eq!(remote.listen, "127.0.0.1:4697");
        assert_eq!(remote.secret_env, "RLHF_CLUSTER_SECRET");
        assert_eq!(remote.on_disconnect, OnDisconnect::Reconnect);
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = parse("[reward]\nkind = \"http\"\nurl = \"http://x\"\ntimeout = 3\n").unwrap_err();
        assert!(e.contains("unknown field `timeout`"), "{e}");
        let e = parse("[reward]\nkind = \"oracle\"\n").unwrap_err();
        assert!(e.contains("unknown variant `oracle`"), "{e}");
        let e = parse("[reward]\nkind = \"http\"\nurl = \"https://x\"\n").unwrap_err();
        assert!(e.starts_with("ppo.reward.url"), "{e}");
        let e = parse(
            "[reward]\nkind = \"weighted\"\nparts = [{ weight = 1.0, reward = { kind = \"rules\", rules = [] } }]\n",
        )
        .unwrap_err();
        assert_eq!(e, "ppo.reward.parts[0].reward.rules: at least one rule");
    }
}
