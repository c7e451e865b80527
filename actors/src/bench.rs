//! `rlhf bench`: throughput of the engine's hot paths on a model of a given shape (random
//! weights) or a Hugging Face folder (`--model DIR`, so the Python peers run the very same
//! weights). Each command runs one warm-up and `--repeats` timed repeats (optionally
//! waiting for an idle machine before each), printing one JSON line per repeat and a
//! summary line with min/median/max, the achieved FLOP/s against the machine's measured
//! matmul peak for the dtype, and the peak resident memory (see [`crate::bench_sys`]).

use crate::bench_sys::{self, IdleWait, Peak};
use clap::{Args, Subcommand, ValueEnum};
use rlhf::data::{RmBatch, SftBatch};
use rlhf::device::{parse_device, DType};
use rlhf::generate::{generate, GenerateOptions};
use rlhf::model::{Architecture, Head, KvCache, Model, ModelConfig, ModelShape};
use rlhf::optim::OptimizerConfig;
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use rlhf::schedule::ScheduleConfig;
use rlhf::train::{Batch, Trainer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Generation tokens per second (prefill + decode with the KV cache, no early stop).
    Generate {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: GenerateBench,
    },
    /// Learner throughput: SFT tokens per second or RM comparisons per second, each a full
    /// optimizer step (forward, backward, clipping, AdamW).
    Train {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: TrainBench,
    },
    /// Scoring tokens per second of the reference policy (log-probs of given response
    /// tokens) and of the reward model (scalar head at each sequence's last token), as the
    /// reference and reward actors run them.
    Score {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: crate::bench_score::ScoreBench,
    },
    /// A full PPO step on the actor system (generator, reference, reward, learner), run
    /// synchronously (max_staleness 0) and asynchronously (1) in the same invocation:
    /// samples/s, per-phase seconds, and the speed-up against the ideal overlap.
    Ppo {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: PpoBench,
    },
    /// Step time of a training step and of a generation run as the batch size doubles and
    /// as the model doubles (d_model or layers): a table and a PNG chart.
    Scaling {
        #[command(flatten)]
        shape: ShapeArgs,
        #[command(flatten)]
        settings: crate::bench_scaling::ScalingBench,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    Sft,
    Rm,
}

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
}

/// Settings of `rlhf bench generate`.
#[derive(Args, Clone)]
pub struct GenerateBench {
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    #[arg(long, default_value_t = 64)]
    pub prompt_len: i64,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: i64,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// 0 keeps every token.
    #[arg(long, default_value_t = 0)]
    pub top_k: i64,
}

/// Settings of `rlhf bench train`.
#[derive(Args, Clone)]
pub struct TrainBench {
    #[arg(long, value_enum, default_value_t = Mode::Sft)]
    pub mode: Mode,
    /// Sequences (sft) or prompts (rm) per step.
    #[arg(long, default_value_t = 16)]
    pub batch: i64,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 192)]
    pub seq_len: i64,
    /// Responses per prompt (rm): C(K,2) comparisons each.
    #[arg(long, default_value_t = 4)]
    pub k: i64,
}

/// Settings of `rlhf bench ppo` besides the model shape.
#[derive(Args)]
pub struct PpoBench {
    /// Reward model folder (scalar head; it also initialises the value model). Defaults
    /// to --model, with a fresh scalar head, or to a random model of the shape flags.
    #[arg(long, value_name = "DIR")]
    pub reward_model: Option<PathBuf>,
    /// Prompts (episodes) per rollout batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub prompt_len: i64,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: i64,
    /// PPO steps per setting and repeat; the first is a warm-up and not counted.
    #[arg(long, default_value_t = 6)]
    pub steps: u64,
    #[arg(long, default_value_t = 1)]
    pub ppo_epochs: usize,
    #[arg(long, default_value_t = 1)]
    pub minibatches: usize,
    /// libtorch threads of each actor (the generator and the learner run in parallel).
    #[arg(long, default_value_t = 1)]
    pub actor_threads: i32,
    /// libtorch threads of the learner alone (default: --actor-threads).
    #[arg(long)]
    pub learner_threads: Option<i32>,
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

    fn model(&self, head: Head, max_positions: i64) -> anyhow::Result<Model> {
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
            Some(dir) => load_folder(dir, head, &self.dtype, device, max_positions),
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
        let dtype = DType::parse(&self.dtype)?;
        Ok(Model::new(
            ModelConfig::new_json(&shape),
            head,
            dtype,
            parse_device(device)?,
        )?)
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
        Ok(bench_sys::matmul_peak(
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
            peak_fraction: bench_sys::peak_fraction(flops_per_second, &peak),
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
                "peak_rss_bytes": bench_sys::peak_rss_bytes(),
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
    dtype: &str,
    device: &str,
    max_positions: i64,
) -> anyhow::Result<Model> {
    tch::manual_seed(0);
    let (mut model, _) = Model::load(dir, head, DType::parse(dtype)?, parse_device(device)?)?;
    let have = model.config().max_positions;
    anyhow::ensure!(
        have >= max_positions,
        "{}: the model holds {have} positions; this benchmark needs {max_positions}",
        dir.display()
    );
    model.set_dropout(0.0);
    Ok(model)
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ppo { shape, settings } => {
            shape.setup()?;
            crate::cli::runtime()?.block_on(crate::bench_ppo::run(&shape, &settings))
        }
        BenchCommand::Generate { shape, settings } => {
            let model = shape.model(Head::LanguageModel, settings.positions())?;
            let mut bench = Generating::new(model, &settings)?;
            let config = bench.model.config().clone();
            let settings_json = json!({"bench": "generate", "batch": settings.batch, "prompt_len": settings.prompt_len,
                "new_tokens": settings.new_tokens, "temperature": settings.temperature, "top_k": settings.top_k});
            shape.time(&config, "tokens", settings_json, bench.flops(), || {
                bench.run()
            })?;
            Ok(())
        }
        BenchCommand::Train { shape, settings } => {
            let head = match settings.mode {
                Mode::Sft => Head::LanguageModel,
                Mode::Rm => Head::Scalar,
            };
            let model = shape.model(head, settings.seq_len)?;
            let mut bench = Training::new(model, &settings)?;
            let config = bench.trainer.model().config().clone();
            let settings_json = match settings.mode {
                Mode::Sft => {
                    json!({"bench": "train-sft", "batch": settings.batch, "seq_len": settings.seq_len, "dropout": 0.0})
                }
                Mode::Rm => {
                    json!({"bench": "train-rm", "prompts": settings.batch, "k": settings.k, "seq_len": settings.seq_len, "dropout": 0.0})
                }
            };
            let unit = bench.unit();
            shape.time(&config, unit, settings_json, bench.flops(), || bench.run())?;
            Ok(())
        }
        BenchCommand::Score { shape, settings } => crate::bench_score::run(&shape, &settings),
        BenchCommand::Scaling { shape, settings } => crate::bench_scaling::run(&shape, &settings),
    }
}

impl GenerateBench {
    pub fn positions(&self) -> i64 {
        self.prompt_len + self.new_tokens
    }
}

/// One generation benchmark: random unpadded prompts, no EOS, a reused KV cache.
pub struct Generating {
    pub model: Model,
    cache: KvCache,
    prompt: Tensor,
    mask: Tensor,
    options: GenerateOptions,
    rng: Rng,
    settings: GenerateBench,
}

impl Generating {
    pub fn new(model: Model, settings: &GenerateBench) -> anyhow::Result<Generating> {
        anyhow::ensure!(
            settings.batch > 0 && settings.prompt_len > 0 && settings.new_tokens > 0,
            "--batch, --prompt-len and --new-tokens must be at least 1"
        );
        let mut rng = Rng::new(0);
        let vocab = model.config().vocab_size;
        let prompt = random_ids(&mut rng, settings.batch, settings.prompt_len, vocab);
        let mask = Tensor::ones_like(&prompt);
        let options = GenerateOptions {
            sampling: Sampling {
                temperature: settings.temperature,
                top_k: settings.top_k,
                ..Sampling::default()
            },
            max_new_tokens: settings.new_tokens,
            eos_token_id: None,
            pad_token_id: 0,
        };
        let cache = model.new_cache(settings.batch, settings.positions());
        Ok(Generating {
            model,
            cache,
            prompt,
            mask,
            options,
            rng,
            settings: settings.clone(),
        })
    }

    /// One generation run; returns the tokens sampled.
    pub fn run(&mut self) -> anyhow::Result<f64> {
        let out = generate(
            &self.model,
            &mut self.cache,
            &self.prompt,
            &self.mask,
            &self.options,
            &mut self.rng,
        )?;
        Ok(out.tokens.numel() as f64)
    }

    pub fn flops(&self) -> f64 {
        let s = &self.settings;
        bench_sys::generation_flops(
            self.model.config().num_parameters(),
            s.batch,
            s.prompt_len,
            s.new_tokens,
        )
    }
}

/// One learner benchmark: two random batches alternated, one optimizer step per run.
pub struct Training {
    pub trainer: Trainer,
    batches: Vec<Batch>,
    which: usize,
    settings: TrainBench,
}

impl Training {
    pub fn new(model: Model, settings: &TrainBench) -> anyhow::Result<Training> {
        anyhow::ensure!(
            settings.batch > 0 && settings.seq_len > 1,
            "--batch must be at least 1 and --seq-len at least 2"
        );
        anyhow::ensure!(
            matches!(settings.mode, Mode::Sft) || settings.k >= 2,
            "--k must be at least 2"
        );
        let vocab = model.config().vocab_size;
        let config = OptimizerConfig {
            lr: 1e-5,
            ..OptimizerConfig::default()
        };
        let trainer = Trainer::new(model, &config, &ScheduleConfig::default(), 1000, 1000);
        let mut rng = Rng::new(0);
        let s = settings;
        let batches = (0..2)
            .map(|_| random_batch(s.mode, &mut rng, s.batch, s.seq_len, s.k, vocab))
            .collect();
        Ok(Training {
            trainer,
            batches,
            which: 0,
            settings: settings.clone(),
        })
    }

    pub fn unit(&self) -> &'static str {
        match self.settings.mode {
            Mode::Sft => "tokens",
            Mode::Rm => "comparisons",
        }
    }

    /// One optimizer step; returns the loss tokens (SFT) or comparisons (RM).
    pub fn run(&mut self) -> anyhow::Result<f64> {
        self.which = 1 - self.which;
        let stats = self
            .trainer
            .train_step(std::slice::from_ref(&self.batches[self.which]))?;
        Ok(stats
            .comparisons
            .map(|c| c as f64)
            .unwrap_or(stats.tokens as f64))
    }

    pub fn flops(&self) -> f64 {
        let s = &self.settings;
        let rows = match s.mode {
            Mode::Sft => s.batch,
            Mode::Rm => s.batch * s.k,
        };
        bench_sys::training_flops(
            self.trainer.model().config().num_parameters(),
            rows * s.seq_len,
        )
    }
}

/// Random token ids in `0..vocab - 1` (the last id, EOS in random models, never occurs).
pub fn random_ids(rng: &mut Rng, rows: i64, cols: i64, vocab: i64) -> Tensor {
    let ids: Vec<i64> = (0..rows * cols)
        .map(|_| rng.below(vocab as usize - 1) as i64)
        .collect();
    Tensor::from_slice(&ids).view([rows, cols])
}

/// Unpadded random sequences: every SFT position is a loss target; RM groups of K rows.
fn random_batch(mode: Mode, rng: &mut Rng, batch: i64, seq_len: i64, k: i64, vocab: i64) -> Batch {
    match mode {
        Mode::Sft => {
            let input_ids = random_ids(rng, batch, seq_len, vocab);
            let targets = input_ids.roll([-1], [1]);
            let loss_mask = Tensor::ones([batch, seq_len], (Kind::Float, tch::Device::Cpu));
            let _ = loss_mask.narrow(1, seq_len - 1, 1).fill_(0.0);
            let tokens = batch * (seq_len - 1);
            let valid = Tensor::ones_like(&input_ids);
            Batch::Sft(SftBatch {
                input_ids,
                valid,
                targets,
                loss_mask,
                tokens,
            })
        }
        Mode::Rm => {
            let input_ids = random_ids(rng, batch * k, seq_len, vocab);
            let groups: Vec<Vec<usize>> = (0..batch as usize)
                .map(|p| (p * k as usize..(p + 1) * k as usize).collect())
                .collect();
            let comparisons = (batch * k * (k - 1) / 2) as usize;
            let valid = Tensor::ones_like(&input_ids);
            Batch::Rm(RmBatch {
                input_ids,
                valid,
                groups,
                comparisons,
            })
        }
    }
}
