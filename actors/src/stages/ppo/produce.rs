//! The producer: generate rollout batches, add the reference log-probs and the scores,
//! queue them. Each batch is split into `rollout_chunks` chunks; generation, reference and
//! reward are stages linked by channels, each served by its actor's replicas, every replica
//! taking the next chunk when it is free. So each stage works on a different chunk (or
//! batch) at the same time, and a batch is gathered in order once all its chunks are
//! scored. Batch k is sampled with the weights after step k - max_staleness, taken from the
//! [`WeightBoard`]: a replica loads them before its first chunk of the batch.

use super::actors::Actors;
use super::metrics::{self, ProducerTimes};
use super::nodes::Nodes;
use super::prompts::PromptCycle;
use super::replica::Replica;
use super::weights::{Published, WeightBoard};
use super::work_queue::WorkQueue;
use crate::system::generator::{EpisodeKey, GeneratorMsg};
use crate::system::policy_node::node::Role;
use crate::system::policy_node::proxy::{RemoteGenerator, RemoteReference};
use crate::system::rpc::ask;
use crate::system::scorers::ScorerMsg;
use anyhow::Context;
use rlhf::config::PpoStage;
use rlhf::rollout::{BatchFigures, RolloutBatch};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::info;

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
    pub generators: Vec<Replica<GeneratorMsg>>,
    pub references: Vec<Replica<ScorerMsg>>,
    pub rewards: Vec<Replica<ScorerMsg>>,
    pub prompts: Vec<Vec<i64>>,
    pub stage: PpoStage,
    pub seed: u64,
    pub pad_id: i64,
    /// Where replicas on nodes join, when the run has any.
    pub nodes: Option<Nodes>,
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
            generators: actors.generators.clone(),
            references: actors.references.clone(),
            rewards: actors.rewards.clone(),
            prompts,
            stage: stage.clone(),
            seed,
            pad_id: actors.pad_id,
            nodes: actors.nodes.clone(),
        }
    }

    /// Produce the batches of steps `start + 1..=steps` into `queue`, batch k with the
    /// weights `board` holds for step k - max_staleness (waiting for them).
    pub async fn run(
        self,
        start: u64,
        queue: mpsc::Sender<Produced>,
        board: WeightBoard,
    ) -> anyhow::Result<()> {
        let chunks = self.stage.actors.chunks(self.stage.rollout_chunks);
        // Each stage holds at most one batch's chunks waiting for it.
        let (to_generate, at_generate) = mpsc::channel(chunks);
        let (to_reference, at_reference) = mpsc::channel(chunks);
        let (to_reward, at_reward) = mpsc::channel(chunks);
        let (to_gather, at_gather) = mpsc::channel(chunks);
        let mut replicas = JoinSet::new();
        let at_generate = WorkQueue::new(at_generate, self.generators.len());
        for replica in &self.generators {
            let (replica, work, out) = (replica.clone(), at_generate.clone(), to_reference.clone());
            replicas.spawn(generate_on(replica, work, out));
        }
        let at_reference = WorkQueue::new(at_reference, self.references.len());
        for replica in &self.references {
            let stage = ScoringStage::reference(replica.clone());
            replicas.spawn(stage.serve(at_reference.clone(), to_reward.clone()));
        }
        let at_reward = WorkQueue::new(at_reward, self.rewards.len());
        for replica in &self.rewards {
            let stage = ScoringStage {
                replica: replica.clone(),
                what: "reward actor",
                next: None,
                record: |t, s| t.reward += s,
            };
            replicas.spawn(stage.serve(at_reward.clone(), to_gather.clone()));
        }
        // Nodes that join later get replicas of their own, while their stage is open.
        let (spawn_late, mut late) = mpsc::unbounded_channel::<ReplicaTask>();
        let late_nodes = LateNodes {
            generate: (at_generate.clone(), to_reference.downgrade()),
            reference: (at_reference.clone(), to_reward.downgrade()),
            spawn: spawn_late,
        };
        // The replicas hold the only senders now: each stage closes when the one before ends.
        drop((to_reference, to_reward, to_gather));
        let replicas = async {
            loop {
                tokio::select! {
                    done = replicas.join_next() => match done {
                        Some(done) => done.context("a producer replica task panicked")??,
                        None => break,
                    },
                    Some(task) = late.recv() => {
                        replicas.spawn(task);
                    }
                }
            }
            anyhow::Ok(())
        };
        let producing = async {
            tokio::try_join!(
                self.dispatch(start, chunks, to_generate, board),
                replicas,
                self.gather(start, chunks, at_gather, queue),
            )
        };
        tokio::select! {
            produced = producing => produced.map(|_| ()),
            failed = late_nodes.watch(&self) => failed,
        }
    }

    /// Split batch after batch into chunks for the generator replicas, each batch once its
    /// weights are published.
    async fn dispatch(
        &self,
        start: u64,
        chunks: usize,
        out: mpsc::Sender<Chunk>,
        board: WeightBoard,
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
            let weights = board.take(k.saturating_sub(stage.max_staleness)).await;
            let prompts = cycle.next(&self.prompts, distinct, samples);
            let keys = EpisodeKey::of_batch(k, distinct, samples);
            for (index, rows) in chunk_ranges(prompts.len(), chunks).into_iter().enumerate() {
                let chunk = Chunk {
                    batch: k,
                    index,
                    weights: weights.clone(),
                    prompts: prompts[rows.clone()].to_vec(),
                    keys: keys[rows].to_vec(),
                };
                if out.send(chunk).await.is_err() {
                    return Ok(());
                }
                metrics::waiting("generator", &out);
            }
        }
        Ok(())
    }

    /// Gather each batch's scored chunks in order, count its figures, export them, and
    /// queue it for the learner.
    async fn gather(
        &self,
        start: u64,
        chunks: usize,
        mut parts: mpsc::Receiver<Part>,
        queue: mpsc::Sender<Produced>,
    ) -> anyhow::Result<()> {
        let mut waiting: BTreeMap<u64, Vec<Option<Part>>> = BTreeMap::new();
        let mut next = start;
        while let Some(part) = parts.recv().await {
            let slots = waiting
                .entry(part.batch)
                .or_insert_with(|| (0..chunks).map(|_| None).collect());
            let index = part.index;
            slots[index] = Some(part);
            while waiting
                .get(&next)
                .is_some_and(|slots| slots.iter().all(Option::is_some))
            {
                let slots = waiting.remove(&next).expect("complete");
                let parts: Vec<Part> = slots.into_iter().map(|p| p.expect("complete")).collect();
                next += 1;
                let mut times = ProducerTimes::default();
                for part in &parts {
                    times.add(&part.times);
                }
                let batches = parts.into_iter().map(|p| p.rollout).collect();
                let pad = self.pad_id;
                // Gathered and counted on a blocking thread: reading tensors back is a
                // device sync on a GPU.
                let (batch, figures) = tokio::task::spawn_blocking(move || {
                    let batch = RolloutBatch::concat(batches, pad)?;
                    let figures = batch.figures();
                    anyhow::Ok((batch, figures))
                })
                .await??;
                metrics::produced(&self.name, &figures, &times);
                let produced = Produced {
                    batch,
                    figures,
                    times,
                };
                if queue.send(produced).await.is_err() {
                    return Ok(());
                }
                metrics::queue_depth(&self.name, queue.max_capacity() - queue.capacity());
            }
        }
        Ok(())
    }
}

/// The contiguous row ranges of `rows` split into `chunks` parts whose sizes differ by at
/// most one, the larger first.
fn chunk_ranges(rows: usize, chunks: usize) -> Vec<std::ops::Range<usize>> {
    let (size, extra) = (rows / chunks, rows % chunks);
    let mut start = 0;
    (0..chunks)
        .map(|i| {
            let end = start + size + usize::from(i < extra);
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

/// A chunk of a batch for a generator replica: its prompts, their episode keys and the
/// weights to sample with.
struct Chunk {
    batch: u64,
    index: usize,
    weights: Arc<Published>,
    prompts: Vec<Vec<i64>>,
    keys: Vec<EpisodeKey>,
}

/// A replica's loop, as the producer runs it.
type ReplicaTask = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// Where replicas for nodes that join mid-run go: the generator and reference stages'
/// queues with (weakly, so the stages still close) the stage after each.
struct LateNodes {
    generate: (WorkQueue<Chunk>, mpsc::WeakSender<Part>),
    reference: (WorkQueue<Part>, mpsc::WeakSender<Part>),
    spawn: mpsc::UnboundedSender<ReplicaTask>,
}

/// How often the producer looks for nodes that joined.
const LATE_NODE_POLL: Duration = Duration::from_millis(500);

impl LateNodes {
    /// Give every generator or reference node that joins (the roles the run has nodes
    /// of) a replica on its stage's queue while the stage is open. Returns only on an
    /// error: the producer ends it when its work is done.
    async fn watch(self, producer: &Producer) -> anyhow::Result<()> {
        let Some(nodes) = &producer.nodes else {
            return std::future::pending().await;
        };
        let placement = &producer.stage.actors;
        loop {
            tokio::time::sleep(LATE_NODE_POLL).await;
            let (queue, next) = &self.generate;
            if let (true, Some(out)) = (placement.generator.nodes > 0, next.upgrade()) {
                if let Some(replica) = nodes.late(Role::Generator, RemoteGenerator).await? {
                    info!(
                        "{} joined mid-run; it takes generation chunks from now on",
                        replica.name
                    );
                    queue.add_replica();
                    let _ = self
                        .spawn
                        .send(Box::pin(generate_on(replica, queue.clone(), out)));
                }
            }
            let (queue, next) = &self.reference;
            if let (true, Some(out)) = (placement.reference.nodes > 0, next.upgrade()) {
                if let Some(replica) = nodes.late(Role::Reference, RemoteReference).await? {
                    info!(
                        "{} joined mid-run; it takes reference chunks from now on",
                        replica.name
                    );
                    queue.add_replica();
                    let stage = ScoringStage::reference(replica);
                    let _ = self.spawn.send(Box::pin(stage.serve(queue.clone(), out)));
                }
            }
        }
    }
}

/// A generated chunk between the producer's stages, with the seconds each stage took.
struct Part {
    batch: u64,
    index: usize,
    rollout: RolloutBatch,
    times: ProducerTimes,
}

/// One generator replica: each chunk it takes, sampled with the chunk's weights (loaded
/// first when the replica holds others), on to the reference stage. A replica on a node
/// that leaves hands its chunk back to the others.
async fn generate_on(
    Replica { name, actor }: Replica<GeneratorMsg>,
    work: WorkQueue<Chunk>,
    out: mpsc::Sender<Part>,
) -> anyhow::Result<()> {
    // The version the replica holds: it starts with the initial policy.
    let mut held = 0;
    while let Some(chunk) = work.next().await {
        let mut times = ProducerTimes::default();
        let generated = async {
            if chunk.weights.version != held {
                let load = Instant::now();
                let weights = &chunk.weights;
                let bytes = match weights.tensors() {
                    Some(tensors) => ask(&actor, "generator", |r| {
                        GeneratorMsg::SetWeights(weights.version, tensors, r)
                    })
                    .await
                    .with_context(|| {
                        format!("{name}: loading policy version {}", weights.version)
                    })?,
                    None => 0,
                };
                held = weights.version;
                times.weight_load = load.elapsed().as_secs_f64();
                metrics::weights_loaded(name, bytes, times.weight_load);
            }
            let t = Instant::now();
            let (prompts, keys) = (chunk.prompts.clone(), chunk.keys.clone());
            let rollout = ask(&actor, "generator", |r| {
                GeneratorMsg::Generate(prompts, keys, chunk.batch, r)
            })
            .await
            .context(name)?;
            times.generate = t.elapsed().as_secs_f64();
            anyhow::Ok(rollout)
        }
        .await;
        let rollout = match generated {
            Ok(rollout) => rollout,
            Err(e) => return work.lost(name, chunk.batch, chunk.index, chunk, e),
        };
        let part = Part {
            batch: chunk.batch,
            index: chunk.index,
            rollout,
            times,
        };
        work.done();
        if out.send(part).await.is_err() {
            break;
        }
        metrics::waiting("reference", &out);
    }
    Ok(())
}

/// One replica of a scoring stage (reference policy or reward): each chunk it takes, with
/// what its actor adds (its seconds recorded by `record`), on to `output`, the queue of
/// the `next` actor kind (none: the gathering). Errors name the stage as `what`.
struct ScoringStage {
    replica: Replica<ScorerMsg>,
    what: &'static str,
    next: Option<&'static str>,
    record: fn(&mut ProducerTimes, f64),
}

impl ScoringStage {
    fn reference(replica: Replica<ScorerMsg>) -> ScoringStage {
        ScoringStage {
            replica,
            what: "reference policy",
            next: Some("reward"),
            record: |t, s| t.reference += s,
        }
    }

    async fn serve(self, input: WorkQueue<Part>, output: mpsc::Sender<Part>) -> anyhow::Result<()> {
        let Replica { name, actor } = &self.replica;
        // "reward actor", or "reward actor reward.1" among several.
        let label = match name.contains('.') {
            true => format!("{} {name}", self.what),
            false => self.what.to_string(),
        };
        while let Some(mut part) = input.next().await {
            let t = Instant::now();
            let rollout = part.rollout.shallow_clone();
            let scored = ask(actor, &label, |r| ScorerMsg::Score(rollout, r))
                .await
                .context(label.clone());
            part.rollout = match scored {
                Ok(rollout) => rollout,
                Err(e) => return input.lost(name, part.batch, part.index, part, e),
            };
            (self.record)(&mut part.times, t.elapsed().as_secs_f64());
            input.done();
            if output.send(part).await.is_err() {
                break;
            }
            if let Some(next) = self.next {
                metrics::waiting(next, &output);
            }
        }
        Ok(())
    }
}
