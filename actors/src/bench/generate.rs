//! `rlhf bench generate`: generation tokens per second.

use super::shape::{random_ids, ShapeArgs};
use super::sys;
use clap::Args;
use rlhf::config::{ChatConfig, DataKeys};
use rlhf::data::read_prompts;
use rlhf::generate::{cache_shape, generate, prompt_streams, GenerateOptions};
use rlhf::model::{Head, KvCache, Model};
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use rlhf::text_side::TextSide;
use serde_json::json;
use std::path::{Path, PathBuf};

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
    /// Real prompts with real lengths: the first --episodes prompts of this JSONL file
    /// (the PPO prompt forms, cycled when fewer), rendered with --model's chat template;
    /// each response stops at the model's EOS ids, and only generated tokens count. Needs
    /// --model; --prompt-len is then the longest prompt, and --batch the engine's rows.
    #[arg(long, value_name = "FILE", requires = "model")]
    pub prompts: Option<PathBuf>,
    /// With --prompts: how many prompts one run generates, --batch rows at a time (a
    /// finished row refilled with the next prompt). Default: --batch.
    #[arg(long, requires = "prompts")]
    pub episodes: Option<i64>,
    /// With --prompts: static batching (fill the rows, run until the longest response
    /// ends, fill them again) instead of `rlhf`'s continuous batching; the same tokens.
    #[arg(long, requires = "prompts")]
    pub static_batch: bool,
}

/// `rlhf bench generate`.
pub fn run(shape: &ShapeArgs, settings: &GenerateBench) -> anyhow::Result<()> {
    let model = shape.model(Head::LanguageModel, settings.positions())?;
    let mut bench = match (&settings.prompts, &shape.model) {
        (Some(file), Some(dir)) => Generating::with_prompts(model, settings, dir, file)?,
        _ => Generating::new(model, settings)?,
    };
    let config = bench.model.config().clone();
    let s = bench.settings.clone();
    let mut settings_json = json!({"bench": "generate", "batch": s.batch, "prompt_len": s.prompt_len,
        "new_tokens": s.new_tokens, "temperature": s.temperature, "top_k": s.top_k});
    if let (Some(file), Some(tokens)) = (&s.prompts, bench.generated) {
        settings_json["prompts"] = json!(file.display().to_string());
        settings_json["stops_at_eos"] = json!(true);
        settings_json["static_batch"] = json!(s.static_batch);
        settings_json["episodes"] = json!(s.episodes());
        settings_json["mean_response_tokens"] = json!(tokens as f64 / s.episodes() as f64);
    }
    shape.time(&config, "tokens", settings_json, bench.flops(), || {
        bench.run()
    })?;
    Ok(())
}

impl GenerateBench {
    pub fn positions(&self) -> i64 {
        self.prompt_len + self.new_tokens
    }

    /// The prompts one run generates.
    pub fn episodes(&self) -> i64 {
        self.episodes.unwrap_or(self.batch)
    }

    /// The generation these flags ask for, stopping at `eos` (none: never).
    fn options(&self, eos: Vec<i64>, pad: i64) -> GenerateOptions {
        GenerateOptions {
            sampling: Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                ..Sampling::default()
            },
            max_new_tokens: self.new_tokens,
            eos_token_ids: eos,
            pad_token_id: pad,
            static_batch: self.static_batch,
        }
    }
}

/// One generation benchmark: random unpadded prompts and no EOS, or real prompts that stop
/// at EOS ([`Generating::with_prompts`]); a reused KV cache.
pub struct Generating {
    pub model: Model,
    cache: KvCache,
    prompts: Vec<Vec<i64>>,
    options: GenerateOptions,
    /// One sampling stream per row, advancing run after run (random prompts).
    streams: Vec<Rng>,
    pub settings: GenerateBench,
    /// Real prompts: the tokens one run generates, which the FLOPs count.
    pub generated: Option<i64>,
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
        let options = settings.options(Vec::new(), 0);
        let cache = model.new_cache(settings.batch, settings.positions());
        Ok(Generating {
            model,
            cache,
            prompts: Vec::<Vec<i64>>::try_from(prompt)?,
            options,
            streams: prompt_streams(0, 0, settings.batch as usize),
            settings: settings.clone(),
            generated: None,
        })
    }

    /// Real prompts from `file` rendered with the template of the model folder `dir`,
    /// stopping at its EOS ids. Every run samples the same responses (each prompt's stream
    /// starts afresh), so every repeat does the same work; the FLOPs count the tokens a
    /// first run generates.
    pub fn with_prompts(
        model: Model,
        settings: &GenerateBench,
        dir: &Path,
        file: &Path,
    ) -> anyhow::Result<Generating> {
        anyhow::ensure!(
            settings.batch > 0 && settings.new_tokens > 0 && settings.episodes() > 0,
            "--batch, --episodes and --new-tokens must be at least 1"
        );
        let text = TextSide::load(dir, &ChatConfig::default())?;
        let prompts = read_prompts(file, &text.template, &DataKeys::default())?;
        let encoded = prompts
            .iter()
            .cycle()
            .take(settings.episodes() as usize)
            .map(|p| text.encode_prompt(&p.text))
            .collect::<Result<Vec<_>, _>>()?;
        let settings = GenerateBench {
            prompt_len: encoded.iter().map(Vec::len).max().unwrap_or(0) as i64,
            ..settings.clone()
        };
        let options = settings.options(text.eos_token_ids().to_vec(), text.tokenizer.pad_id());
        let (rows, columns) = cache_shape(&encoded, settings.new_tokens, settings.batch as usize);
        let cache = model.new_cache(rows, columns);
        let mut bench = Generating {
            model,
            cache,
            prompts: encoded,
            options,
            streams: Vec::new(),
            settings,
            generated: None,
        };
        bench.generated = Some(bench.run()? as i64);
        Ok(bench)
    }

    /// One generation run; returns the tokens sampled (with EOS: up to and including it).
    pub fn run(&mut self) -> anyhow::Result<f64> {
        if self.settings.prompts.is_some() {
            // Real prompts: the same episodes every run.
            self.streams = prompt_streams(0, 0, self.prompts.len());
        }
        let out = generate(
            &self.model,
            &mut self.cache,
            &self.prompts,
            &self.options,
            &mut self.streams,
        )?;
        Ok(out
            .mask
            .to_kind(tch::Kind::Int64)
            .sum(tch::Kind::Int64)
            .int64_value(&[]) as f64)
    }

    /// The FLOPs of one run: every prompt token and every generated token but each row's
    /// last (which is never fed back); with EOS, of the tokens a run actually generates.
    pub fn flops(&self) -> f64 {
        let s = &self.settings;
        let params = self.model.config().num_parameters();
        match self.generated {
            Some(tokens) => {
                let prompt_tokens: usize = self.prompts.iter().map(|p| p.len() - 1).sum();
                sys::forward_flops(params, prompt_tokens as i64 + tokens)
            }
            None => sys::generation_flops(params, s.batch, s.prompt_len, s.new_tokens),
        }
    }
}
