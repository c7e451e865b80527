//! The rollout batches in flight at a checkpoint. With `max_staleness` S > 0, when step s
//! ends the producer has already generated (or is generating) batches s..s+S-1 with
//! weights older than the checkpoint's. They are saved with the checkpoint, so a resumed
//! run trains on exactly the batches the uninterrupted one did, and generates the next
//! one, as it did, with the checkpoint's weights.

use super::metrics::ProducerTimes;
use super::produce::Produced;
use anyhow::Context;
use rlhf::rollout::RolloutBatch;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Tensor};

const TENSORS: &str = "inflight.safetensors";
const META: &str = "inflight.json";

/// What a saved batch holds besides its tensors.
#[derive(Serialize, Deserialize)]
struct Meta {
    id: u64,
    policy_version: u64,
    generate_seconds: f64,
    reference_seconds: f64,
    reward_seconds: f64,
}

/// Writes `batches` into the checkpoint folder `dir` (nothing when there are none).
pub fn save(dir: &Path, batches: &[Produced]) -> anyhow::Result<()> {
    if batches.is_empty() {
        return Ok(());
    }
    let mut tensors = Vec::new();
    let mut meta = Vec::new();
    for (i, produced) in batches.iter().enumerate() {
        let b = &produced.batch;
        let optional = [
            ("ref_logprobs", &b.ref_logprobs),
            ("scores", &b.scores),
            ("monitor_scores", &b.monitor_scores),
        ];
        let present = optional
            .into_iter()
            .filter_map(|(name, t)| t.as_ref().map(|t| (name, t)));
        for (name, t) in [
            ("prompt_ids", &b.prompt_ids),
            ("prompt_mask", &b.prompt_mask),
            ("response_ids", &b.response_ids),
            ("response_mask", &b.response_mask),
            ("behaviour_logprobs", &b.behaviour_logprobs),
            ("ended_with_eos", &b.ended_with_eos),
        ]
        .into_iter()
        .chain(present)
        {
            tensors.push((format!("{i}.{name}"), t.to_device(Device::Cpu)));
        }
        let times = &produced.times;
        meta.push(Meta {
            id: b.id,
            policy_version: b.policy_version,
            generate_seconds: times.generate,
            reference_seconds: times.reference,
            reward_seconds: times.reward,
        });
    }
    let path = dir.join(TENSORS);
    Tensor::write_safetensors(&tensors, &path)
        .with_context(|| format!("writing {}", path.display()))?;
    let text = serde_json::to_string_pretty(&meta).expect("metadata serialises");
    std::fs::write(dir.join(META), text).context("writing the in-flight batches' metadata")
}

/// The batches [`save`] wrote into `dir`, in order (none when it wrote nothing).
pub fn load(dir: &Path) -> anyhow::Result<Vec<Produced>> {
    let meta_path = dir.join(META);
    if !meta_path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&meta_path)
        .with_context(|| format!("reading {}", meta_path.display()))?;
    let meta: Vec<Meta> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not in-flight batch metadata", meta_path.display()))?;
    let path = dir.join(TENSORS);
    let mut tensors: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .collect();
    let mut batches = Vec::with_capacity(meta.len());
    for (i, m) in meta.into_iter().enumerate() {
        let take = |tensors: &mut HashMap<String, Tensor>, name: &str| {
            tensors.remove(&format!("{i}.{name}"))
        };
        let need = |tensors: &mut HashMap<String, Tensor>, name: &str| {
            take(tensors, name).with_context(|| format!("{}: no tensor {i}.{name}", path.display()))
        };
        let t = &mut tensors;
        let batch = RolloutBatch {
            id: m.id,
            policy_version: m.policy_version,
            prompt_ids: need(t, "prompt_ids")?,
            prompt_mask: need(t, "prompt_mask")?,
            response_ids: need(t, "response_ids")?,
            response_mask: need(t, "response_mask")?,
            behaviour_logprobs: need(t, "behaviour_logprobs")?,
            ended_with_eos: need(t, "ended_with_eos")?,
            ref_logprobs: take(t, "ref_logprobs"),
            scores: take(t, "scores"),
            monitor_scores: take(t, "monitor_scores"),
        };
        let figures = batch.figures();
        batches.push(Produced {
            batch,
            figures,
            times: ProducerTimes {
                weight_load: 0.0,
                generate: m.generate_seconds,
                reference: m.reference_seconds,
                reward: m.reward_seconds,
            },
        });
    }
    Ok(batches)
}
