//! `rlhf bench`: throughput on randomly initialised models of a given shape. Each command
//! runs one warm-up and `--repeats` timed repeats, printing one JSON line per repeat and a
//! summary line with min/median/max.

use clap::{Args, Subcommand, ValueEnum};
use rlhf::data::{RmBatch, SftBatch};
use rlhf::device::{parse_device, DType};
use rlhf::generate::{generate, GenerateOptions};
use rlhf::model::{Architecture, Head, Model, ModelConfig, ModelShape};
use rlhf::optim::OptimizerConfig;
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use rlhf::schedule::ScheduleConfig;
use rlhf::train::{Batch, Trainer};
use serde_json::{json, Value};
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Generation tokens per second (prefill + decode with the KV cache, no early stop).
    Generate {
        #[command(flatten)]
        shape: ShapeArgs,
        #[arg(long, default_value_t = 1)]
        batch: i64,
        #[arg(long, default_value_t = 64)]
        prompt_len: i64,
        #[arg(long, default_value_t = 128)]
        new_tokens: i64,
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// 0 keeps every token.
        #[arg(long, default_value_t = 0)]
        top_k: i64,
    },
    /// Learner throughput: SFT tokens per second or RM comparisons per second, each a full
    /// optimizer step (forward, backward, clipping, AdamW).
    Train {
        #[command(flatten)]
        shape: ShapeArgs,
        #[arg(long, value_enum, default_value_t = Mode::Sft)]
        mode: Mode,
        /// Sequences (sft) or prompts (rm) per step.
        #[arg(long, default_value_t = 16)]
        batch: i64,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 192)]
        seq_len: i64,
        /// Responses per prompt (rm): C(K,2) comparisons each.
        #[arg(long, default_value_t = 4)]
        k: i64,
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

/// Model shape, precision, placement and timing settings shared by the benchmarks.
#[derive(Args, Clone)]
pub struct ShapeArgs {
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
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 2)]
    pub threads: i32,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Settings of `rlhf bench ppo` besides the model shape.
#[derive(Args)]
pub struct PpoBench {
    /// Prompts (episodes) per rollout batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 64)]
    pub prompt_len: i64,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: i64,
    /// PPO steps per setting; the first is a warm-up and not counted.
    #[arg(long, default_value_t = 6)]
    pub steps: u64,
    #[arg(long, default_value_t = 1)]
    pub ppo_epochs: usize,
    #[arg(long, default_value_t = 1)]
    pub minibatches: usize,
    /// libtorch threads of each actor (the generator and the learner run in parallel).
    #[arg(long, default_value_t = 1)]
    pub actor_threads: i32,
}

impl ShapeArgs {
    fn model(&self, head: Head, max_positions: i64) -> anyhow::Result<Model> {
        anyhow::ensure!(self.repeats > 0, "--repeats must be at least 1");
        tch::set_num_threads(self.threads);
        self.random_model(head, max_positions, &self.device)
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

    /// Runs `work` once to warm up and `repeats` times timed; `work` returns the units done.
    fn time(
        &self,
        model: &ModelConfig,
        unit: &str,
        settings: Value,
        mut work: impl FnMut() -> anyhow::Result<f64>,
    ) -> anyhow::Result<()> {
        work()?;
        let mut rates = Vec::with_capacity(self.repeats);
        for repeat in 1..=self.repeats {
            let start = Instant::now();
            let units = work()?;
            let seconds = start.elapsed().as_secs_f64();
            rates.push(units / seconds);
            println!(
                "{}",
                json!({"repeat": repeat, "seconds": seconds, unit: units, "per_second": units / seconds})
            );
        }
        rates.sort_by(f64::total_cmp);
        let mut summary = json!({
            "params": model.num_parameters(),
            "arch": format!("{:?}", model.arch).to_lowercase(),
            "layers": self.layers, "d_model": self.d_model, "vocab": self.vocab,
            "dtype": self.dtype, "threads": self.threads, "unit": unit,
            "per_second_min": rates[0],
            "per_second_median": rates[rates.len() / 2],
            "per_second_max": rates[rates.len() - 1],
        });
        for (k, v) in settings.as_object().expect("settings object") {
            summary[k] = v.clone();
        }
        println!("{summary}");
        Ok(())
    }
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ppo { shape, settings } => {
            crate::cli::runtime()?.block_on(crate::bench_ppo::run(&shape, &settings))
        }
        BenchCommand::Generate {
            shape,
            batch,
            prompt_len,
            new_tokens,
            temperature,
            top_k,
        } => {
            let model = shape.model(Head::LanguageModel, prompt_len + new_tokens)?;
            let mut rng = Rng::new(0);
            let prompt = random_ids(&mut rng, batch, prompt_len, shape.vocab);
            let mask = Tensor::ones_like(&prompt);
            let options = GenerateOptions {
                sampling: Sampling {
                    temperature,
                    top_k,
                    ..Sampling::default()
                },
                max_new_tokens: new_tokens,
                eos_token_id: None,
                pad_token_id: 0,
            };
            let mut cache = model.new_cache(batch, prompt_len + new_tokens);
            let settings = json!({"bench": "generate", "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens});
            shape.time(model.config(), "tokens", settings, || {
                let out = generate(&model, &mut cache, &prompt, &mask, &options, &mut rng)?;
                Ok(out.tokens.numel() as f64)
            })
        }
        BenchCommand::Train {
            shape,
            mode,
            batch,
            seq_len,
            k,
        } => {
            let head = match mode {
                Mode::Sft => Head::LanguageModel,
                Mode::Rm => Head::Scalar,
            };
            let model = shape.model(head, seq_len)?;
            let config = OptimizerConfig {
                lr: 1e-5,
                ..OptimizerConfig::default()
            };
            let mut trainer = Trainer::new(model, &config, &ScheduleConfig::default(), 1000, 1000);
            let mut rng = Rng::new(0);
            let (unit, settings) = match mode {
                Mode::Sft => (
                    "tokens",
                    json!({"bench": "train-sft", "batch": batch, "seq_len": seq_len}),
                ),
                Mode::Rm => (
                    "comparisons",
                    json!({"bench": "train-rm", "prompts": batch, "k": k, "seq_len": seq_len}),
                ),
            };
            let batches: Vec<Batch> = (0..2)
                .map(|_| random_batch(mode, &mut rng, batch, seq_len, k, shape.vocab))
                .collect();
            let mut which = 0;
            let model_config = trainer.model().config().clone();
            shape.time(&model_config, unit, settings, || {
                which = 1 - which;
                let stats = trainer.train_step(std::slice::from_ref(&batches[which]))?;
                Ok(stats
                    .comparisons
                    .map(|c| c as f64)
                    .unwrap_or(stats.tokens as f64))
            })
        }
    }
}

fn random_ids(rng: &mut Rng, rows: i64, cols: i64, vocab: i64) -> Tensor {
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
