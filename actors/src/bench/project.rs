//! `rlhf bench project`: a discrete-event model of the PPO pipeline that predicts
//! episodes/s for more generator devices than this machine has, from the per-stage costs a
//! `rlhf bench ppo` run measured.
//!
//! The model replays the pipeline's rules: a rollout batch is split into chunks; each chunk
//! goes to the first free generator device (which first loads the batch's weights if it
//! holds others), then to the first free reference device, then to the first free reward
//! device; the learner trains on whole batches in order, then copies its weights out; batch
//! k may start only once the weights after step `k - max_staleness` are out. A stage's
//! seconds per batch are the measured busy seconds, split evenly over the chunks (so a
//! chunk costs its share of episodes: ideal scaling of each device; real devices lose some
//! efficiency on smaller chunks). Every kind other than the generator keeps the measured
//! replica count. Check it first against the measured runs (`measured` vs `predicted`).

use crate::report::plot::{line_chart, Series};
use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Settings of `rlhf bench project`.
#[derive(Args)]
pub struct ProjectBench {
    /// Output of `rlhf bench ppo` runs (their summary lines are read; other lines are
    /// skipped): the first summary gives the costs to project from, every summary is
    /// checked against the model.
    #[arg(long = "from", value_name = "FILE", required = true)]
    pub from: Vec<PathBuf>,
    /// Generator device counts to predict, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub generators: Vec<usize>,
    /// Where to draw predicted (and measured) episodes/s against generator devices.
    #[arg(long, value_name = "PNG")]
    pub out: Option<PathBuf>,
    /// Batches the model runs (the first fifth is warm-up and not counted).
    #[arg(long, default_value_t = 60)]
    pub batches: usize,
}

/// Seconds per rollout batch of each stage (busy time summed over the batch's chunks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    pub generate: f64,
    /// One replica's weight load.
    pub weight_load: f64,
    pub reference: f64,
    pub reward: f64,
    pub learner: f64,
    pub weight_sync: f64,
}

/// A pipeline layout to simulate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub batch: usize,
    pub chunks: usize,
    pub generators: usize,
    pub references: usize,
    pub rewards: usize,
    pub max_staleness: usize,
}

/// Episodes per second the pipeline settles at, over `batches` batches (the first fifth
/// not counted).
pub fn simulate(costs: &Costs, layout: &Layout, batches: usize) -> f64 {
    let chunks = layout.chunks.max(1);
    let share = |seconds: f64| seconds / chunks as f64;
    let mut generators = vec![(0.0f64, 0usize); layout.generators.max(1)]; // (free at, step held)
    let mut references = vec![0.0f64; layout.references.max(1)];
    let mut rewards = vec![0.0f64; layout.rewards.max(1)];
    // published[j]: when the weights after step j are out (step 0: the initial policy).
    let mut published = vec![0.0f64];
    let (mut learner_free, mut done) = (0.0f64, Vec::with_capacity(batches));
    for k in 0..batches {
        let step = k.saturating_sub(layout.max_staleness);
        // Weights after `step` exist once the learner trained batch step - 1: the model runs
        // the learner as soon as each batch is gathered, so they are known by now.
        let ready = published[step];
        let mut gathered = 0.0f64;
        for _ in 0..chunks {
            let g = first_free(generators.iter().map(|(free, _)| *free));
            let (free, held) = &mut generators[g];
            let mut start = free.max(ready);
            if *held != step {
                start += costs.weight_load;
                *held = step;
            }
            *free = start + share(costs.generate);
            let r = first_free(references.iter().copied());
            references[r] = references[r].max(*free) + share(costs.reference);
            let w = first_free(rewards.iter().copied());
            rewards[w] = rewards[w].max(references[r]) + share(costs.reward);
            gathered = gathered.max(rewards[w]);
        }
        learner_free = learner_free.max(gathered) + costs.learner + costs.weight_sync;
        published.push(learner_free);
        done.push(learner_free);
    }
    let warm = batches / 5;
    let span = done[batches - 1] - done[warm];
    ((batches - 1 - warm) * layout.batch) as f64 / span
}

fn first_free(free: impl Iterator<Item = f64>) -> usize {
    free.enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i)
}

/// A measured `rlhf bench ppo` run: its layout's counts, its costs at each staleness, and
/// its measured episodes/s.
struct Measured {
    batch: usize,
    chunks: usize,
    generators: usize,
    references: usize,
    rewards: usize,
    /// (max_staleness, costs, measured episodes/s)
    runs: Vec<(usize, Costs, f64)>,
}

fn measured(summary: &Value) -> anyhow::Result<Measured> {
    let count = |key: &str| summary[key].as_u64().map_or(1, |v| v as usize);
    // Replicas on node processes (`--generator-nodes`) count like local ones.
    let nodes = |key: &str| summary[key].as_u64().unwrap_or(0) as usize;
    let generators = count("generators") + nodes("generator_nodes");
    let runs = [(0usize, "sync"), (1, "async")]
        .into_iter()
        .map(|(staleness, name)| {
            let phases = &summary[format!("phases_seconds_{name}")];
            let phase = |key: &str| phases[key].as_f64().unwrap_or(0.0);
            let costs = Costs {
                generate: phase("generate"),
                // Each replica loads once per batch.
                weight_load: phase("weight_load") / generators as f64,
                reference: phase("reference"),
                reward: phase("reward"),
                learner: phase("learner"),
                weight_sync: phase("weight_sync"),
            };
            let rate = summary[format!("samples_per_second_{name}")]
                .as_f64()
                .ok_or_else(|| anyhow!("no samples_per_second_{name}"))?;
            Ok((staleness, costs, rate))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Measured {
        batch: summary["batch"]
            .as_u64()
            .ok_or_else(|| anyhow!("no batch"))? as usize,
        chunks: count("rollout_chunks"),
        generators,
        references: count("references") + nodes("reference_nodes"),
        rewards: count("rewards"),
        runs,
    })
}

/// The summary lines of `rlhf bench ppo` output files.
fn summaries(files: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Value)>> {
    let mut found = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{}: not a JSON line: {line}", file.display()))?;
            if value["bench"] == "ppo" {
                found.push((file.clone(), value));
            }
        }
    }
    anyhow::ensure!(
        !found.is_empty(),
        "no `rlhf bench ppo` summary line in {}",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(found)
}

pub fn run(settings: &ProjectBench) -> anyhow::Result<()> {
    anyhow::ensure!(settings.batches >= 10, "--batches must be at least 10");
    let found = summaries(&settings.from)?;
    let mut checks = Vec::new();
    for (file, summary) in &found {
        let m = measured(summary)?;
        for &(staleness, costs, rate) in &m.runs {
            let layout = Layout {
                batch: m.batch,
                chunks: m.chunks,
                generators: m.generators,
                references: m.references,
                rewards: m.rewards,
                max_staleness: staleness,
            };
            let predicted = simulate(&costs, &layout, settings.batches);
            let line = json!({"check": file.display().to_string(), "generators": m.generators,
                "max_staleness": staleness, "measured": rate, "predicted": predicted,
                "error": predicted / rate - 1.0});
            println!("{line}");
            checks.push((m.generators, staleness, rate));
        }
    }
    let base = measured(&found[0].1)?;
    println!(
        "\n| generator devices | max_staleness 0: predicted | measured | max_staleness 1: predicted | measured |\n|---|---:|---:|---:|---:|"
    );
    // A measured run at this many generators, if any (the first such).
    let measured_at = |g: usize, staleness: usize| {
        checks
            .iter()
            .find(|c| c.0 == g && c.1 == staleness)
            .map_or("-".to_string(), |c| format!("{:.1}", c.2))
    };
    let mut lines = vec![Vec::new(), Vec::new()];
    for &g in &settings.generators {
        let mut row = Vec::new();
        for (staleness, costs, _) in &base.runs {
            // The costs are per batch, whatever its chunks; with g devices it has g chunks.
            let layout = Layout {
                batch: base.batch,
                chunks: g.max(base.chunks),
                generators: g,
                references: base.references,
                rewards: base.rewards,
                max_staleness: *staleness,
            };
            let predicted = simulate(costs, &layout, settings.batches);
            lines[*staleness].push((g as f64, predicted));
            row.push(predicted);
        }
        println!(
            "| {g} | {:.1} | {} | {:.1} | {} |",
            row[0],
            measured_at(g, 0),
            row[1],
            measured_at(g, 1)
        );
    }
    if let Some(out) = &settings.out {
        let mut series: Vec<Series> = lines
            .into_iter()
            .enumerate()
            .map(|(s, points)| Series {
                label: format!("predicted, max_staleness {s}"),
                points,
            })
            .collect();
        for staleness in [0, 1] {
            let mut points: Vec<(f64, f64)> = checks
                .iter()
                .filter(|c| c.1 == staleness)
                .map(|c| (c.0 as f64, c.2))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(Series {
                label: format!("measured, max_staleness {staleness}"),
                points,
            });
        }
        line_chart(
            out,
            "PPO episodes/s against generator devices (discrete-event model)",
            "generator devices",
            "episodes/s",
            &series,
        )?;
        println!("\nchart: {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(generate: f64, learner: f64) -> Costs {
        Costs {
            generate,
            weight_load: 0.0,
            reference: 0.0,
            reward: 0.0,
            learner,
            weight_sync: 0.0,
        }
    }

    fn layout(generators: usize, max_staleness: usize) -> Layout {
        Layout {
            batch: 10,
            chunks: generators,
            generators,
            references: 1,
            rewards: 1,
            max_staleness,
        }
    }

    #[test]
    fn node_processes_count_as_replicas() {
        let phases = json!({"generate": 0.2, "weight_load": 0.02, "reference": 0.1,
            "reward": 0.1, "learner": 0.4, "weight_sync": 0.001});
        let summary = json!({"batch": 32, "generators": 0, "generator_nodes": 2,
            "references": 1, "rollout_chunks": 2,
            "phases_seconds_sync": phases, "phases_seconds_async": phases,
            "samples_per_second_sync": 50.0, "samples_per_second_async": 80.0});
        let m = measured(&summary).unwrap();
        assert_eq!((m.generators, m.references, m.rewards), (2, 1, 1));
        // Two replicas loaded the weights: each once per batch.
        assert!((m.runs[0].1.weight_load - 0.01).abs() < 1e-12);
    }

    #[test]
    fn synchronous_steps_add_the_stages_and_overlap_hides_the_shorter() {
        // Generate 3 s, learn 1 s, 10 episodes a batch.
        let c = costs(3.0, 1.0);
        assert!((simulate(&c, &layout(1, 0), 50) - 10.0 / 4.0).abs() < 1e-9);
        // One step of staleness: the generator never waits, 3 s a batch.
        assert!((simulate(&c, &layout(1, 1), 50) - 10.0 / 3.0).abs() < 1e-9);
        // Two generators halve generation; the learner still waits at staleness 0.
        assert!((simulate(&c, &layout(2, 0), 50) - 10.0 / 2.5).abs() < 1e-9);
        // Four generators at staleness 1: generation 0.75 s < learning 1 s, so the learner
        // is the bottleneck.
        assert!((simulate(&c, &layout(4, 1), 50) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn weight_loads_and_scoring_lengthen_the_chunk_path() {
        let c = Costs {
            generate: 2.0,
            weight_load: 0.5,
            reference: 1.0,
            reward: 1.0,
            learner: 1.0,
            weight_sync: 0.5,
        };
        // One chunk, synchronous: load 0.5 + 2 + 1 + 1 + learn 1 + copy 0.5 = 6 s a batch
        // (every batch has new weights after the first two).
        let rate = simulate(&c, &layout(1, 0), 50);
        assert!((rate - 10.0 / 6.0).abs() < 1e-9, "{rate}");
    }
}
