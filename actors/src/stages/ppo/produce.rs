//! The producer: generate a rollout batch, add the reference log-probs and the scores,
//! queue it; before each batch, wait until the generator holds weights recent enough for
//! the staleness bound.

use super::actors::Actors;
use super::metrics::{self, ProducerTimes};
use super::prompts::PromptCycle;
use crate::system::generator::{EpisodeKey, GeneratorMsg};
use crate::system::rpc::ask;
use crate::system::scorers::ScorerMsg;
use anyhow::{anyhow, Context};
use ractor::ActorRef;
use rlhf::config::PpoStage;
use rlhf::rollout::{BatchFigures, RolloutBatch};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// A scored batch, its figures, and the seconds each producer phase took.
pub struct Produced {
    pub batch: RolloutBatch,
    /// Counted on a blocking thread: reading tensors back is a device sync on a GPU.
    pub figures: BatchFigures,
    pub times: ProducerTimes,
}

/// What the producer works with.
pub struct Producer {
    /// The run's name: the `stage` label of its metrics.
    pub name: String,
    pub generator: ActorRef<GeneratorMsg>,
    pub reference: ActorRef<ScorerMsg>,
    pub reward: ActorRef<ScorerMsg>,
    pub prompts: Vec<Vec<i64>>,
    pub stage: PpoStage,
    pub seed: u64,
}

impl Producer {
    pub fn new(
        name: &str,
        actors: &Actors,
        prompts: Vec<Vec<i64>>,
        stage: &PpoStage,
        seed: u64,
    ) -> Producer {
        Producer {
            name: name.to_string(),
            generator: actors.generator.clone(),
            reference: actors.reference.clone(),
            reward: actors.reward.clone(),
            prompts,
            stage: stage.clone(),
            seed,
        }
    }

    /// Produce the batches of steps `start + 1..=steps` into `queue`; batch k waits until
    /// `synced` (the steps whose weights the generator holds) reaches k - max_staleness.
    pub async fn run(
        self,
        start: u64,
        queue: mpsc::Sender<Produced>,
        mut synced: watch::Receiver<u64>,
    ) -> anyhow::Result<()> {
        let stage = &self.stage;
        let samples = stage.algo.samples_per_prompt;
        let distinct = stage.rollout_batch_size / samples;
        let mut cycle = PromptCycle::new(self.seed);
        // A resumed run draws the prompts an uninterrupted one would: replay the order.
        for _ in 0..start {
            cycle.next(&self.prompts, distinct, samples);
        }
        for k in start..stage.steps {
            let needed = k.saturating_sub(stage.max_staleness);
            synced
                .wait_for(|&v| v >= needed)
                .await
                .map_err(|_| anyhow!("the learner loop ended"))?;
            let prompts = cycle.next(&self.prompts, distinct, samples);
            let keys = EpisodeKey::of_batch(k, distinct, samples);
            let produced = self.produce(prompts, keys).await?;
            metrics::produced(&self.name, &produced.figures, &produced.times);
            if queue.send(produced).await.is_err() {
                break;
            }
            metrics::queue_depth(&self.name, queue.max_capacity() - queue.capacity());
        }
        Ok(())
    }

    /// One batch: generated, then scored by the reference policy, then by the reward.
    async fn produce(
        &self,
        prompts: Vec<Vec<i64>>,
        keys: Vec<EpisodeKey>,
    ) -> anyhow::Result<Produced> {
        let t = Instant::now();
        let batch = ask(&self.generator, "generator", |r| {
            GeneratorMsg::Generate(prompts, keys, r)
        })
        .await
        .context("generator")?;
        let generate = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let batch = score(&self.reference, "reference policy", batch).await?;
        let reference = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let batch = score(&self.reward, "reward actor", batch).await?;
        let reward = t.elapsed().as_secs_f64();
        let (batch, figures) = tokio::task::spawn_blocking(move || {
            let figures = batch.figures();
            (batch, figures)
        })
        .await?;
        Ok(Produced {
            batch,
            figures,
            times: ProducerTimes {
                generate,
                reference,
                reward,
            },
        })
    }
}

/// The batch with what the scoring actor `name` adds.
async fn score(
    actor: &ActorRef<ScorerMsg>,
    name: &str,
    batch: RolloutBatch,
) -> anyhow::Result<RolloutBatch> {
    ask(actor, "scorer", |r| ScorerMsg::Score(batch, r))
        .await
        .context(name.to_string())
}
