//! `rlhf bench`: throughput measurements on randomly initialised models of a given shape.

use clap::{Args, Subcommand, ValueEnum};
use rlhf::device::{parse_device, DType};
use rlhf::generate::{generate, GenerateOptions};
use rlhf::model::{Architecture, Head, Model, ModelConfig, ModelShape};
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use serde_json::json;
use std::time::Instant;
use tch::Tensor;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Generation tokens per second (prefill + decode with the KV cache, no early stop).
    Generate(GenerateBench),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Arch {
    Gpt2,
    Llama,
}

#[derive(Args)]
pub struct GenerateBench {
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
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    #[arg(long, default_value_t = 64)]
    pub prompt_len: i64,
    #[arg(long, default_value_t = 128)]
    pub new_tokens: i64,
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
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 0)]
    pub top_k: i64,
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Generate(args) => bench_generate(&args),
    }
}

fn bench_generate(args: &GenerateBench) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    tch::set_num_threads(args.threads);
    let shape = ModelShape {
        arch: match args.arch {
            Arch::Gpt2 => Architecture::Gpt2,
            Arch::Llama => Architecture::Llama,
        },
        vocab_size: args.vocab,
        hidden_size: args.d_model,
        num_layers: args.layers,
        num_heads: args.heads,
        num_kv_heads: args.kv_heads.unwrap_or(args.heads),
        max_positions: args.prompt_len + args.new_tokens,
        eos_token_id: args.vocab - 1,
    };
    tch::manual_seed(0);
    let model = Model::new(
        ModelConfig::new_json(&shape),
        Head::LanguageModel,
        DType::parse(&args.dtype)?,
        parse_device(&args.device)?,
    )?;
    let mut rng = Rng::new(0);
    let ids: Vec<i64> = (0..args.batch * args.prompt_len)
        .map(|_| rng.below(args.vocab as usize) as i64)
        .collect();
    let prompt = Tensor::from_slice(&ids).view([args.batch, args.prompt_len]);
    let mask = Tensor::ones_like(&prompt);
    let options = GenerateOptions {
        sampling: Sampling {
            temperature: args.temperature,
            top_k: args.top_k,
            ..Sampling::default()
        },
        max_new_tokens: args.new_tokens,
        eos_token_id: None,
        pad_token_id: 0,
    };
    let mut cache = model.new_cache(args.batch, args.prompt_len + args.new_tokens);
    let mut rates = Vec::with_capacity(args.repeats);
    for repeat in 0..=args.repeats {
        let start = Instant::now();
        let out = generate(&model, &mut cache, &prompt, &mask, &options, &mut rng)?;
        let seconds = start.elapsed().as_secs_f64();
        let tokens = out.tokens.numel() as f64;
        if repeat > 0 {
            rates.push(tokens / seconds);
            println!(
                "{}",
                json!({"repeat": repeat, "seconds": seconds, "tokens": tokens, "tokens_per_second": tokens / seconds})
            );
        }
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "bench": "generate",
            "arch": format!("{:?}", shape.arch).to_lowercase(),
            "params": model.config().num_parameters(),
            "batch": args.batch, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
            "dtype": args.dtype, "threads": args.threads,
            "tokens_per_second_min": rates[0],
            "tokens_per_second_median": rates[rates.len() / 2],
            "tokens_per_second_max": rates[rates.len() - 1],
        })
    );
    Ok(())
}
