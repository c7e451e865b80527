//! The Prometheus `/metrics` endpoint, and the three calls that record the metrics named in
//! `rlhf::metric_names` (nothing records a name that is not there).
//!
//! The endpoint runs on its own thread with its own single-threaded runtime, so it answers
//! while every actor thread and runtime worker is busy with tensor work.

use anyhow::{anyhow, Context};
use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use rlhf::metric_names::{self as names, Kind, Metric};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// Duration buckets: 1 ms to 5 minutes.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0,
    150.0, 300.0,
];
/// Staleness buckets, in versions.
const VERSIONS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 8.0, 16.0];
/// Reward-score buckets, symmetric around 0 (reward models are centred on demonstrations).
const SCORES: &[f64] = &[-4.0, -2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0];

/// The address the endpoint serves on, once started (one recorder per process).
static SERVING: OnceLock<SocketAddr> = OnceLock::new();

/// `HOST:PORT`, or `off` (None).
pub fn parse_listen(text: &str) -> anyhow::Result<Option<SocketAddr>> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr = text
        .trim()
        .parse()
        .map_err(|_| anyhow!("`{text}` is not HOST:PORT (for example 127.0.0.1:9464) or `off`"))?;
    Ok(Some(addr))
}

/// Serve `/metrics` on `addr` until the process exits. A second call in the same process
/// keeps the first endpoint (and fails if it asked for another address).
pub fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    if let Some(serving) = SERVING.get() {
        anyhow::ensure!(
            *serving == addr,
            "the metrics endpoint already serves on {serving}"
        );
        return Ok(());
    }
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for metric in names::ALL.iter().filter(|m| m.kind == Kind::Histogram) {
        let buckets = if metric.name.ends_with("_seconds") {
            SECONDS
        } else if metric.name.ends_with("_versions") {
            VERSIONS
        } else {
            SCORES
        };
        builder = builder.set_buckets_for_metric(Matcher::Full(metric.name.into()), buckets)?;
    }
    let (started, outcome) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(anyhow!(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                match builder.build() {
                    Ok((recorder, exporter)) => {
                        let _ = started.send(Ok(recorder));
                        tokio::spawn(sample_memory());
                        if let Err(e) = exporter.await {
                            tracing::error!("metrics endpoint stopped: {e:?}");
                        }
                    }
                    Err(e) => {
                        let _ = started.send(Err(anyhow!(e)));
                    }
                }
            });
        })
        .context("starting the metrics thread")?;
    let recorder = outcome
        .recv()
        .context("the metrics thread died while starting")?
        .with_context(|| format!("serving metrics on {addr}"))?;
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow!("another metrics recorder is already installed"))?;
    describe();
    // The sampler's first reading may predate the recorder: take one now.
    if let Some(bytes) = super::process::resident_bytes() {
        set(&names::RESIDENT_MEMORY, "", bytes as f64);
    }
    let _ = SERVING.set(addr);
    tracing::info!("metrics: serving http://{addr}/metrics");
    Ok(())
}

fn describe() {
    for m in names::ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// Resident memory, read from /proc every second (Linux; elsewhere the gauge stays absent).
async fn sample_memory() {
    loop {
        if let Some(bytes) = super::process::resident_bytes() {
            set(&names::RESIDENT_MEMORY, "", bytes as f64);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The metric's labels, all set to `value` (each metric has at most one label).
fn labels(metric: &Metric, value: &str) -> Vec<Label> {
    metric
        .labels
        .iter()
        .map(|key| Label::new(*key, value.to_string()))
        .collect()
}

/// Add `n` to a counter.
pub fn add(metric: &Metric, label: &str, n: u64) {
    debug_assert_eq!(metric.kind, Kind::Counter, "{}", metric.name);
    metrics::counter!(metric.name, labels(metric, label)).increment(n);
}

/// Set a gauge.
pub fn set(metric: &Metric, label: &str, value: f64) {
    debug_assert_eq!(metric.kind, Kind::Gauge, "{}", metric.name);
    metrics::gauge!(metric.name, labels(metric, label)).set(value);
}

/// Record one observation of a histogram; non-finite values are dropped.
pub fn observe(metric: &Metric, label: &str, value: f64) {
    debug_assert_eq!(metric.kind, Kind::Histogram, "{}", metric.name);
    if value.is_finite() {
        metrics::histogram!(metric.name, labels(metric, label)).record(value);
    }
}

/// One batch of `samples` sequences handled by `actor`.
pub fn processed(actor: &str, samples: i64) {
    add(&names::BATCHES, actor, 1);
    add(&names::SAMPLES, actor, samples.max(0) as u64);
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// The endpoint every test in this binary shares (one recorder per process).
    pub fn endpoint() -> SocketAddr {
        static ADDR: OnceLock<SocketAddr> = OnceLock::new();
        *ADDR.get_or_init(|| {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            serve(addr).unwrap();
            addr
        })
    }

    /// GET /metrics: the body.
    pub fn scrape(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_string()
    }

    /// Every metric family in a Prometheus text exposition, or what breaks the rules: a
    /// name missing from `rlhf::metric_names`, a type that differs from its constant's, a
    /// label other than the constant's (plus `le` on histogram buckets).
    pub fn families(body: &str) -> Result<Vec<&'static Metric>, Vec<String>> {
        let (mut found, mut problems) = (Vec::new(), Vec::new());
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                match names::find(name) {
                    Some(m) if m.kind.prometheus() == kind => found.push(m),
                    Some(m) => problems.push(format!("{name}: type {kind}, expected {:?}", m.kind)),
                    None => problems.push(format!("{name}: not in rlhf::metric_names")),
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let series = line.split_whitespace().next().unwrap_or(line);
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| names::find(b).is_some()))
                .unwrap_or(name);
            let Some(metric) = names::find(base) else {
                problems.push(format!("{name}: not in rlhf::metric_names"));
                continue;
            };
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let key = pair.split('=').next().unwrap_or(pair);
                let bucket = key == "le" && name.ends_with("_bucket");
                if !bucket && !metric.labels.contains(&key) {
                    problems.push(format!("{name}: unexpected label {key}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(found)
        } else {
            Err(problems)
        }
    }

    #[test]
    fn the_exposition_check_catches_unknown_names_types_and_labels() {
        let good = "# TYPE rlhf_kl_nats gauge\nrlhf_kl_nats{stage=\"ppo\"} 1\n\
                    # TYPE rlhf_step_duration_seconds histogram\n\
                    rlhf_step_duration_seconds_bucket{stage=\"ppo\",le=\"0.5\"} 1\n";
        assert_eq!(families(good).unwrap().len(), 2);
        for bad in [
            "# TYPE rlhf_made_up gauge\n",
            "# TYPE rlhf_kl_nats counter\n",
            "rlhf_kl_nats{model=\"x\"} 1\n",
            "rlhf_kl_nats{le=\"1\"} 1\n",
            "other_total 1\n",
        ] {
            assert!(families(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_readme_documents_every_metric() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for m in names::ALL {
            assert!(
                readme.contains(&format!("| `{}` | {} |", m.name, m.kind.prometheus())),
                "README.md does not document {}",
                m.name
            );
        }
    }

    #[test]
    fn listen_addresses_parse_or_say_what_is_expected() {
        assert_eq!(
            parse_listen("127.0.0.1:9464").unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(parse_listen("off").unwrap(), None);
        let e = parse_listen("localhost").unwrap_err().to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
    }

    #[test]
    fn recorded_values_are_served_with_their_description() {
        let addr = endpoint();
        add(&names::GENERATED_TOKENS, "telemetry_test", 7);
        set(&names::KL, "telemetry_test", 0.5);
        observe(&names::STEP_DURATION, "telemetry_test", 0.3);
        observe(&names::STEP_DURATION, "telemetry_test", f64::NAN);
        let body = scrape(addr);
        assert!(body.contains("rlhf_generated_tokens_total{stage=\"telemetry_test\"} 7"));
        assert!(body.contains("rlhf_kl_nats{stage=\"telemetry_test\"} 0.5"));
        assert!(body.contains("# TYPE rlhf_step_duration_seconds histogram"));
        assert!(body.contains("rlhf_step_duration_seconds_count{stage=\"telemetry_test\"} 1"));
        assert!(body
            .contains("rlhf_step_duration_seconds_bucket{stage=\"telemetry_test\",le=\"0.5\"} 1"));
        assert!(body.contains(&format!("# HELP rlhf_kl_nats {}", names::KL.help)));
        // The same address again is fine; another one is refused.
        serve(addr).unwrap();
        assert!(serve("127.0.0.1:1".parse().unwrap()).is_err());
    }
}
