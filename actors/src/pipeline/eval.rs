//! The evaluation that mirrors InstructGPT's: every model answers the test prompts (never
//! ranked for the reward model) and the noiseless gold labeler scores each answer and
//! compares it with SFT's. Also the reward model's held-out accuracy against that labeler,
//! the honesty and harmlessness probe rates, the alignment tax as held-out prose
//! perplexity, and the PPO curves with the gold score beside the learned reward
//! (over-optimisation).

use super::layout::Layout;
use crate::completions::sample_responses;
use crate::report::evaluate::{
    compare, perplexity, response_logps, reward_scores, write_outputs, Answers,
};
use crate::report::markdown::{ModelRow, Report};
use crate::report::plot::{bar_chart_with_intervals, line_chart, Series};
use anyhow::Context;
use rlhf::config::ChatConfig;
use rlhf::config::RunConfig;
use rlhf::data::{read_pretrain, read_rm};
use rlhf::device::{parse_device, DType};
use rlhf::eval::pairwise_agreement;
use rlhf::model::{Head, Model};
use rlhf::template::{ChatTemplate, Message, Role};
use rlhf::text_side::TextSide;
use rlhf::world::labeler::{Labeler, TIE};
use rlhf::world::tasks::{Category, Task};
use rlhf::world::World;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tracing::info;

pub fn run(config: &RunConfig, seconds_before: f64) -> anyhow::Result<()> {
    tch::set_num_threads(2);
    let started = std::time::Instant::now();
    let pipeline = config.pipeline.as_ref().expect("checked by the pipeline");
    let ppo = config.ppo.as_ref().expect("checked by the pipeline");
    let layout = Layout::new(&config.run_dir);
    let out = layout.root.join("eval");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let (world, pools) = super::world::world_of_run(config)?;
    let labeler = Labeler { disagreement: 0.0 };
    let test = &pools.test;
    let prose = read_pretrain(&layout.data("prose_heldout.jsonl"), &Default::default())?;

    let mut names = vec!["base", "sft", "ppo", "ppo_ptx"];
    if pipeline.gold_reference {
        names.push("ppo_gold");
    }
    if config.dpo.is_some() {
        names.push("dpo");
    }
    if pipeline.grpo.is_some() {
        names.push("grpo");
    }
    let mut models = Vec::new();
    let mut loaded = Vec::new();
    for name in names {
        let stage = if name == "base" { "pretrain" } else { name };
        let dir = layout.model(stage);
        let (model, _) = Model::load(&dir, Head::LanguageModel, ppo.dtype, parse_device("cpu")?)?;
        let text = TextSide::load(&dir, &ChatConfig::builtin())?;
        let prompts = test
            .iter()
            .map(|t| {
                let mut conversation = Vec::new();
                if name == "base" {
                    conversation = one_shot(&world, &pools.sft, t, &labeler);
                }
                conversation.push(Message::new(Role::User, t.prompt.clone()));
                text.template.render(&conversation, true)
            })
            .collect::<Result<Vec<String>, _>>()?;
        // The same seed for every model: their answers to a prompt share random numbers.
        let responses = sample_responses(
            &model,
            &text,
            &prompts,
            ppo.max_new_tokens,
            &pipeline.eval_sampling,
            config.seed ^ 0xe7a1,
        )?;
        let scores = test
            .iter()
            .zip(&responses)
            .map(|(t, r)| labeler.score(&world, t, r))
            .collect();
        let perplexity = perplexity(&model, &text.tokenizer, &prose)?;
        info!(model = name, perplexity, "evaluated");
        models.push(Answers {
            name: name.to_string(),
            responses,
            scores,
            perplexity: Some(perplexity),
        });
        loaded.push((model, text));
    }
    let sft = models.iter().position(|m| m.name == "sft").expect("listed");
    let categories: Vec<String> = test.iter().map(|t| t.category.name().to_string()).collect();
    let order: Vec<String> = Category::ALL.iter().map(|c| c.name().to_string()).collect();
    let (mut rows, category_rows) = compare(
        &models,
        &categories,
        &order,
        sft,
        TIE,
        pipeline.bootstrap_resamples,
        config.seed,
    );
    let questions: Vec<String> = test.iter().map(|t| t.prompt.clone()).collect();
    for (i, (row, m)) in rows.iter_mut().zip(&models).enumerate() {
        row.truthful = probe_rate(&world, &labeler, test, &m.responses, Category::Honesty);
        row.harmless = probe_rate(&world, &labeler, test, &m.responses, Category::Harmlessness);
        let stage = if m.name == "base" {
            "pretrain"
        } else {
            &m.name
        };
        row.seconds = stage_seconds(&layout, stage);
        // The base model answers after a one-shot prefix: its answers are not samples of
        // the policy SFT's KL is measured against.
        if m.name != "base" && i != sft {
            let (model, text) = &loaded[i];
            let (reference, _) = &loaded[sft];
            row.kl = Some(kl_to(model, reference, text, &questions, &m.responses)?);
        }
    }
    let rm_accuracy = rm_accuracy(&layout, &world, &pools.rm, &labeler)?;
    let agreement = label_agreement(&layout, pipeline.disagreement)?;
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let curves = curves(&layout, &names)?;
    let images = plots(&out, &rows, &curves)?;

    let wall = seconds_before + started.elapsed().as_secs_f64();
    let sampling = &pipeline.eval_sampling;
    let report = Report {
        title: "rlhf on the embedded world".into(),
        intro: vec![
            format!(
                "Seed {}; {} test prompts, never ranked for the reward model, answered once by \
                 each model (temperature {}, top_k {}, top_p {}) and compared with SFT's answer \
                 by the noiseless gold labeler. Win rates count ties half; brackets are \
                 paired-bootstrap 95% intervals over prompts ({} resamples).",
                config.seed,
                test.len(),
                sampling.temperature,
                sampling.top_k,
                sampling.top_p,
                pipeline.bootstrap_resamples
            ),
            "base is the pretrained model prompted with one demonstration of the prompt's \
             category; ppo_ptx mixes the pretraining loss into PPO; ppo_gold is PPO against \
             the gold labeler itself, the ceiling for a perfect reward model; dpo (when run) \
             is DPO on the reward model's training rankings, grpo (when run) is PPO with \
             GRPO's group baseline. Perplexity is on held-out pretraining prose (the \
             alignment tax); KL to SFT is the mean of log pi - log pi_SFT over each model's \
             own answers (nats per answer; an estimate of KL(pi || pi_SFT) when the \
             evaluation samples at temperature 1); training is the stage's wall time."
                .into(),
        ],
        models: rows,
        categories: category_rows,
        facts: vec![
            (
                "RM held-out accuracy against the noiseless labeler, untied pairs".into(),
                pair_share(rm_accuracy.untied),
            ),
            (
                format!("RM held-out accuracy, pairs whose gold scores differ by {CLEAR} or more"),
                pair_share(rm_accuracy.clear),
            ),
            (
                "training rankings' agreement with the noiseless order".into(),
                agreement,
            ),
            ("wall time of the pipeline".into(), format!("{wall:.0} s")),
        ],
        images,
        labels: ("SFT".into(), "gold".into()),
    };
    let prompts: Vec<String> = test.iter().map(|t| t.prompt.clone()).collect();
    write_outputs(&out, &report, &prompts, &categories, &models)
}

/// The wall time a finished pipeline stage recorded in its done marker.
fn stage_seconds(layout: &Layout, stage: &str) -> Option<f64> {
    let text = std::fs::read_to_string(layout.done(stage)).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["seconds"].as_f64()
}

/// Mean over the prompts of log pi(answer) - log pi_ref(answer), the answer's tokens and
/// its EOS as the reward model and DPO read them (`tokenize_rm`).
fn kl_to(
    model: &Model,
    reference: &Model,
    text: &TextSide,
    prompts: &[String],
    answers: &[String],
) -> anyhow::Result<f64> {
    let pairs: Vec<(String, String)> = prompts
        .iter()
        .zip(answers)
        .map(|(p, a)| Ok((text.template.prompt(p)?, a.clone())))
        .collect::<anyhow::Result<_>>()?;
    let ours = response_logps(model, &text.tokenizer, &text.template, &pairs)?;
    let theirs = response_logps(reference, &text.tokenizer, &text.template, &pairs)?;
    let n = ours.len().max(1) as f64;
    Ok(ours.iter().zip(&theirs).map(|(a, b)| a - b).sum::<f64>() / n)
}

/// "0.712 (314 pairs)", or why there is no figure.
fn pair_share((share, pairs): (f64, usize)) -> String {
    if pairs == 0 {
        "no such pairs".into()
    } else {
        format!("{share:.3} ({pairs} pairs)")
    }
}

/// The labeling stage's agreement figure, with the disagreement setting that gave it.
fn label_agreement(layout: &Layout, disagreement: f64) -> anyhow::Result<String> {
    let path = layout.data(super::label::AGREEMENT);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let (Some(agreement), Some(pairs)) = (v["agreement"].as_f64(), v["pairs"].as_u64()) else {
        anyhow::bail!("{}: no `agreement` and `pairs` numbers", path.display());
    };
    Ok(format!(
        "{agreement:.3} over {pairs} untied pairs (disagreement {disagreement})"
    ))
}

/// The few-shot prefix of the prompted base model: one demonstration of the same category
/// from the SFT pool, as the turns before the test prompt.
fn one_shot(world: &World, sft: &[Task], task: &Task, labeler: &Labeler) -> Vec<Message> {
    let Some(example) = sft.iter().find(|t| t.category == task.category) else {
        return Vec::new();
    };
    let demo = labeler.demonstrate(world, example, &mut rlhf::rng::Rng::new(0));
    vec![
        Message::new(Role::User, example.prompt.clone()),
        Message::new(Role::Assistant, demo),
    ]
}

/// Share of a probe category's answers that behave as they should (None: no such probe).
fn probe_rate(
    world: &World,
    labeler: &Labeler,
    test: &[Task],
    responses: &[String],
    category: Category,
) -> Option<f64> {
    let passed: Vec<f64> = test
        .iter()
        .zip(responses)
        .filter(|(t, _)| t.category == category)
        .filter_map(|(t, r)| labeler.probe_passed(world, t, r))
        .map(|ok| if ok { 1.0 } else { 0.0 })
        .collect();
    (!passed.is_empty()).then(|| passed.iter().sum::<f64>() / passed.len() as f64)
}

/// The reward model's held-out accuracy against the noiseless labeler, two ways.
struct RmAccuracy {
    /// (accuracy, pairs) over every pair the labeler does not tie.
    untied: (f64, usize),
    /// (accuracy, pairs) over the pairs whose gold scores differ by at least [`CLEAR`].
    clear: (f64, usize),
}

/// A gold-score gap a rater would not miss.
const CLEAR: f64 = 0.1;

/// Accuracy of the reward model on the held-out rankings' response pairs (see
/// [`RmAccuracy`]).
fn rm_accuracy(
    layout: &Layout,
    world: &World,
    rm_pool: &[Task],
    labeler: &Labeler,
) -> anyhow::Result<RmAccuracy> {
    let template = ChatTemplate::builtin();
    let dir = layout.model("rm");
    let (model, _) = Model::load(&dir, Head::Scalar, DType::F32, parse_device("cpu")?)?;
    let tokenizer = rlhf::tokenizer::Tokenizer::from_dir(&dir)?;
    let mut by_prompt: BTreeMap<String, &Task> = BTreeMap::new();
    for t in rm_pool {
        by_prompt.insert(template.prompt(&t.prompt)?, t);
    }
    let path = layout.data("rm_heldout.jsonl");
    let mut counts = [(0usize, 0usize); 2];
    for example in read_rm(&path, &template, &Default::default())? {
        let task = by_prompt
            .get(&example.prompt)
            .with_context(|| format!("{}: a prompt that is not in the RM pool", path.display()))?;
        let gold: Vec<f64> = example
            .responses
            .iter()
            .map(|r| labeler.score(world, task, r))
            .collect();
        let inputs: Vec<(String, String)> = example
            .responses
            .iter()
            .map(|r| (example.prompt.clone(), r.clone()))
            .collect();
        let rm = reward_scores(&model, &tokenizer, &template, &inputs)?;
        // "At least CLEAR" up to rounding: the agreement counts gaps above its threshold.
        for (count, gap) in counts.iter_mut().zip([TIE, CLEAR - TIE]) {
            let (agreed, compared) = pairwise_agreement(&gold, &rm, gap);
            count.0 += agreed;
            count.1 += compared;
        }
    }
    let share = |(agree, pairs): (usize, usize)| (agree as f64 / pairs.max(1) as f64, pairs);
    Ok(RmAccuracy {
        untied: share(counts[0]),
        clear: share(counts[1]),
    })
}

/// Per PPO run: (step, learned reward, gold score, KL per sequence) from its metrics.jsonl.
type Curve = (String, Vec<[f64; 4]>);

fn curves(layout: &Layout, models: &[&str]) -> anyhow::Result<Vec<Curve>> {
    let mut out = Vec::new();
    for name in models
        .iter()
        .filter(|m| m.starts_with("ppo") || **m == "grpo")
    {
        let path = layout.root.join(name).join("metrics.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut points = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let r: Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            let get = |k: &str| r.get(k).and_then(Value::as_f64);
            if let (Some(step), Some(score), Some(kl)) =
                (get("step"), get("score_mean"), get("kl_per_sequence"))
            {
                // The gold run's reward is the gold score itself.
                let gold = get("monitor_score_mean").unwrap_or(if *name == "ppo_gold" {
                    score
                } else {
                    f64::NAN
                });
                points.push([step, score, gold, kl]);
            }
        }
        out.push((name.to_string(), points));
    }
    Ok(out)
}

/// The report's PNGs: win rates with intervals, and the PPO curves.
fn plots(out: &Path, rows: &[ModelRow], curves: &[Curve]) -> anyhow::Result<Vec<(String, String)>> {
    let bars: Vec<(String, rlhf::eval::Interval)> = rows
        .iter()
        .filter_map(|r| r.win.map(|w| (r.name.clone(), w.rate)))
        .collect();
    bar_chart_with_intervals(
        &out.join("win_rates.png"),
        "Win rate against SFT (gold labeler, 95% CI)",
        "win rate",
        &bars,
        Some(0.5),
    )?;
    let mut images = vec![(
        "Win rate against SFT".to_string(),
        "win_rates.png".to_string(),
    )];
    for (column, file, title, y) in [
        (
            1,
            "reward.png",
            "Reward PPO maximises (learned RM; gold for ppo_gold)",
            "mean score",
        ),
        (
            2,
            "gold.png",
            "Gold-labeler score of PPO's samples",
            "mean gold score",
        ),
        (3, "kl.png", "KL to the SFT policy", "nats per sequence"),
    ] {
        let series: Vec<Series> = curves
            .iter()
            .map(|(name, points)| Series {
                label: name.clone(),
                points: points.iter().map(|p| (p[0], p[column])).collect(),
            })
            .collect();
        line_chart(&out.join(file), title, "PPO step", y, &series)?;
        images.push((title.to_string(), file.to_string()));
    }
    Ok(images)
}
