//! The model shape (or folder), precision, placement and timing flags every benchmark
//! shares, and the timing loop itself.

use super::sys::{self, IdleWait, Peak};
use clap::{Args, ValueEnum};
use rlhf::device::{parse_device, DType};
use rlhf::model::{Architecture, Head, LoraConfig, Model, ModelConfig, ModelShape};
use rlhf::rng::Rng;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::Tensor;

#[derive(Clone, Copy, ValueEnum)]
pub enum Arch {
    Gpt2,
    Llama,
}

/// Model shape (or folder), precision, placement and timing settings shared by the
/// benchmarks.
#[derive(Args, Clone)]
pub struct ShapeArgs {
    /// Load this Hugging Face folder (config.json + model.safetensors) instead of building
    /// a random model; the shape flags are then ignored. A scalar head missing from the
    /// file (a language model used as reward or value model) is initialised with seed 0.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Arch::Gpt2)]
    pub arch: Arch,
    #[arg(long, default_value_t = 6)]
    pub layers: i64,
    #[arg(long, default_value_t = 256)]
    pub d_model: i64,
    #[arg(long, default_value_t = 8)]
    pub heads: i64,
    /// Key/value heads (llama); defaults to --heads.
    #[arg(long)]
    pub kv_heads: Option<i64>,
    #[arg(long, default_value_t = 8192)]
    pub vocab: i64,
    /// Timed repeats after one warm-up run.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// libtorch intra-op threads (also those of the matmul peak measurement).
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Before each timed repeat, wait until other processes use less than
    /// --idle-threshold of the machine's CPU for 2 s in a row, at most this many seconds
    /// (then warn and time anyway). 0: do not wait.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub wait_idle: f64,
    /// Share of the machine's CPU that other processes may use on an idle machine.
    #[arg(long, default_value_t = 0.1)]
    pub idle_threshold: f64,
    /// LoRA adapters of this rank (alpha = 2 x rank) on every linear layer, base frozen;
    /// 0: every weight trains.
    #[arg(long, default_value_t = 0)]
    pub lora_rank: i64,
}

/// What [`ShapeArgs::time`] measured.
pub struct Summary {
    pub seconds_median: f64,
    pub per_second_median: f64,
    pub flops_per_second: f64,
    pub peak_fraction: f64,
}

impl ShapeArgs {
    /// Checks the common flags and sets this thread's libtorch threads.
    pub fn setup(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.repeats > 0, "--repeats must be at least 1");
        anyhow::ensure!(self.threads > 0, "--threads must be at least 1");
        anyhow::ensure!(
            self.wait_idle >= 0.0 && self.wait_idle.is_finite(),
            "--wait-idle must be a number of seconds >= 0"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.idle_threshold),
            "--idle-threshold must be between 0 and 1"
        );
        DType::parse(&self.dtype)?;
        parse_device(&self.device)?;
        tch::set_num_threads(self.threads);
        Ok(())
    }

    pub fn model(&self, head: Head, max_positions: i64) -> anyhow::Result<Model> {
        self.setup()?;
        self.build_model(head, max_positions, &self.device)
    }

    /// The model of `--model`, or a random one of the shape flags with a fixed seed (every
    /// call gives the same weights); either way without dropout and with room for
    /// `max_positions` tokens.
    pub fn build_model(
        &self,
        head: Head,
        max_positions: i64,
        device: &str,
    ) -> anyhow::Result<Model> {
        match &self.model {
            Some(dir) => load_folder(dir, head, (&self.dtype, device), max_positions, self.lora()),
            None => self.random_model(head, max_positions, device),
        }
    }

    /// A model of this shape with a fixed seed, so every call gives the same weights.
    pub fn random_model(
        &self,
        head: Head,
        max_positions: i64,
        device: &str,
    ) -> anyhow::Result<Model> {
        let shape = ModelShape {
            arch: match self.arch {
                Arch::Gpt2 => Architecture::Gpt2,
                Arch::Llama => Architecture::Llama,
            },
            vocab_size: self.vocab,
            hidden_size: self.d_model,
            num_layers: self.layers,
            num_heads: self.heads,
            num_kv_heads: self.kv_heads.unwrap_or(self.heads),
            max_positions,
            eos_token_id: self.vocab - 1,
        };
        tch::manual_seed(0);
        let (dtype, device) = (DType::parse(&self.dtype)?, parse_device(device)?);
        let config = ModelConfig::new_json(&shape);
        Ok(match self.lora() {
            Some(lora) => Model::new_with_lora(config, head, dtype, device, &lora)?,
            None => Model::new(config, head, dtype, device)?,
        })
    }

    /// `--lora-rank` as a LoRA config (None at 0).
    pub fn lora(&self) -> Option<LoraConfig> {
        (self.lora_rank > 0).then(|| LoraConfig {
            rank: self.lora_rank,
            alpha: 2.0 * self.lora_rank as f64,
            ..LoraConfig::default()
        })
    }

    /// The idle-machine wait before each timed repeat.
    pub fn idle(&self) -> IdleWait {
        IdleWait {
            cap: Duration::from_secs_f64(self.wait_idle),
            threshold: self.idle_threshold,
            settle: Duration::from_secs(2),
        }
    }

    /// The machine's matmul peak for this dtype, device and thread count (measured once).
    pub fn peak(&self) -> anyhow::Result<Peak> {
        let kind = DType::parse(&self.dtype)?.kind();
        Ok(sys::matmul_peak(
            kind,
            parse_device(&self.device)?,
            self.threads,
            &self.idle(),
        ))
    }

    /// Runs `work` once to warm up and `repeats` times timed; `work` returns the units done
    /// and each run costs `flops` floating-point operations. Prints one line per repeat
    /// and a summary line (with `settings` merged in).
    pub fn time(
        &self,
        model: &ModelConfig,
        unit: &str,
        settings: Value,
        flops: f64,
        mut work: impl FnMut() -> anyhow::Result<f64>,
    ) -> anyhow::Result<Summary> {
        let peak = self.peak()?;
        work()?;
        let mut runs = Vec::with_capacity(self.repeats);
        for repeat in 1..=self.repeats {
            let idle = self.idle().wait();
            let start = Instant::now();
            let units = work()?;
            let seconds = start.elapsed().as_secs_f64();
            runs.push((seconds, units / seconds));
            let mut line = json!({"repeat": repeat, "seconds": seconds, unit: units, "per_second": units / seconds, "flops_per_second": flops / seconds});
            merge(&mut line, &idle.json());
            println!("{line}");
        }
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut rates: Vec<f64> = runs.iter().map(|r| r.1).collect();
        rates.sort_by(f64::total_cmp);
        let seconds_median = runs[runs.len() / 2].0;
        let flops_per_second = flops / seconds_median;
        let summary = Summary {
            seconds_median,
            per_second_median: rates[rates.len() / 2],
            flops_per_second,
            peak_fraction: sys::peak_fraction(flops_per_second, &peak),
        };
        let mut line = self.describe(model);
        merge(
            &mut line,
            &json!({
                "unit": unit,
                "per_second_min": rates[0],
                "per_second_median": summary.per_second_median,
                "per_second_max": rates[rates.len() - 1],
                "seconds_median": seconds_median,
                "flops_per_repeat": flops,
                "flops_per_second": flops_per_second,
                "matmul_peak_flops_per_second": peak.flops_per_second,
                "peak_fraction": summary.peak_fraction,
                "peak_rss_bytes": sys::peak_rss_bytes(),
            }),
        );
        merge(&mut line, &settings);
        println!("{line}");
        Ok(summary)
    }

    /// The model and machine settings every summary states.
    pub fn describe(&self, model: &ModelConfig) -> Value {
        json!({
            "model": self.model.as_ref().map_or("random".into(), |d| d.display().to_string()),
            "params": model.num_parameters(),
            "arch": format!("{:?}", model.arch).to_lowercase(),
            "layers": model.num_layers, "d_model": model.hidden_size, "heads": model.num_heads,
            "vocab": model.vocab_size,
            "dtype": self.dtype, "device": self.device, "threads": self.threads,
            "repeats": self.repeats,
        })
    }
}

/// Copies every key of the object `from` into the object `into`.
pub fn merge(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// A Hugging Face folder as a benchmark model: seed 0 for a fresh scalar head, dropout
/// off, and positions for `max_positions` tokens.
pub fn load_folder(
    dir: &Path,
    head: Head,
    (dtype, device): (&str, &str),
    max_positions: i64,
    lora: Option<LoraConfig>,
) -> anyhow::Result<Model> {
    tch::manual_seed(0);
    let (dtype, device) = (DType::parse(dtype)?, parse_device(device)?);
    let (mut model, _) = Model::load_with_lora(dir, head, dtype, device, lora.as_ref())?;
    let have = model.config().max_positions;
    anyhow::ensure!(
        have >= max_positions,
        "{}: the model holds {have} positions; this benchmark needs {max_positions}",
        dir.display()
    );
    model.set_dropout(0.0);
    Ok(model)
}

/// Random token ids in `0..vocab - 1` (the last id, EOS in random models, never occurs).
pub fn random_ids(rng: &mut Rng, rows: i64, cols: i64, vocab: i64) -> Tensor {
    let ids: Vec<i64> = (0..rows * cols)
        .map(|_| rng.below(vocab as usize - 1) as i64)
        .collect();
    Tensor::from_slice(&ids).view([rows, cols])
}
