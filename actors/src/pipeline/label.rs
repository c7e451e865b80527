//! The labeling stage: the SFT model samples K responses for each RM prompt and the gold
//! labeler ranks them, noisily for training (as human labelers disagree) and without
//! noise for the held-out part that measures the reward model.

use super::layout::Layout;
use crate::completions::sample_responses;
use crate::stages::run_dir::write_jsonl;
use anyhow::Context;
use rlhf::config::{ChatConfig, RunConfig};
use rlhf::device::parse_device;
use rlhf::eval::pairwise_agreement;
use rlhf::model::{Head, Model};
use rlhf::rng::Rng;
use rlhf::sampling::Sampling;
use rlhf::text_side::TextSide;
use rlhf::world::labeler::{Labeler, TIE};
use serde_json::json;
use tracing::info;

pub fn run(config: &RunConfig) -> anyhow::Result<()> {
    tch::set_num_threads(2);
    let pipeline = config.pipeline.as_ref().expect("checked by the pipeline");
    let ppo = config.ppo.as_ref().expect("checked by the pipeline");
    let layout = Layout::new(&config.run_dir);
    let (world, pools) = super::world::world_of_run(config)?;
    let sft_dir = layout.model("sft");
    let sft = config.sft.as_ref().expect("checked by the pipeline");
    let (model, _) = Model::load(
        &sft_dir,
        Head::LanguageModel,
        sft.dtype,
        parse_device(&sft.device)?,
    )?;
    let text = TextSide::load(&sft_dir, &ChatConfig::builtin())?;
    let k = pipeline.responses_per_prompt;
    // Response j of every prompt at temperature j (cycled): one generation pass each.
    let texts = pools
        .rm
        .iter()
        .map(|t| text.template.prompt(&t.prompt))
        .collect::<Result<Vec<String>, _>>()?;
    let mut responses = vec![String::new(); pools.rm.len() * k];
    for (j, &temperature) in pipeline
        .label_temperatures
        .iter()
        .cycle()
        .take(k)
        .enumerate()
    {
        let sampling = Sampling {
            temperature,
            ..Sampling::default()
        };
        let sampled = sample_responses(
            &model,
            &text,
            &texts,
            ppo.max_new_tokens,
            &sampling,
            config.seed ^ 0x1abe1 ^ ((j as u64) << 32),
        )?;
        for (i, response) in sampled.into_iter().enumerate() {
            responses[i * k + j] = response;
        }
    }
    let held = (pools.rm.len() as f64 * pipeline.rm_heldout_fraction).round() as usize;
    let split = pools.rm.len() - held;
    let mut rng = Rng::new(config.seed ^ 0x4a4b);
    let (mut train, mut heldout) = (Vec::new(), Vec::new());
    let mut skipped = 0;
    // How often the noisy training rankings order a pair as the noiseless labeler does.
    let (mut agree, mut pairs) = (0usize, 0usize);
    for (i, task) in pools.rm.iter().enumerate() {
        // A ranking needs distinct, non-empty responses (the RM data format's rule); a
        // prompt keeps the 2..=K that are.
        let mut group: Vec<String> = Vec::with_capacity(k);
        for r in &responses[i * k..(i + 1) * k] {
            if !r.trim().is_empty() && !group.iter().any(|g| g.trim() == r.trim()) {
                group.push(r.clone());
            }
        }
        if group.len() < 2 {
            skipped += 1;
            continue;
        }
        let labeler = Labeler {
            disagreement: if i < split {
                pipeline.disagreement
            } else {
                0.0
            },
        };
        let gold: Vec<f64> = group
            .iter()
            .map(|r| labeler.score(&world, task, r))
            .collect();
        let ranking = labeler.order(&gold, &mut rng);
        if i < split {
            let (a, n) = pairwise_agreement(&gold, &rank_scores(&ranking), TIE);
            agree += a;
            pairs += n;
        }
        let record = json!({"prompt": task.prompt, "responses": group, "ranking": ranking,
                            "category": task.category.name()});
        if i < split {
            train.push(record);
        } else {
            heldout.push(record);
        }
    }
    write_jsonl(&layout.data("rm.jsonl"), &train)?;
    write_jsonl(&layout.data("rm_heldout.jsonl"), &heldout)?;
    let agreement = agree as f64 / pairs.max(1) as f64;
    let path = layout.data(AGREEMENT);
    std::fs::write(
        &path,
        json!({"agreement": agreement, "pairs": pairs, "disagreement": pipeline.disagreement})
            .to_string(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    info!(
        agreement,
        untied_pairs = pairs,
        ranked = train.len(),
        held_out = heldout.len(),
        k,
        skipped_fewer_than_two_distinct = skipped,
        "the labeler ranked the SFT model's samples"
    );
    Ok(())
}

/// The file (under data/) with the training rankings' agreement with the noiseless order.
pub const AGREEMENT: &str = "label_agreement.json";

/// Scores that sort as `ranking` (best first) does.
fn rank_scores(ranking: &[usize]) -> Vec<f64> {
    let mut scores = vec![0.0; ranking.len()];
    for (place, &i) in ranking.iter().enumerate() {
        scores[i] = -(place as f64);
    }
    scores
}

#[cfg(test)]
mod tests {
    #[test]
    fn rank_scores_sort_as_the_ranking() {
        assert_eq!(super::rank_scores(&[2, 0, 1]), [-1.0, -2.0, 0.0]);
    }
}
