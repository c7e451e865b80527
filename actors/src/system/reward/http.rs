//! `kind = "http"`: a reward served by another program, in any language, over HTTP/1.1.
//!
//! # Wire format
//!
//! For each rollout batch the trainer POSTs to `url`, with
//! `Content-Type: application/json`, one JSON [`ScoreRequest`] per chunk of at most
//! `batch_size` rows (chunks go one after another, in row order; all carry the rollout
//! batch's `batch_id` and `policy_version`):
//!
//! ```json
//! {"batch_id": 3, "policy_version": 2,
//!  "prompts": ["Name a river."], "responses": ["The Nile."],
//!  "prompt_ids": [[50, 7, 81]], "response_ids": [[12, 9, 0]]}
//! ```
//!
//! `prompts` are the prompt file's text (no chat template), `responses` the sampled text
//! without EOS; `prompt_ids` / `response_ids` are the exact token ids (the response's EOS
//! included when it ended with one). The service answers status 2xx with
//!
//! ```json
//! {"scores": [0.75]}
//! ```
//!
//! one finite number per row of the chunk, in the chunk's row order. Other fields of the
//! answer are ignored. Connections are kept alive between requests. A service that writes
//! its answer's head and body in two small writes without `TCP_NODELAY` makes every answer
//! wait out the client's delayed ACK (about 40 ms on Linux, measured); any common HTTP
//! server avoids that.
//!
//! # Faults
//!
//! A try fails when the whole exchange takes longer than `timeout_seconds`, the connection
//! fails, the status is not 2xx, or the body is not that JSON with one finite score per
//! row. A failed chunk is sent again up to `retries` more times, with a short doubling
//! back-off, then the batch fails with the last failure (the reward actor adds this
//! reward's name, with its URL, and the rollout batch); the PPO stage then ends the run and checkpoints the policy. Every wait is
//! bounded, so a silent service cannot hang the trainer: at most
//! `(retries + 1) * timeout_seconds` plus the back-off per chunk.
//!
//! The client is blocking on purpose: the reward actor calls [`Reward::score`] on its own
//! OS thread, never on the async runtime.

use super::contract::{checked_scores, Reward, ScoreRequest};
use anyhow::{anyhow, ensure};
use rlhf::config::HttpRewardConfig;
use serde::Deserialize;
use std::time::Duration;
use tracing::warn;

/// Wait before the first retry; doubles with each further one, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Largest answer body read: far above `{"scores": [...]}` for any sane chunk, and a bound
/// on what a misbehaving service can make the trainer buffer.
const MAX_ANSWER_BYTES: u64 = 16 << 20;

pub struct HttpReward {
    url: String,
    timeout: Duration,
    retries: u32,
    batch_size: usize,
    agent: ureq::Agent,
}

/// The service's answer.
#[derive(Deserialize)]
struct Answer {
    scores: Vec<f32>,
}

impl HttpReward {
    pub fn new(config: &HttpRewardConfig) -> anyhow::Result<HttpReward> {
        let url = config.url.clone();
        ensure!(
            url.starts_with("http://"),
            "http reward: `{url}` is not an http:// address (https is not supported)"
        );
        ensure!(
            config.batch_size > 0,
            "http reward at {url}: batch_size must be positive"
        );
        let timeout = Duration::try_from_secs_f64(config.timeout_seconds)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                anyhow!(
                    "http reward at {url}: timeout_seconds must be a positive number, got {}",
                    config.timeout_seconds
                )
            })?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // One budget for the whole exchange: connect, send, headers and body.
            .timeout_global(Some(timeout))
            // Non-2xx answers are read and reported by us, with their body.
            .http_status_as_error(false)
            // Score requests carry training data and go where the config says, not
            // through a proxy picked up from the environment.
            .proxy(None)
            .build()
            .into();
        Ok(HttpReward {
            url,
            timeout,
            retries: config.retries,
            batch_size: config.batch_size,
            agent,
        })
    }

    /// One try: POST the chunk, read and check the answer. Errors are the failure's reason.
    fn exchange(&self, chunk: &ScoreRequest, body: &[u8]) -> Result<Vec<f32>, String> {
        let mut response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| self.describe(e))?;
        let status = response.status();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| self.describe(e))?;
        if !status.is_success() {
            return Err(format!("status {status}: {}", excerpt(&bytes)));
        }
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "the answer is not JSON {{\"scores\": [numbers]}} ({e}): {}",
                excerpt(&bytes)
            )
        })?;
        checked_scores("the service", chunk, answer.scores).map_err(|e| e.to_string())
    }

    fn describe(&self, e: ureq::Error) -> String {
        match e {
            ureq::Error::Timeout(_) => {
                format!("timed out after {} s", self.timeout.as_secs_f64())
            }
            ureq::Error::Io(e) => format!("connection failed: {e}"),
            e => e.to_string(),
        }
    }

    /// Scores of one chunk, with retries; `rows` names the chunk in errors.
    fn score_chunk(&self, chunk: &ScoreRequest, rows: &str) -> anyhow::Result<Vec<f32>> {
        let body = serde_json::to_vec(chunk)?;
        let tries = self.retries + 1;
        let mut backoff = FIRST_BACKOFF;
        let mut failure = String::new();
        for attempt in 1..=tries {
            match self.exchange(chunk, &body) {
                Ok(scores) => return Ok(scores),
                Err(reason) => failure = reason,
            }
            if attempt < tries {
                warn!(
                    url = %self.url,
                    batch = chunk.batch_id,
                    attempt,
                    tries,
                    "http reward: {failure}; retrying in {} ms",
                    backoff.as_millis()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(anyhow!(
            "{rows}no valid answer after {tries} {}: {failure}",
            if tries == 1 { "try" } else { "tries" }
        ))
    }
}

impl Reward for HttpReward {
    fn score(&mut self, request: &ScoreRequest) -> anyhow::Result<Vec<f32>> {
        let n = request.len();
        if n <= self.batch_size {
            return self.score_chunk(request, "");
        }
        let mut scores = Vec::with_capacity(n);
        for start in (0..n).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(n);
            let chunk = ScoreRequest {
                batch_id: request.batch_id,
                policy_version: request.policy_version,
                prompts: rows(&request.prompts, start, end),
                responses: rows(&request.responses, start, end),
                prompt_ids: rows(&request.prompt_ids, start, end),
                response_ids: rows(&request.response_ids, start, end),
            };
            scores.extend(self.score_chunk(&chunk, &format!("rows {start}..{end}: "))?);
        }
        Ok(scores)
    }

    fn name(&self) -> String {
        format!("the http reward at {}", self.url)
    }
}

/// `v[start..end]`, clipped to `v` (a request may leave its text fields empty).
fn rows<T: Clone>(v: &[T], start: usize, end: usize) -> Vec<T> {
    v[start.min(v.len())..end.min(v.len())].to_vec()
}

/// The start of a body, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let text = text.trim();
    match (text.is_empty(), bytes.len() > MAX) {
        (true, _) => "(empty body)".into(),
        (false, true) => format!("`{text}...`"),
        (false, false) => format!("`{text}`"),
    }
}
