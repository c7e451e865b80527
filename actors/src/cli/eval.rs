//! `rlhf eval`: compare models on the user's prompts, judged by a reward model the user
//! brings (see [`crate::report::evaluate`] for the comparison).

use super::generate::{chat_config, SamplingArgs};
use crate::completions::sample_responses;
use crate::report::evaluate::{compare, perplexity, reward_scores, write_outputs, Answers};
use crate::report::markdown::Report;
use anyhow::{bail, Context};
use clap::Args;
use rlhf::data::{read_pretrain, read_prompts};
use rlhf::device::{parse_device, DType};
use rlhf::generation_config::SamplingDefaults;
use rlhf::model::{Head, Model};
use rlhf::text_side::TextSide;
use std::path::PathBuf;
use tracing::info;

#[derive(Args)]
pub struct EvalArgs {
    /// Prompts as JSONL `{"prompt", "category"?}` (the PPO prompt format).
    #[arg(long)]
    pub prompts: PathBuf,
    /// A model to evaluate as NAME=DIR (Hugging Face layout); repeat the flag. The first is
    /// the baseline unless --baseline names another.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// The model the others are compared with.
    #[arg(long)]
    pub baseline: Option<String>,
    /// The judge: a reward model folder (scalar head) that scores every answer.
    #[arg(long)]
    pub reward_model: PathBuf,
    /// Plain text (JSONL `{"text"}` or blank-line-separated documents) for each model's
    /// perplexity, the alignment tax.
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// The chat template each model (and the judge) reads the prompts in: `model` (each
    /// folder's own chat_template), `builtin`, `none` (prompts as given), or a Jinja file.
    #[arg(long, default_value = "model", value_name = "model|builtin|none|FILE")]
    pub chat_template: String,
    /// Where report.md, eval.json and responses.jsonl go.
    #[arg(long, default_value = "runs/eval")]
    pub out: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Score differences up to this count as ties.
    #[arg(long, default_value_t = 0.0)]
    pub tie_margin: f64,
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let named = args
        .models
        .iter()
        .map(|m| match m.split_once('=') {
            Some((name, dir)) if !name.is_empty() && !dir.is_empty() => {
                Ok((name.to_string(), PathBuf::from(dir)))
            }
            _ => bail!("--model {m}: expected NAME=DIR"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let baseline = match &args.baseline {
        Some(b) => named
            .iter()
            .position(|(n, _)| n == b)
            .with_context(|| format!("--baseline {b}: no --model of that name"))?,
        None => 0,
    };
    // Every model samples alike (our defaults, not each folder's generation config), so
    // their answers compare.
    let sampling = args.sampling.sampling()?;
    let max_new_tokens = args.sampling.max_new_tokens(&SamplingDefaults::default());
    let seed = args.sampling.seed;
    let chat = chat_config(&args.chat_template);
    // Prompts as the file gives them; each model renders them in its own template.
    let prompts = read_prompts(
        &args.prompts,
        &rlhf::template::ChatTemplate::None,
        &Default::default(),
    )?;
    if prompts.is_empty() {
        bail!("{}: no prompts", args.prompts.display());
    }
    let texts: Vec<String> = prompts.iter().map(|p| p.raw.clone()).collect();
    let rendered = |side: &TextSide| -> anyhow::Result<Vec<String>> {
        Ok(texts
            .iter()
            .map(|t| side.template.prompt(t))
            .collect::<Result<Vec<String>, _>>()?)
    };
    let categories: Vec<String> = prompts
        .iter()
        .map(|p| p.category.clone().unwrap_or_else(|| "all".into()))
        .collect();
    let documents = args
        .text
        .as_deref()
        .map(|path| read_pretrain(path, &Default::default()))
        .transpose()?;
    let cpu = parse_device("cpu")?;
    let (judge_model, _) = Model::load(&args.reward_model, Head::Scalar, DType::F32, cpu)?;
    let judge = TextSide::load(&args.reward_model, &chat)?;
    let judge_prompts = rendered(&judge)?;
    let mut answers = Vec::new();
    for (name, dir) in &named {
        let (model, _) = Model::load(dir, Head::LanguageModel, DType::F32, cpu)?;
        let text = TextSide::load(dir, &chat)?;
        let responses = sample_responses(
            &model,
            &text,
            &rendered(&text)?,
            max_new_tokens,
            &sampling,
            seed,
        )?;
        let pairs: Vec<(String, String)> = judge_prompts
            .iter()
            .cloned()
            .zip(responses.iter().cloned())
            .collect();
        let scores = reward_scores(&judge_model, &judge.tokenizer, &judge.template, &pairs)?;
        let perplexity = documents
            .as_deref()
            .map(|d| perplexity(&model, &text.tokenizer, d))
            .transpose()?;
        info!(model = %name, "evaluated");
        answers.push(Answers {
            name: name.clone(),
            responses,
            scores,
            perplexity,
        });
    }
    let mut order: Vec<String> = categories.clone();
    order.sort();
    order.dedup();
    let (rows, category_rows) = compare(
        &answers,
        &categories,
        &order,
        baseline,
        args.tie_margin,
        args.resamples,
        seed,
    );
    let report = Report {
        title: format!("Evaluation of {} models", answers.len()),
        intro: vec![format!(
            "{} prompts from {}, one sampled answer per model (temperature {}, top_k {}, \
             top_p {}), scored by the reward model {} and compared with {}'s answer. Win rates \
             count ties (score difference <= {}) half; brackets are paired-bootstrap 95% \
             intervals over prompts ({} resamples). The score column is the mean reward.",
            texts.len(),
            args.prompts.display(),
            sampling.temperature,
            sampling.top_k,
            sampling.top_p,
            args.reward_model.display(),
            named[baseline].0,
            args.tie_margin,
            args.resamples
        )],
        models: rows,
        categories: category_rows,
        labels: (named[baseline].0.clone(), "reward".into()),
        ..Report::default()
    };
    write_outputs(&args.out, &report, &texts, &categories, &answers)?;
    println!("{}", report.terminal_table());
    Ok(())
}
