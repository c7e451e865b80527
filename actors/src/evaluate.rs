//! `rlhf eval` and the comparison it shares with the pipeline: each model answers the same
//! prompts, a judge scores every answer, and each model's per-prompt score is compared with
//! the baseline's on that prompt (win, tie, loss) to give win rates with paired-bootstrap
//! intervals, overall and per category. The pipeline's judge is the gold labeler; here it
//! is a reward model the user brings.

use crate::cli::generate::SamplingArgs;
use crate::pipeline::data::write_jsonl;
use crate::pipeline::label::sample_responses;
use crate::report::{CategoryRow, ModelRow, Report};
use crate::stages::pretrain::text_sequences;
use anyhow::{bail, Context};
use clap::Args;
use rlhf::data::{collate_sft, read_pretrain, read_prompts};
use rlhf::device::{parse_device, DType};
use rlhf::eval::{bootstrap_mean, by_group, judge, win_rate};
use rlhf::generate::left_pad;
use rlhf::model::{Head, Model};
use rlhf::template::ChatTemplate;
use rlhf::tokenizer::Tokenizer;
use rlhf::train::{evaluate, last_token_scores, Batch};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tracing::info;

/// Sequences per forward pass when scoring or measuring perplexity.
const BATCH: usize = 32;

/// One model's answers to the evaluation prompts and their judged scores.
pub struct Answers {
    pub name: String,
    pub responses: Vec<String>,
    pub scores: Vec<f64>,
    pub perplexity: Option<f64>,
}

/// Win rates against `models[baseline]` (ties within `tie_margin` count half) and mean
/// scores, overall and per category (in the order of `category_order`).
pub fn compare(
    models: &[Answers],
    categories: &[String],
    category_order: &[String],
    baseline: usize,
    tie_margin: f64,
    resamples: usize,
    seed: u64,
) -> (Vec<ModelRow>, Vec<CategoryRow>) {
    let base = &models[baseline].scores;
    let judgments: Vec<Vec<f64>> = models
        .iter()
        .map(|m| {
            m.scores
                .iter()
                .zip(base)
                .map(|(&a, &b)| judge(a, b, tie_margin))
                .collect()
        })
        .collect();
    let rows = models
        .iter()
        .enumerate()
        .map(|(i, m)| ModelRow {
            name: m.name.clone(),
            win: (i != baseline).then(|| win_rate(&judgments[i], resamples, seed)),
            gold: bootstrap_mean(&m.scores, resamples, seed),
            perplexity: m.perplexity,
            truthful: None,
            harmless: None,
        })
        .collect();
    let groups: Vec<_> = judgments.iter().map(|j| by_group(categories, j)).collect();
    let category_rows = category_order
        .iter()
        .map(|c| CategoryRow {
            category: c.clone(),
            wins: groups
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let values = g.get(c)?;
                    (i != baseline).then(|| win_rate(values, resamples, seed))
                })
                .collect(),
        })
        .collect();
    (rows, category_rows)
}

/// Token-level perplexity of `model` on documents, in chunks of its context length.
pub fn perplexity(
    model: &Model,
    tokenizer: &Tokenizer,
    documents: &[String],
) -> anyhow::Result<f64> {
    let len = model.config().max_positions as usize;
    let seqs = text_sequences(documents, tokenizer, len)?;
    let batches: Vec<Batch> = seqs
        .chunks(BATCH)
        .map(|chunk| {
            let refs: Vec<_> = chunk.iter().collect();
            Batch::Sft(collate_sft(&refs, tokenizer.pad_id(), true))
        })
        .collect();
    Ok(evaluate(model, &batches).loss.exp())
}

/// A reward model's score of each (templated prompt, response) pair, read at the EOS that
/// ends the response, as the reward model was trained.
pub fn reward_scores(
    model: &Model,
    tokenizer: &Tokenizer,
    pairs: &[(String, String)],
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(BATCH) {
        let seqs = chunk
            .iter()
            .map(|(prompt, response)| {
                let mut ids = tokenizer.encode(&format!("{prompt}{response}"))?;
                ids.push(tokenizer.eos_id());
                Ok(ids)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (ids, valid) = left_pad(&seqs, tokenizer.pad_id());
        let scores = Vec::<f32>::try_from(last_token_scores(model, &ids, &valid))?;
        out.extend(scores.into_iter().map(f64::from));
    }
    Ok(out)
}

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
    let sampling = args.sampling.sampling()?;
    let seed = args.sampling.seed;
    let template = ChatTemplate::default();
    let prompts = read_prompts(&args.prompts, &template)?;
    if prompts.is_empty() {
        bail!("{}: no prompts", args.prompts.display());
    }
    let texts: Vec<String> = prompts.iter().map(|p| p.text.clone()).collect();
    let categories: Vec<String> = prompts
        .iter()
        .map(|p| p.category.clone().unwrap_or_else(|| "all".into()))
        .collect();
    let documents = args.text.as_deref().map(read_pretrain).transpose()?;
    let cpu = parse_device("cpu")?;
    let (judge_model, _) = Model::load(&args.reward_model, Head::Scalar, DType::F32, cpu)?;
    let judge_tokenizer = Tokenizer::from_dir(&args.reward_model)?;
    let mut answers = Vec::new();
    for (name, dir) in &named {
        let (model, _) = Model::load(dir, Head::LanguageModel, DType::F32, cpu)?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        let responses = sample_responses(
            &model,
            &tokenizer,
            &texts,
            args.sampling.max_new_tokens,
            &sampling,
            seed,
        )?;
        let pairs: Vec<(String, String)> = texts
            .iter()
            .cloned()
            .zip(responses.iter().cloned())
            .collect();
        let scores = reward_scores(&judge_model, &judge_tokenizer, &pairs)?;
        let perplexity = documents
            .as_deref()
            .map(|d| perplexity(&model, &tokenizer, d))
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

/// report.md, summary.txt, eval.json and responses.jsonl into `out`.
pub fn write_outputs(
    out: &Path,
    report: &Report,
    prompts: &[String],
    categories: &[String],
    answers: &[Answers],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |file: &str, text: String| {
        let path = out.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("report.md", report.markdown())?;
    write("summary.txt", report.terminal_table())?;
    let summary = json!({
        "models": report.models.iter().map(|r| json!({
            "name": r.name, "win_rate": r.win.map(|w| w.rate), "ties": r.win.map(|w| w.ties),
            "score": r.gold, "perplexity": r.perplexity, "truthful": r.truthful,
            "harmless": r.harmless,
        })).collect::<Vec<_>>(),
        "categories": report.categories.iter().map(|c| json!({
            "category": c.category,
            "win_rates": c.wins.iter().map(|w| w.map(|w| w.rate)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "facts": report.facts.iter().map(|(k, v)| json!({"what": k, "value": v})).collect::<Vec<_>>(),
    });
    write("eval.json", serde_json::to_string_pretty(&summary)?)?;
    let records: Vec<Value> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut record = json!({"prompt": p, "category": categories[i]});
            for m in answers {
                record[&m.name] = json!({"response": m.responses[i], "score": m.scores[i]});
            }
            record
        })
        .collect();
    write_jsonl(&out.join("responses.jsonl"), &records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(name: &str, scores: &[f64]) -> Answers {
        Answers {
            name: name.into(),
            responses: vec![String::new(); scores.len()],
            scores: scores.to_vec(),
            perplexity: None,
        }
    }

    #[test]
    fn win_rates_compare_each_prompt_with_the_baseline() {
        let models = [
            answers("sft", &[0.5, 0.5, 0.5, 0.2]),
            answers("ppo", &[0.6, 0.5, 0.4, 0.9]),
        ];
        let categories: Vec<String> = ["a", "a", "b", "b"].map(String::from).to_vec();
        let order: Vec<String> = ["b", "a", "c"].map(String::from).to_vec();
        let (rows, by_category) = compare(&models, &categories, &order, 0, 0.0, 200, 1);
        assert!(rows[0].win.is_none());
        let win = rows[1].win.unwrap();
        // Judgments: win, tie, loss, win.
        assert_eq!((win.rate.mean, win.ties, win.n), (0.625, 0.25, 4));
        assert!((rows[1].gold.mean - 0.6).abs() < 1e-12);
        assert_eq!(by_category[0].category, "b");
        assert_eq!(by_category[0].wins[1].unwrap().rate.mean, 0.5);
        assert_eq!(by_category[1].wins[1].unwrap().rate.mean, 0.75);
        assert!(by_category[2].wins[1].is_none(), "no prompt of category c");
        // A margin turns the small differences into ties.
        let (rows, _) = compare(&models, &categories, &order, 0, 0.15, 200, 1);
        assert_eq!(rows[1].win.unwrap().ties, 0.75);
    }
}
