//! `rlhf generate`: complete prompts with a saved model and its tokenizer.

use crate::completions::complete;
use clap::Args;
use rlhf::device::{parse_device, DType};
use rlhf::model::{Head, Model};
use rlhf::sampling::Sampling;
use rlhf::template::ChatTemplate;
use rlhf::tokenizer::Tokenizer;
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder in Hugging Face layout (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// A prompt to complete; repeat the flag for a batch.
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Wrap each prompt in the chat template (for instruction-tuned models).
    #[arg(long)]
    pub chat: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

/// How completions are sampled (shared by `rlhf generate` and `rlhf eval`).
#[derive(Args)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: i64,
    /// Take the most likely token at each step (ignores temperature, top-k, top-p).
    #[arg(long)]
    pub greedy: bool,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: i64,
    /// Nucleus sampling mass (1.0: all).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The sampling settings, checked.
    pub fn sampling(&self) -> anyhow::Result<Sampling> {
        let sampling = Sampling {
            greedy: self.greedy,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        };
        sampling
            .validate()
            .map_err(|e| anyhow::anyhow!("sampling flags: {e}"))?;
        Ok(sampling)
    }
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let sampling = args.sampling.sampling()?;
    let device = parse_device(&args.device)?;
    let dtype = DType::parse(&args.dtype)?;
    let tokenizer = Tokenizer::from_dir(&args.model)?;
    let (model, report) = Model::load(&args.model, Head::LanguageModel, dtype, device)?;
    if !report.ignored.is_empty() {
        tracing::warn!(tensors = ?report.ignored, "unused tensors in the checkpoint");
    }
    let template = ChatTemplate::default();
    let texts: Vec<String> = args
        .prompt
        .iter()
        .map(|p| {
            if args.chat {
                template.prompt(p)
            } else {
                p.clone()
            }
        })
        .collect();
    let completions = complete(
        &model,
        &tokenizer,
        &texts,
        args.sampling.max_new_tokens,
        sampling,
        args.sampling.seed,
    )?;
    for (prompt, completion) in args.prompt.iter().zip(completions) {
        println!("{prompt}{completion}\n");
    }
    Ok(())
}
