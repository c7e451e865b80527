//! `rlhf bench train`: learner throughput, SFT tokens or RM comparisons per second.

use super::shape::{random_ids, ShapeArgs};
use super::sys;
use clap::{Args, ValueEnum};
use rlhf::data::{RmBatch, SftBatch};
use rlhf::model::{Head, Model};
use rlhf::optim::OptimizerConfig;
use rlhf::rng::Rng;
use rlhf::schedule::ScheduleConfig;
use rlhf::train::{Batch, Trainer};
use serde_json::json;
use tch::{Kind, Tensor};

#[derive(Clone, Copy, ValueEnum)]
pub enum Mode {
    Sft,
    Rm,
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
    /// Recompute each block in the backward pass instead of keeping its activations.
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

/// `rlhf bench train`.
pub fn run(shape: &ShapeArgs, settings: &TrainBench) -> anyhow::Result<()> {
    let head = match settings.mode {
        Mode::Sft => Head::LanguageModel,
        Mode::Rm => Head::Scalar,
    };
    let mut model = shape.model(head, settings.seq_len)?;
    model.set_gradient_checkpointing(settings.gradient_checkpointing);
    let mut bench = Training::new(model, settings)?;
    let config = bench.trainer.model().config().clone();
    let mut settings_json = match settings.mode {
        Mode::Sft => {
            json!({"bench": "train-sft", "batch": settings.batch, "seq_len": settings.seq_len, "dropout": 0.0})
        }
        Mode::Rm => {
            json!({"bench": "train-rm", "prompts": settings.batch, "k": settings.k, "seq_len": settings.seq_len, "dropout": 0.0})
        }
    };
    settings_json["gradient_checkpointing"] = json!(settings.gradient_checkpointing);
    let unit = bench.unit();
    shape.time(&config, unit, settings_json, bench.flops(), || bench.run())?;
    Ok(())
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
        sys::training_flops(
            self.trainer.model().config().num_parameters(),
            rows * s.seq_len,
        )
    }
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
