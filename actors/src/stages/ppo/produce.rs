//! The producer: generate rollout batches, add the reference log-probs and the scores,
//! queue them; before each batch, wait until the generator holds weights recent enough
//! for the staleness bound. Generation, reference and reward are stages linked by
//! channels, so each works on a different batch at the same time.

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
    /// The stages stream: the generator samples one batch while the reference policy and
    /// the reward score earlier ones, each stage holding at most one batch waiting for it.
    pub async fn run(
        self,
        start: u64,
        queue: mpsc::Sender<Produced>,
        synced: watch::Receiver<u64>,
    ) -> anyhow::Result<()> {
        let (to_reference, at_reference) = mpsc::channel(1);
        let (to_reward, at_reward) = mpsc::channel(1);
        let (to_queue, scored) = mpsc::channel(1);
        let reference = (&self.reference, "reference policy");
        let reward = (&self.reward, "reward actor");
        tokio::try_join!(
            self.generate(start, to_reference, synced),
            relay(reference, at_reference, to_reward, |t, s| t.reference = s),
            relay(reward, at_reward, to_queue, |t, s| t.reward = s),
            self.enqueue(scored, queue),
        )?;
        Ok(())
    }

    /// Generate batch after batch, each once the generator's weights are recent enough.
    async fn generate(
        &self,
        start: u64,
        out: mpsc::Sender<InFlight>,
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
            let t = Instant::now();
            let batch = ask(&self.generator, "generator", |r| {
                GeneratorMsg::Generate(prompts, keys, r)
            })
            .await
            .context("generator")?;
            let times = ProducerTimes {
                generate: t.elapsed().as_secs_f64(),
                reference: 0.0,
                reward: 0.0,
            };
            if out.send(InFlight { batch, times }).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Count each scored batch's figures, export them, and queue it for the learner.
    async fn enqueue(
        &self,
        mut scored: mpsc::Receiver<InFlight>,
        queue: mpsc::Sender<Produced>,
    ) -> anyhow::Result<()> {
        while let Some(InFlight { batch, times }) = scored.recv().await {
            // Counted on a blocking thread: reading tensors back is a device sync on a GPU.
            let (batch, figures) = tokio::task::spawn_blocking(move || {
                let figures = batch.figures();
                (batch, figures)
            })
            .await?;
            metrics::produced(&self.name, &figures, &times);
            let produced = Produced {
                batch,
                figures,
                times,
            };
            if queue.send(produced).await.is_err() {
                break;
            }
            metrics::queue_depth(&self.name, queue.max_capacity() - queue.capacity());
        }
        Ok(())
    }
}

/// A batch between the producer's stages, with the seconds each stage took so far.
struct InFlight {
    batch: RolloutBatch,
    times: ProducerTimes,
}

/// One scoring stage: each batch from `input`, with what the scoring actor adds (its
/// seconds recorded by `record`), on to `output`, until either side closes.
async fn relay(
    (actor, name): (&ActorRef<ScorerMsg>, &str),
    mut input: mpsc::Receiver<InFlight>,
    output: mpsc::Sender<InFlight>,
    record: fn(&mut ProducerTimes, f64),
) -> anyhow::Result<()> {
    while let Some(InFlight { batch, mut times }) = input.recv().await {
        let t = Instant::now();
        let batch = ask(actor, "scorer", |r| ScorerMsg::Score(batch, r))
            .await
            .context(name.to_string())?;
        record(&mut times, t.elapsed().as_secs_f64());
        if output.send(InFlight { batch, times }).await.is_err() {
            break;
        }
    }
    Ok(())
}
