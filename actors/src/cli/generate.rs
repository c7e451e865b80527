//! `rlhf generate`: complete prompts with a saved model and its tokenizer.

use crate::completions::complete;
use clap::Args;
use rlhf::config::{ChatConfig, TemplateKind};
use rlhf::device::{parse_device, DType};
use rlhf::generation_config::SamplingDefaults;
use rlhf::model::{Head, Model};
use rlhf::sampling::Sampling;
use rlhf::text_side::TextSide;
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder in Hugging Face layout (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// A prompt to complete; repeat the flag for a batch.
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Wrap each prompt in a chat template (for instruction-tuned models); without it,
    /// prompts are used as given (after the BOS the tokenizer adds to any text).
    #[arg(long)]
    pub chat: bool,
    /// With --chat: `model` (the folder's own chat_template), `builtin`, or a Jinja file.
    #[arg(long, default_value = "model", value_name = "model|builtin|FILE")]
    pub chat_template: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

/// The chat template a `--chat-template` value names: `model`, `builtin`, `none`, or a
/// Jinja file.
pub fn chat_config(value: &str) -> ChatConfig {
    let kind = |template| ChatConfig {
        template,
        file: None,
    };
    match value {
        "model" => kind(TemplateKind::Model),
        "builtin" => kind(TemplateKind::Builtin),
        "none" => kind(TemplateKind::None),
        file => ChatConfig {
            template: TemplateKind::File,
            file: Some(PathBuf::from(file)),
        },
    }
}

/// Our defaults for flags that neither the command line nor the model's
/// `generation_config.json` set.
const DEFAULT_MAX_NEW_TOKENS: i64 = 64;
const DEFAULT_TEMPERATURE: f64 = 1.0;

/// How completions are sampled (shared by `rlhf generate` and `rlhf eval`). A flag left
/// out takes the model's `generation_config.json` value (`rlhf generate` only), else the
/// default shown.
#[derive(Args)]
pub struct SamplingArgs {
    /// [default: 64]
    #[arg(long)]
    pub max_new_tokens: Option<i64>,
    /// Take the most likely token at each step (ignores temperature, top-k, top-p).
    #[arg(long)]
    pub greedy: bool,
    /// [default: 1.0]
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Keep the k most likely tokens (0: all). [default: 0]
    #[arg(long)]
    pub top_k: Option<i64>,
    /// Nucleus sampling mass (1.0: all). [default: 1.0]
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The sampling settings from the flags and our defaults, checked.
    pub fn sampling(&self) -> anyhow::Result<Sampling> {
        self.sampling_with(&SamplingDefaults::default())
    }

    /// The number of new tokens from the flag, else `defaults`, else 64.
    pub fn max_new_tokens(&self, defaults: &SamplingDefaults) -> i64 {
        self.max_new_tokens
            .or(defaults.max_new_tokens)
            .unwrap_or(DEFAULT_MAX_NEW_TOKENS)
    }

    /// The sampling settings: each flag given, else the model's `defaults` (its
    /// generation_config.json), else ours; checked. A sampling flag given overrides a
    /// greedy default (`do_sample: false`).
    pub fn sampling_with(&self, defaults: &SamplingDefaults) -> anyhow::Result<Sampling> {
        let asked_to_sample =
            self.temperature.is_some() || self.top_k.is_some() || self.top_p.is_some();
        let sampling = Sampling {
            greedy: self.greedy || (defaults.greedy == Some(true) && !asked_to_sample),
            temperature: self
                .temperature
                .or(defaults.temperature)
                .unwrap_or(DEFAULT_TEMPERATURE),
            top_k: self.top_k.or(defaults.top_k).unwrap_or(0),
            top_p: self.top_p.or(defaults.top_p).unwrap_or(1.0),
        };
        sampling
            .validate()
            .map_err(|e| anyhow::anyhow!("sampling flags: {e}"))?;
        Ok(sampling)
    }
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let dtype = DType::parse(&args.dtype)?;
    let chat = match args.chat {
        true => chat_config(&args.chat_template),
        false => chat_config("none"),
    };
    let text = TextSide::load(&args.model, &chat)?;
    let defaults = text.generation.sampling_defaults();
    let sampling = args.sampling.sampling_with(&defaults)?;
    let (model, report) = Model::load(&args.model, Head::LanguageModel, dtype, device)?;
    if !report.ignored.is_empty() {
        tracing::warn!(tensors = ?report.ignored, "unused tensors in the checkpoint");
    }
    let texts = args
        .prompt
        .iter()
        .map(|p| text.template.prompt(p))
        .collect::<Result<Vec<String>, _>>()?;
    let completions = complete(
        &model,
        &text,
        &texts,
        args.sampling.max_new_tokens(&defaults),
        sampling,
        args.sampling.seed,
    )?;
    for (prompt, completion) in args.prompt.iter().zip(completions) {
        println!("{prompt}{completion}\n");
    }
    Ok(())
}
