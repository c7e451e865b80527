//! `rlhf bench generate`: generation tokens per second.

use super::shape::{random_ids, ShapeArgs};
use super::sys;
use clap::Args;
use rlhf::generate::{generate, prompt_streams, GenerateOptions};
use rlhf::model::{Head, KvCache, Model};
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use serde_json::json;
use tch::Tensor;

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

/// `rlhf bench generate`.
pub fn run(shape: &ShapeArgs, settings: &GenerateBench) -> anyhow::Result<()> {
    let model = shape.model(Head::LanguageModel, settings.positions())?;
    let mut bench = Generating::new(model, settings)?;
    let config = bench.model.config().clone();
    let settings_json = json!({"bench": "generate", "batch": settings.batch, "prompt_len": settings.prompt_len,
        "new_tokens": settings.new_tokens, "temperature": settings.temperature, "top_k": settings.top_k});
    shape.time(&config, "tokens", settings_json, bench.flops(), || {
        bench.run()
    })?;
    Ok(())
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
    /// One sampling stream per row, advancing run after run.
    streams: Vec<Rng>,
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
            eos_token_ids: Vec::new(),
            pad_token_id: 0,
        };
        let cache = model.new_cache(settings.batch, settings.positions());
        Ok(Generating {
            model,
            cache,
            prompt,
            mask,
            options,
            streams: prompt_streams(0, 0, settings.batch as usize),
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
            &mut self.streams,
        )?;
        Ok(out.tokens.numel() as f64)
    }

    pub fn flops(&self) -> f64 {
        let s = &self.settings;
        sys::generation_flops(
            self.model.config().num_parameters(),
            s.batch,
            s.prompt_len,
            s.new_tokens,
        )
    }
}
