//! The Grafana dashboard (dashboards/rlhf.json) against a real Prometheus: a tiny pipeline
//! (actors/tests/prometheus_tiny.toml) runs with `--metrics-addr`, a Prometheus started by
//! the test scrapes it every second, and every expression of every panel must then return
//! at least one finite value. The dashboard must also cover every metric the trainer exports
//! (`rlhf::metric_names::ALL`) and name no other.
//!
//! Needs `prometheus` on PATH (scripts/setup.sh installs Debian's package).

use rlhf::metric_names::{self, Kind};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the dashboard's Grafana variables stand for in the test's queries.
const SUBSTITUTIONS: &[(&str, &str)] = &[("$__rate_interval", "5m"), ("$stage", ".*")];

/// A child process killed (and reaped) when the test ends, also when it panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A loopback port nothing listens on (bound, read, released).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Everything but RFC 3986's unreserved characters as %XX.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A chunked HTTP/1.1 body, decoded.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

/// GET `path` from 127.0.0.1:`port` with a bare HTTP/1.1 request: (status code, body).
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers from {addr}"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut body = response[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line from {addr}: {head}"))?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

/// An instant query (at `time`, unix seconds; else now): the `data` of a successful answer.
fn query(port: u16, promql: &str, time: Option<f64>) -> Result<Value, String> {
    let mut path = format!("/api/v1/query?query={}", percent_encode(promql));
    if let Some(t) = time {
        path.push_str(&format!("&time={t:.3}"));
    }
    let (status, body) = http_get(port, &path)?;
    let answer: Value = serde_json::from_str(&body)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if answer["status"] != "success" {
        return Err(format!("HTTP {status}: {answer}"));
    }
    Ok(answer["data"].clone())
}

/// The sample values of an instant query's answer (a vector or a scalar).
fn values(data: &Value) -> Vec<f64> {
    let value = |v: &Value| {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|r| r.iter().map(|s| value(&s["value"])).collect())
            .unwrap_or_default(),
        Some("scalar") => vec![value(&data["result"])],
        _ => Vec::new(),
    }
}

/// (panel title, refId, expr) of every target of every panel, rows' nested panels included.
fn dashboard_targets(dashboard: &Value) -> Vec<(String, String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let ref_id = target["refId"].as_str().unwrap_or("?").to_string();
                    out.push((title.clone(), ref_id, expr.to_string()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The `rlhf_*` identifiers an expression names.
fn metric_identifiers(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            if expr[start..].starts_with("rlhf_") {
                out.insert(expr[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The series names a metric is queried by: histograms by their three series.
fn series_of(metric: &metric_names::Metric) -> Vec<String> {
    match metric.kind {
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", metric.name))
            .collect(),
        Kind::Counter | Kind::Gauge => vec![metric.name.to_string()],
    }
}

/// The names are the exporter's: every metric appears, no other `rlhf_` name does.
fn check_names(targets: &[(String, String, String)]) {
    let named: BTreeSet<String> = targets
        .iter()
        .flat_map(|(_, _, expr)| metric_identifiers(expr))
        .collect();
    let known: BTreeSet<String> = metric_names::ALL.iter().flat_map(series_of).collect();
    let unknown: Vec<&String> = named.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "dashboards/rlhf.json names series the exporter does not export: {unknown:?}"
    );
    let missing: Vec<&str> = metric_names::ALL
        .iter()
        .filter(|m| !series_of(m).iter().any(|s| named.contains(s)))
        .map(|m| m.name)
        .collect();
    assert!(
        missing.is_empty(),
        "no panel of dashboards/rlhf.json shows {missing:?}"
    );
}

/// Poll `/-/ready` until Prometheus answers 200.
fn wait_until_ready(port: u16, prometheus: &mut KillOnDrop, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            return;
        }
        let log_text = || std::fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(status)) = prometheus.0.try_wait() {
            panic!(
                "prometheus exited with {status} before it was ready:\n{}",
                log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "prometheus was not ready on port {port} after 60 s:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Poll until Prometheus has scraped the target at or after `at` (unix seconds): every
/// earlier scrape is then in its database. `up` is written on failed scrapes too.
fn wait_for_scrape_after(port: u16, at: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = query(port, "max(timestamp(up{job=\"rlhf\"}))", None)
            .ok()
            .and_then(|data| values(&data).first().copied());
        if last.is_some_and(|t| t >= at) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus had no scrape at or after {at:.3} 30 s later (last: {last:?})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn every_dashboard_panel_shows_data_from_a_real_prometheus() {
    let started = Instant::now();
    let dashboard_path = root().join("dashboards/rlhf.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard_path).unwrap()).unwrap();
    let targets = dashboard_targets(&dashboard);
    assert!(
        !targets.is_empty(),
        "no panel targets in {}",
        dashboard_path.display()
    );
    check_names(&targets);

    let prometheus_bin = find_on_path("prometheus").unwrap_or_else(|| {
        panic!(
            "`prometheus` is not on PATH; run scripts/setup.sh (it installs Debian's \
             prometheus package) or install Prometheus 2.x"
        )
    });

    let dir = std::env::temp_dir().join(format!("rlhf-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (exporter_port, prometheus_port) = free_ports();

    // Prometheus, scraping where the pipeline will serve.
    let scrape_config = dir.join("prometheus.yml");
    std::fs::write(
        &scrape_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: rlhf\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{exporter_port}\"]\n"
        ),
    )
    .unwrap();
    let log = dir.join("prometheus.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut prometheus = KillOnDrop(
        Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", scrape_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", prometheus_bin.display())),
    );
    wait_until_ready(prometheus_port, &mut prometheus, &log);
    eprintln!(
        "prometheus ready on 127.0.0.1:{prometheus_port} after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The whole pipeline, serving its metrics.
    let run = dir.join("run");
    let config = dir.join("prometheus_tiny.toml");
    let text = std::fs::read_to_string(root().join("actors/tests/prometheus_tiny.toml")).unwrap();
    std::fs::write(
        &config,
        text.replace("runs/prometheus_tiny", run.to_str().unwrap()),
    )
    .unwrap();
    let pipeline_started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rlhf"))
        .args(["pipeline", "--config", config.to_str().unwrap()])
        .args(["--metrics-addr", &format!("127.0.0.1:{exporter_port}")])
        .output()
        .unwrap();
    let exited = unix_seconds(SystemTime::now());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pipeline failed:\n{stderr}");
    eprintln!(
        "pipeline took {:.1} s",
        pipeline_started.elapsed().as_secs_f64()
    );

    // Every scrape up to the end of the run is in Prometheus's database.
    wait_for_scrape_after(prometheus_port, exited);
    let at = exited - 2.0;
    let scraped = query(
        prometheus_port,
        "max_over_time(up{job=\"rlhf\"}[5m])",
        Some(at),
    )
    .map(|data| values(&data))
    .unwrap_or_default();
    assert!(
        scraped.contains(&1.0),
        "prometheus never scraped 127.0.0.1:{exporter_port} successfully during the run \
         (max up: {scraped:?}); its log: {}",
        log.display()
    );

    let mut failures = Vec::new();
    for (title, ref_id, expr) in &targets {
        let mut promql = expr.clone();
        for (variable, value) in SUBSTITUTIONS {
            promql = promql.replace(variable, value);
        }
        let problem = match query(prometheus_port, &promql, Some(at)) {
            Err(e) => Some(e),
            Ok(data) => {
                let found = values(&data);
                if found.is_empty() {
                    Some("no series".to_string())
                } else if !found.iter().any(|v| v.is_finite()) {
                    Some(format!("no finite value: {found:?}"))
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            failures.push(format!("  {title} [{ref_id}] `{promql}`: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard expressions show nothing at {at:.3} (2 s before the pipeline \
         exited):\n{}",
        failures.len(),
        targets.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} dashboard expressions checked; the test took {:.1} s",
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}
