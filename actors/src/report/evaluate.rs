//! The comparison behind `rlhf eval` and the pipeline's evaluation: each model answers the same
//! prompts, a judge scores every answer, and each model's per-prompt score is compared with
//! the baseline's on that prompt (win, tie, loss) to give win rates with paired-bootstrap
//! intervals, overall and per category. The pipeline's judge is the gold labeler; here it
//! is a reward model the user brings.

use crate::report::markdown::{CategoryRow, ModelRow, Report};
use crate::stages::pretrain::text_sequences;
use crate::stages::run_dir::write_jsonl;
use anyhow::Context;
use rlhf::data::{collate_sft, SftSequence};
use rlhf::eval::{bootstrap_mean, by_group, judge, win_rate};
use rlhf::generate::left_pad;
use rlhf::losses::sequence_logps;
use rlhf::model::Model;
use rlhf::template::ChatTemplate;
use rlhf::tokenizer::Tokenizer;
use rlhf::train::{evaluate, last_token_scores, Batch};
use serde_json::{json, Value};
use std::path::Path;

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
            kl: None,
            seconds: None,
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

/// A reward model's score of each (prompt rendered with `template`, response) pair, read at
/// the EOS that ends the response. The ids are those the reward model was trained on
/// (`rlhf::data::tokenize_rm`): the prompt as `template` encodes it (a BOS only where no
/// template writes one), then the response encoded on its own, then the EOS. Encoding the
/// joined text instead differs at the join for SentencePiece tokenizers (Llama 2, Mistral),
/// whose response would lose its word-start marker.
pub fn reward_scores(
    model: &Model,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    pairs: &[(String, String)],
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(BATCH) {
        let seqs: Vec<Vec<i64>> = encode_pairs(tokenizer, template, chunk)?
            .into_iter()
            .map(|s| s.ids)
            .collect();
        let (ids, valid) = left_pad(&seqs, tokenizer.pad_id());
        let scores = Vec::<f32>::try_from(last_token_scores(model, &ids, &valid))?;
        out.extend(scores.into_iter().map(f64::from));
    }
    Ok(out)
}

/// (prompt, response) pairs as the reward model reads them (see [`reward_scores`]), with
/// the prompt's length.
fn encode_pairs(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    pairs: &[(String, String)],
) -> anyhow::Result<Vec<SftSequence>> {
    pairs
        .iter()
        .map(|(prompt, response)| {
            let mut ids = template.encode_prompt(tokenizer, prompt)?;
            let prompt_len = ids.len();
            ids.extend(tokenizer.encode(response)?);
            ids.push(tokenizer.eos_id());
            Ok(SftSequence::new(ids, prompt_len))
        })
        .collect()
}

/// `model`'s log-probability of each response (its tokens and the EOS after them) after
/// its prompt, with the ids [`reward_scores`] reads: (prompt rendered with `template`,
/// response) pairs.
pub fn response_logps(
    model: &Model,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    pairs: &[(String, String)],
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(BATCH) {
        let seqs = encode_pairs(tokenizer, template, chunk)?;
        let batch = collate_sft(&seqs.iter().collect::<Vec<_>>(), tokenizer.pad_id(), false);
        let device = model.device();
        let logps = tch::no_grad(|| {
            let hidden = model.forward(
                &batch.input_ids.to_device(device),
                Some(&batch.valid.to_device(device)),
                None,
                false,
            );
            sequence_logps(
                &model.logits(&hidden),
                &batch.targets.to_device(device),
                &batch.loss_mask.to_device(device),
            )
        });
        let logps = Vec::<f32>::try_from(logps.to_device(tch::Device::Cpu))?;
        out.extend(logps.into_iter().map(f64::from));
    }
    Ok(out)
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
            "harmless": r.harmless, "kl_to_baseline": r.kl, "training_seconds": r.seconds,
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

    /// Scores the ids the reward model was trained on: with Mistral's SentencePiece
    /// tokenizer the response encoded on its own starts with a word-start marker that the
    /// joined text would not have; a prompt used as given gets the tokenizer's BOS.
    #[test]
    fn reward_scores_read_the_ids_the_reward_model_trained_on() {
        use rlhf::config::ChatConfig;
        use rlhf::device::DType;
        use rlhf::model::Head;
        use rlhf::text_side::TextSide;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        let text = TextSide::load(&fixtures.join("chat/mistral"), &ChatConfig::default()).unwrap();
        let tok = &text.tokenizer;
        let mut raw: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures.join("llama-tiny/config.json")).unwrap(),
        )
        .unwrap();
        raw["vocab_size"] = json!(tok.vocab_size());
        let model = crate::seeded(0, || {
            Model::new(raw, Head::Scalar, DType::F32, tch::Device::Cpu)
        })
        .unwrap();
        let score = |ids: Vec<i64>| {
            let (ids, valid) = left_pad(&[ids], tok.pad_id());
            f64::from(last_token_scores(&model, &ids, &valid).double_value(&[0]) as f32)
        };
        let response = "The river Avel.";
        for template in [&text.template, &ChatTemplate::None] {
            let prompt = template.prompt("Name a river.").unwrap();
            let mut trained = template.encode_prompt(tok, &prompt).unwrap();
            trained.extend(tok.encode(response).unwrap());
            trained.push(tok.eos_id());
            let mut joined = tok.encode(&format!("{prompt}{response}")).unwrap();
            joined.push(tok.eos_id());
            assert_ne!(trained, joined, "the case this guards");
            let pairs = [(prompt, response.to_string())];
            let ours = reward_scores(&model, tok, template, &pairs).unwrap();
            assert_eq!(ours, vec![score(trained)]);
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
