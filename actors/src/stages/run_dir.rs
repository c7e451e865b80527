//! A stage's run directory: the resolved config, the metrics log (one JSON object per
//! line), and checkpoints in Hugging Face layout.

use anyhow::Context;
use rlhf::config::RunConfig;
use rlhf::data::Fitted;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tracing::info;

pub struct RunDir {
    root: PathBuf,
    metrics: BufWriter<File>,
    /// Lines in metrics.jsonl.
    lines: u64,
}

impl RunDir {
    /// Create `root`, write `config.toml` (the resolved config) and start `metrics.jsonl`
    /// (appending, so a resumed stage keeps its history).
    pub fn create(root: &Path, config: &RunConfig) -> anyhow::Result<RunDir> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let resolved = toml::to_string_pretty(config).context("serialising the resolved config")?;
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, resolved)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let metrics_path = root.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("opening {}", metrics_path.display()))?;
        let lines = std::fs::read(&metrics_path)
            .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
            .unwrap_or(0);
        Ok(RunDir {
            root: root.to_path_buf(),
            metrics: BufWriter::new(file),
            lines,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Append one record to metrics.jsonl, flushed at once so a crash loses nothing.
    pub fn log(&mut self, record: &Value) -> anyhow::Result<()> {
        let line = serde_json::to_string(record).expect("JSON values serialise");
        writeln!(self.metrics, "{line}")
            .and_then(|_| self.metrics.flush())
            .with_context(|| format!("writing {}", self.root.join("metrics.jsonl").display()))?;
        self.lines += 1;
        Ok(())
    }

    /// Logs what the over-long rule did to a split's data (a log line when it cut or dropped
    /// anything) and records `{"stage", "split", <unit>: kept, "skipped_too_long",
    /// "truncated"}`.
    pub fn log_fitted(
        &mut self,
        stage: &str,
        split: &str,
        (unit, kept): (&str, usize),
        fitted: Fitted,
        (limit, max): (&str, usize),
    ) -> anyhow::Result<()> {
        if fitted != Fitted::default() {
            info!(
                stage,
                split,
                truncated = fitted.truncated,
                skipped = fitted.skipped,
                limit,
                max,
                "over-long {unit}"
            );
        }
        self.log(&json!({"stage": stage, "split": split, unit: kept,
            "skipped_too_long": fitted.skipped, "truncated": fitted.truncated}))
    }

    /// Lines in metrics.jsonl so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Keep only the first `lines` lines of metrics.jsonl (what a resumed checkpoint had
    /// written), so a resumed run's log reads as if it had never stopped.
    pub fn truncate_metrics(&mut self, lines: u64) -> anyhow::Result<()> {
        let path = self.root.join("metrics.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let kept: usize = text
            .split_inclusive('\n')
            .take(lines as usize)
            .map(str::len)
            .sum();
        self.metrics.flush()?;
        self.metrics
            .get_ref()
            .set_len(kept as u64)
            .with_context(|| format!("truncating {}", path.display()))?;
        self.lines = lines.min(text.split_inclusive('\n').count() as u64);
        Ok(())
    }
}

/// One JSON object per line, created with its folder.
pub fn write_jsonl(path: &Path, records: &[Value]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for record in records {
        writeln!(out, "{record}").with_context(|| format!("writing {}", path.display()))?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))
}
