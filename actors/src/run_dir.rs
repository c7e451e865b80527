//! A stage's run directory: the resolved config, the metrics log (one JSON object per
//! line), and checkpoints in Hugging Face layout.

use anyhow::Context;
use rlhf::config::RunConfig;
use serde_json::Value;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct RunDir {
    root: PathBuf,
    metrics: BufWriter<File>,
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
        Ok(RunDir {
            root: root.to_path_buf(),
            metrics: BufWriter::new(file),
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
            .with_context(|| format!("writing {}", self.root.join("metrics.jsonl").display()))
    }
}
