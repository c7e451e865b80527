//! The HTTP reward, against a tiny loopback server started by the test.
//!
//! The client: chunks go in row order, bad answers are retried, a silent service or a
//! closed port fails within a bounded time with the reason, bad configs are refused, and
//! the cost of the HTTP hop is measured against the in-process rules reward.
//!
//! PPO: the server scores each response with hand-written rules, and `rlhf ppo`
//! (`[ppo.reward] kind = "http"`) trains on what it answers. The trainer must log exactly
//! the served scores, and the in-process `kind = "rules"` reward with the same rules must
//! give the same scores for the same requests. A server that goes silent mid-run must end
//! the run with an error naming the http reward, within a bounded time, with the policy
//! checkpointed.

mod common;

use common::{failure, ok, ppo_head, ppo_steps, rlhf, temp_dir, write, write_prompts, Tiny, WORDS};
use rlhf::config::{HttpRewardConfig, RuleConfig};
use rlhf_actors::reward::{HttpReward, Reward, Rules, ScoreRequest};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

// The test server and the client.

/// Every request the test server got, in arrival order.
type Seen = Arc<Mutex<Vec<ScoreRequest>>>;

/// What the test server does with one request.
enum Reply {
    /// 200 with this body.
    Body(String),
    /// This status, empty body.
    Status(u16),
    /// Keep the connection open and never answer.
    Silent,
}

/// A loopback HTTP server on its own threads (one per connection, keep-alive served),
/// answering the n-th request (0-based, over all connections) with `reply(n, request)`.
/// Returns its URL and every request it got, in arrival order.
fn serve(reply: impl Fn(usize, &ScoreRequest) -> Reply + Send + Sync + 'static) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/score", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (reply, log) = (Arc::new(reply), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (reply, log) = (reply.clone(), log.clone());
            std::thread::spawn(move || connection(stream.unwrap(), &*reply, &log));
        }
    });
    (url, seen)
}

fn connection(
    stream: TcpStream,
    reply: &dyn Fn(usize, &ScoreRequest) -> Reply,
    log: &Mutex<Vec<ScoreRequest>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    while let Some(body) = read_request(&mut reader) {
        let request: ScoreRequest = serde_json::from_slice(&body).unwrap();
        let n = {
            let mut log = log.lock().unwrap();
            log.push(request.clone());
            log.len() - 1
        };
        let (status, body) = match reply(n, &request) {
            Reply::Body(body) => (200, body),
            Reply::Status(status) => (status, String::new()),
            Reply::Silent => {
                // Block until the client gives up and closes the connection.
                let _ = reader.read_to_end(&mut Vec::new());
                return;
            }
        };
        // One write: a head and a body written apart would wait out the client's
        // delayed ACK (Nagle), about 40 ms per answer.
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// One request's body; `None` when the client closed the connection.
fn read_request(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            if key.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn scores_json(scores: &[f32]) -> String {
    serde_json::json!({ "scores": scores }).to_string()
}

fn config(url: &str, timeout_seconds: f64, retries: u32, batch_size: usize) -> HttpRewardConfig {
    HttpRewardConfig {
        url: url.into(),
        timeout_seconds,
        retries,
        batch_size,
    }
}

/// `rows` rows whose response is `"r<i>"` and response ids `[i]`.
fn request(batch_id: u64, rows: usize) -> ScoreRequest {
    ScoreRequest {
        batch_id,
        policy_version: 5,
        prompts: (0..rows).map(|i| format!("p{i}")).collect(),
        responses: (0..rows).map(|i| format!("r{i}")).collect(),
        prompt_ids: (0..rows).map(|i| vec![100, i as i64]).collect(),
        response_ids: (0..rows).map(|i| vec![i as i64]).collect(),
    }
}

/// Scores each row with its response id, so order mistakes show.
fn by_id(request: &ScoreRequest) -> Reply {
    let scores: Vec<f32> = request
        .response_ids
        .iter()
        .map(|ids| ids[0] as f32)
        .collect();
    Reply::Body(scores_json(&scores))
}

#[test]
fn chunks_are_scored_in_order() {
    let (url, seen) = serve(|_, r| by_id(r));
    let mut reward = HttpReward::new(&config(&url, 5.0, 0, 3)).unwrap();
    assert_eq!(reward.name(), format!("the http reward at {url}"));
    let scores = reward.score(&request(7, 8)).unwrap();
    assert_eq!(scores, [0., 1., 2., 3., 4., 5., 6., 7.]);
    let seen = seen.lock().unwrap();
    let sizes: Vec<usize> = seen.iter().map(ScoreRequest::len).collect();
    assert_eq!(sizes, [3, 3, 2]);
    assert!(seen
        .iter()
        .all(|r| (r.batch_id, r.policy_version) == (7, 5)));
    // Every field of the chunk is the original's rows.
    assert_eq!(seen[2].prompts, ["p6", "p7"]);
    assert_eq!(seen[2].responses, ["r6", "r7"]);
    assert_eq!(seen[2].prompt_ids, [vec![100, 6], vec![100, 7]]);
    // A request no bigger than batch_size goes as one.
    drop(seen);
    let mut whole = HttpReward::new(&config(&url, 5.0, 0, 64)).unwrap();
    assert_eq!(whole.score(&request(8, 2)).unwrap(), [0., 1.]);
    assert!(whole.score(&request(9, 0)).unwrap().is_empty());
}

#[test]
fn bad_answers_are_retried_until_a_good_one() {
    // Wrong count, a NaN, garbage, a 500, then a good answer.
    let (url, seen) = serve(|n, r| match n {
        0 => Reply::Body(scores_json(&[1.0])),
        1 => Reply::Body(r#"{"scores": [1.0, NaN]}"#.into()),
        2 => Reply::Body(r#"{"scores": [1.0, null]}"#.into()),
        3 => Reply::Body("<html>".into()),
        4 => Reply::Status(500),
        _ => by_id(r),
    });
    let mut reward = HttpReward::new(&config(&url, 5.0, 5, 64)).unwrap();
    assert_eq!(reward.score(&request(1, 2)).unwrap(), [0., 1.]);
    assert_eq!(seen.lock().unwrap().len(), 6);
}

#[test]
fn a_silent_service_fails_after_bounded_tries() {
    let (url, seen) = serve(|_, _| Reply::Silent);
    let mut reward = HttpReward::new(&config(&url, 0.5, 2, 64)).unwrap();
    let start = Instant::now();
    let e = reward.score(&request(3, 4)).unwrap_err().to_string();
    let took = start.elapsed().as_secs_f64();
    assert_eq!(e, "no valid answer after 3 tries: timed out after 0.5 s");
    assert_eq!(seen.lock().unwrap().len(), 3);
    // 3 x 0.5 s of timeouts and 0.1 + 0.2 s of back-off.
    assert!((1.7..5.0).contains(&took), "took {took} s");
}

#[test]
fn garbage_fails_with_the_reason() {
    let (url, _) = serve(|_, _| Reply::Body("not json".into()));
    let mut reward = HttpReward::new(&config(&url, 5.0, 1, 2)).unwrap();
    let e = reward.score(&request(4, 3)).unwrap_err().to_string();
    assert!(
        e.starts_with(
            "rows 0..2: no valid answer after 2 tries: \
             the answer is not JSON {\"scores\": [numbers]} ("
        ) && e.ends_with("): `not json`"),
        "{e}"
    );
    let (url, _) = serve(|_, _| Reply::Body(scores_json(&[1.0])));
    let mut reward = HttpReward::new(&config(&url, 5.0, 0, 64)).unwrap();
    let e = reward.score(&request(4, 3)).unwrap_err().to_string();
    assert!(
        e.ends_with("after 1 try: the service returned 1 scores for the 3 rows of rollout batch 4"),
        "{e}"
    );
    let (url, _) = serve(|_, _| Reply::Status(503));
    let mut reward = HttpReward::new(&config(&url, 5.0, 0, 64)).unwrap();
    let e = reward.score(&request(4, 1)).unwrap_err().to_string();
    assert!(
        e.ends_with("status 503 Service Unavailable: (empty body)"),
        "{e}"
    );
}

#[test]
fn a_closed_port_and_bad_configs_fail() {
    // Bind, read the port, release: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/score");
    let mut reward = HttpReward::new(&config(&url, 1.0, 1, 64)).unwrap();
    let e = reward.score(&request(2, 1)).unwrap_err().to_string();
    assert!(
        e.contains("no valid answer after 2 tries: connection failed"),
        "{e}"
    );
    for (c, says) in [
        (config("https://x", 1.0, 0, 1), "not an http:// address"),
        (config("http://x", 0.0, 0, 1), "timeout_seconds"),
        (config("http://x", f64::NAN, 0, 1), "timeout_seconds"),
        (config("http://x", 1.0, 0, 0), "batch_size"),
    ] {
        let e = HttpReward::new(&c).err().unwrap().to_string();
        assert!(e.contains(says), "{e}");
    }
}

/// The cost of the HTTP hop: one 64-row request scored by the rules reward in process
/// and by the same rules behind a loopback server. Run with `--nocapture` to see it.
#[test]
fn overhead_against_in_process_rules() {
    let rules = || {
        Rules::new(&[
            RuleConfig::Length {
                min_words: 1,
                max_words: 5,
                score: 1.0,
            },
            RuleConfig::Regex {
                pattern: "[aeiou]".into(),
                score: 0.5,
            },
        ])
        .unwrap()
    };
    let served = Mutex::new(rules());
    let (url, _) =
        serve(move |_, r| Reply::Body(scores_json(&served.lock().unwrap().score(r).unwrap())));
    // A realistic batch: 64 rows, 30 prompt tokens and 40 response tokens each.
    let words = [
        "the", "river", "stone", "cloud", "bread", "horse", "lamp", "fern",
    ];
    let mut request = request(0, 64);
    for (i, row) in request.responses.iter_mut().enumerate() {
        *row = (0..1 + i % 9)
            .map(|w| words[(i + w) % words.len()])
            .collect::<Vec<_>>()
            .join(" ");
    }
    request.prompt_ids = vec![(0..30).collect(); 64];
    request.response_ids = vec![(0..40).collect(); 64];
    let mut local = rules();
    let mut http = HttpReward::new(&config(&url, 5.0, 0, 64)).unwrap();
    assert_eq!(
        http.score(&request).unwrap(),
        local.score(&request).unwrap()
    );
    let time = |reward: &mut dyn Reward| {
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            reward.score(&request).unwrap();
        }
        start.elapsed().as_secs_f64() / n as f64
    };
    let (local_s, http_s) = (time(&mut local), time(&mut http));
    println!(
        "64-row batch ({} bytes of JSON): in-process rules {:.1} us, http rules {:.1} us \
         (overhead {:.1} us per batch)",
        serde_json::to_vec(&request).unwrap().len(),
        local_s * 1e6,
        http_s * 1e6,
        (http_s - local_s) * 1e6
    );
}

// PPO against the service.

const STEPS: u64 = 4;
const ROWS: usize = 8;
/// Rows per HTTP request: a rollout batch of 8 goes as chunks of 3, 3 and 2.
const CHUNK: usize = 3;

/// The rules, as the in-process reward spells them.
fn rules() -> Vec<RuleConfig> {
    vec![
        RuleConfig::Length {
            min_words: 1,
            max_words: 2,
            score: 1.0,
        },
        RuleConfig::Regex {
            pattern: "o".into(),
            score: 0.5,
        },
    ]
}

/// The same rules, written again for the server so the comparison means something.
fn served_score(response: &str) -> f32 {
    let words = response.split_whitespace().count();
    let length = if (1..=2).contains(&words) { 1.0 } else { 0.0 };
    let o = if response.contains('o') { 0.5 } else { 0.0 };
    length + o
}

/// What the rules service answers to `request`.
fn served_scores(request: &ScoreRequest) -> Vec<f32> {
    request.responses.iter().map(|r| served_score(r)).collect()
}

/// A reward service scoring with [`served_score`]: it answers the first `answered`
/// requests and then accepts but never replies.
fn rules_service(answered: usize) -> (String, Seen) {
    serve(move |n, request| {
        if n < answered {
            Reply::Body(scores_json(&served_scores(request)))
        } else {
            Reply::Silent
        }
    })
}

/// A tiny random policy from `rlhf init`, made once and shared by the tests: PPO starts
/// its policy and value model from it (the reward comes from the service).
fn init_model() -> &'static Path {
    static INIT: OnceLock<PathBuf> = OnceLock::new();
    INIT.get_or_init(|| {
        let dir = temp_dir("reward-http-init");
        let config = write(dir.join("init.toml"), Tiny::default().config(&dir));
        ok(rlhf(&["init", "--config", config.to_str().unwrap()]));
        dir.join("init")
    })
}

/// A PPO config whose reward is the service at `url`.
fn ppo_config(dir: &Path, url: &str, steps: u64, timeout: f64, retries: u32) -> PathBuf {
    let (init, prompts) = (init_model(), dir.join("prompts.jsonl"));
    write_prompts(&prompts, "Answer about", &WORDS[..8]);
    let head = ppo_head(&dir.join("run"), init, init, &prompts, steps);
    let config = format!(
        r#"{head}rollout_batch_size = {ROWS}
max_new_tokens = 8
max_staleness = 1
[ppo.algo]
ptx_coef = 0.0
ppo_epochs = 1
[ppo.reward]
kind = "http"
url = "{url}"
timeout_seconds = {timeout:?}
retries = {retries}
batch_size = {CHUNK}
"#
    );
    write(dir.join("config.toml"), config)
}

/// Runs `rlhf ppo`, killing it and failing the test if it outlives `limit`.
fn ppo(config: &Path, limit: Duration) -> (Output, f64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(["ppo", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rlhf ppo still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    (out, start.elapsed().as_secs_f64())
}

#[test]
fn ppo_trains_on_the_http_service_scores() {
    let dir = temp_dir("reward-http-ppo");
    let (url, log) = rules_service(usize::MAX);
    let config = ppo_config(&dir, &url, STEPS, 10.0, 1);
    let (out, seconds) = ppo(&config, Duration::from_secs(600));
    ok(out);
    eprintln!("rlhf ppo with the http reward: {seconds:.1} s");

    // Each rollout batch came as chunks of at most CHUNK rows, in order, each answered once.
    let log = log.lock().unwrap().clone();
    let mut by_batch: BTreeMap<u64, Vec<(ScoreRequest, Vec<f32>)>> = BTreeMap::new();
    for request in log {
        let scores = served_scores(&request);
        by_batch
            .entry(request.batch_id)
            .or_default()
            .push((request, scores));
    }
    assert_eq!(
        by_batch.keys().copied().collect::<Vec<_>>(),
        (0..STEPS).collect::<Vec<_>>()
    );
    for (batch, chunks) in &by_batch {
        let sizes: Vec<usize> = chunks.iter().map(|(r, _)| r.len()).collect();
        assert_eq!(sizes, [3, 3, 2], "batch {batch}");
        let version = chunks[0].0.policy_version;
        assert!(chunks.iter().all(|(r, _)| r.policy_version == version));
        for (r, _) in chunks {
            assert_eq!(r.prompts.len(), r.len());
            assert_eq!(r.responses.len(), r.len());
            assert_eq!(r.prompt_ids.len(), r.len());
            assert!(
                r.prompts.iter().all(|p| p.starts_with("Answer about the ")),
                "{r:?}"
            );
        }
    }

    // The trainer logged the mean of exactly what the service answered: step k trained
    // on rollout batch k - 1.
    let steps = ppo_steps(&dir.join("run"));
    assert_eq!(steps.len(), STEPS as usize);
    for (step, record) in steps.iter().enumerate() {
        let served: Vec<f32> = by_batch[&(step as u64)]
            .iter()
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        let mean = served.iter().map(|&s| s as f64).sum::<f64>() / served.len() as f64;
        let logged = record["score_mean"].as_f64().unwrap();
        assert!(
            (logged - mean).abs() < 1e-6,
            "step {}: logged {logged}, served {mean}",
            step + 1
        );
    }

    // The in-process rules reward gives the same scores for the same requests.
    let mut local = Rules::new(&rules()).unwrap();
    let mut distinct = std::collections::BTreeSet::new();
    for (request, served) in by_batch.values().flatten() {
        assert_eq!(&local.score(request).unwrap(), served, "{request:?}");
        distinct.extend(served.iter().map(|s| s.to_bits()));
    }
    // The random policy's responses spread over the rules' outcomes, so the comparison
    // is not one constant against another.
    assert!(
        distinct.len() >= 3,
        "served only {} distinct scores",
        distinct.len()
    );
    assert!(run_checkpoint(&dir).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn run_checkpoint(dir: &Path) -> PathBuf {
    dir.join("run/ppo/checkpoints/last/model.safetensors")
}

#[test]
fn a_service_that_goes_silent_fails_the_run_with_a_checkpoint() {
    let dir = temp_dir("reward-http-silent");
    // Batches 0 and 1 are answered (3 requests each), then batch 2's first chunk hangs.
    let (url, log) = rules_service(6);
    let config = ppo_config(&dir, &url, 6, 1.0, 1);
    let (out, seconds) = ppo(&config, Duration::from_secs(300));
    let (stderr, error) = failure(&out);
    eprintln!("rlhf ppo against a silent service failed after {seconds:.1} s: {error}");
    assert!(
        error.contains(&format!("http reward at {url}"))
            && error.contains("rollout batch 2")
            && error.contains("no valid answer after 2 tries: timed out after 1 s"),
        "{stderr}"
    );
    // Two tries of batch 2's first chunk, both unanswered (the service answers only the
    // first 6 requests); nothing after.
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 8);
    assert!(log[6..].iter().all(|r| r.batch_id == 2));
    assert!(run_checkpoint(&dir).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
