//! The producer's stages stream: the generator samples the next batch while the reference
//! policy is still scoring the one before, batches reach the queue in order, and chunks
//! done by several replicas out of order are gathered in order.

use super::produce::Producer;
use super::replica::Replica;
use super::tests::stage;
use super::weights::{Published, WeightBoard};
use crate::system::generator::GeneratorMsg;
use crate::system::scorers::ScorerMsg;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::config::PpoStage;
use rlhf::rollout::RolloutBatch;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use tokio::sync::{mpsc, Notify};

/// What the fake actors did, in order, and a bell rung at each entry.
#[derive(Clone, Default)]
struct Log(Arc<(Mutex<Vec<String>>, Notify)>);

impl Log {
    fn push(&self, event: String) {
        self.0 .0.lock().unwrap().push(event);
        self.0 .1.notify_waiters();
    }

    fn events(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    /// Wait until `event` has happened; false after 30 s (a producer that does not
    /// stream never lets it happen).
    async fn wait_for(&self, event: &str) -> bool {
        let seen = async {
            loop {
                let bell = self.0 .1.notified();
                if self.events().iter().any(|e| e == event) {
                    return;
                }
                bell.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), seen)
            .await
            .is_ok()
    }
}

/// A batch `id` of one row per episode key, each row's response ids its prompt index.
fn batch(id: u64, version: u64, prompts: &[u64]) -> RolloutBatch {
    let rows = prompts.len() as i64;
    let ids = || Tensor::ones([rows, 3], (Kind::Int64, Device::Cpu));
    let keys: Vec<i64> = prompts.iter().map(|&p| p as i64).collect();
    RolloutBatch {
        id,
        policy_version: version,
        prompt_ids: ids(),
        prompt_mask: ids(),
        response_ids: Tensor::from_slice(&keys).view([rows, 1]).repeat([1, 3]),
        response_mask: Tensor::ones([rows, 3], (Kind::Float, Device::Cpu)),
        behaviour_logprobs: Tensor::zeros([rows, 3], (Kind::Float, Device::Cpu)),
        ended_with_eos: Tensor::ones([rows], (Kind::Bool, Device::Cpu)),
        ref_logprobs: None,
        scores: None,
        monitor_scores: None,
    }
}

/// Answers each chunk (after `delay`), logging it and the weights it loads.
struct FakeGenerator;

/// A fake generator's log, name, delay per chunk, and the version it holds.
type FakeState = (Log, &'static str, Duration, u64);

impl Actor for FakeGenerator {
    type Msg = GeneratorMsg;
    type State = FakeState;
    type Arguments = (Log, &'static str, Duration);

    async fn pre_start(
        &self,
        _: ActorRef<GeneratorMsg>,
        (log, name, delay): (Log, &'static str, Duration),
    ) -> Result<FakeState, ActorProcessingErr> {
        Ok((log, name, delay, 0))
    }

    async fn handle(
        &self,
        _: ActorRef<GeneratorMsg>,
        msg: GeneratorMsg,
        (log, name, delay, version): &mut FakeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GeneratorMsg::Generate(_, keys, id, reply) => {
                tokio::time::sleep(*delay).await;
                let first = keys[0].prompt;
                log.push(format!("{name} generate {id}.{first}"));
                log.push(format!("generate {id}"));
                let prompts: Vec<u64> = keys.iter().map(|k| k.prompt).collect();
                let _ = reply.send(Ok(batch(id, *version, &prompts)));
            }
            GeneratorMsg::SetWeights(v, _, reply) => {
                log.push(format!("{name} weights {v}"));
                *version = v;
                let _ = reply.send(Ok(0));
            }
        }
        Ok(())
    }
}

/// Scores batches, logging each; with `hold`, holds batch 0 until batch 1 is generated.
struct FakeScorer;

/// A fake scorer's name, log, and whether it holds batch 0.
type ScorerState = (&'static str, Log, bool);

impl Actor for FakeScorer {
    type Msg = ScorerMsg;
    type State = ScorerState;
    type Arguments = ScorerState;

    async fn pre_start(
        &self,
        _: ActorRef<ScorerMsg>,
        args: ScorerState,
    ) -> Result<ScorerState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<ScorerMsg>,
        ScorerMsg::Score(mut batch, reply): ScorerMsg,
        (name, log, hold): &mut ScorerState,
    ) -> Result<(), ActorProcessingErr> {
        if *hold && batch.id == 0 && !log.wait_for("generate 1").await {
            let _ = reply.send(Err(anyhow::anyhow!(
                "batch 1 was not generated while the reference scored batch 0"
            )));
            return Ok(());
        }
        log.push(format!("{name} {}", batch.id));
        batch.scores = Some(Tensor::zeros([batch.len()], (Kind::Float, Device::Cpu)));
        let _ = reply.send(Ok(batch));
        Ok(())
    }
}

async fn spawn_replica<A: Actor>(
    name: &'static str,
    actor: A,
    args: A::Arguments,
) -> Replica<A::Msg> {
    let (actor, _) = Actor::spawn(None, actor, args).await.unwrap();
    Replica { name, actor }
}

/// Run a producer over fake actors as a learner would: take each batch, then publish the
/// weights of its step (version = step). Returns each batch's id, version and response
/// rows' prompt indices.
async fn produce(producer: Producer) -> Vec<(u64, u64, Vec<i64>)> {
    let (queue, mut inbox) = mpsc::channel(1);
    let board = WeightBoard::new(0, Published::initial());
    let running = tokio::spawn(producer.run(0, queue, board.clone()));
    let mut seen = Vec::new();
    while let Some(produced) = inbox.recv().await {
        let b = &produced.batch;
        let rows = Vec::<i64>::try_from(b.response_ids.select(1, 0)).unwrap();
        seen.push((b.id, b.policy_version, rows));
        let step = seen.len() as u64;
        board.publish(step, Published::new(step, Vec::new()));
    }
    running.await.unwrap().unwrap();
    seen
}

/// A producer named `name` over fake `generators` and a fake reference (holding batch 0
/// until batch 1 is generated when `hold`) and reward, all logging to `log`, on `prompts`.
async fn fake_producer(
    name: &str,
    generators: Vec<Replica<GeneratorMsg>>,
    (log, hold): (&Log, bool),
    stage: PpoStage,
    prompts: Vec<Vec<i64>>,
) -> Producer {
    let reference = spawn_replica("reference", FakeScorer, ("reference", log.clone(), hold)).await;
    let reward = spawn_replica("reward", FakeScorer, ("reward", log.clone(), false)).await;
    Producer {
        name: name.into(),
        generators,
        references: vec![reference],
        rewards: vec![reward],
        prompts,
        stage,
        seed: 5,
        pad_id: 0,
        nodes: None,
    }
}

/// Stop every actor of a producer made by [`fake_producer`].
fn stop_all(cells: Vec<ractor::ActorCell>) {
    for cell in cells {
        cell.stop(None);
    }
}

fn cells(producer: &Producer) -> Vec<ractor::ActorCell> {
    let generators = producer.generators.iter().map(|r| r.actor.get_cell());
    let scorers = producer.references.iter().chain(&producer.rewards);
    generators
        .chain(scorers.map(|r| r.actor.get_cell()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_samples_while_earlier_batches_are_scored() {
    let log = Log::default();
    let generator = spawn_replica(
        "generator",
        FakeGenerator,
        (log.clone(), "generator", Duration::ZERO),
    )
    .await;
    let mut stage = stage();
    stage.steps = 3;
    stage.max_staleness = 1;
    stage.rollout_batch_size = 2;
    stage.algo.samples_per_prompt = 1;
    let prompts = vec![vec![1, 2], vec![3]];
    let producer =
        fake_producer("stream-test", vec![generator], (&log, true), stage, prompts).await;
    let actors = cells(&producer);
    let seen = produce(producer).await;
    // Batch k is sampled with the weights after step k - 1 (the initial ones for 0 and 1).
    let versions: Vec<(u64, u64)> = seen.iter().map(|(id, v, _)| (*id, *v)).collect();
    assert_eq!(versions, [(0, 0), (1, 0), (2, 1)]);
    let events = log.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(at("generate 1") < at("reference 0"), "{events:?}");
    assert!(at("reward 0") < at("reward 1"), "{events:?}");
    assert!(at("generator weights 1") < at("generate 2"), "{events:?}");
    stop_all(actors);
}

/// Two generator replicas, the first slow: the second does the later chunks first, and
/// each batch is still gathered in chunk order with every replica on its weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_done_out_of_order_are_gathered_in_order() {
    let log = Log::default();
    let mut generators = Vec::new();
    for (name, delay) in [("generator.0", 300), ("generator.1", 0)] {
        let args = (log.clone(), name, Duration::from_millis(delay));
        generators.push(spawn_replica(name, FakeGenerator, args).await);
    }
    let mut stage = stage();
    stage.steps = 3;
    stage.max_staleness = 0;
    stage.rollout_batch_size = 6;
    stage.algo.samples_per_prompt = 1;
    stage.rollout_chunks = Some(3);
    let prompts = (0..6).map(|i| vec![i + 1]).collect();
    let producer = fake_producer("gather-test", generators, (&log, false), stage, prompts).await;
    let actors = cells(&producer);
    let seen = produce(producer).await;
    for (k, (id, version, rows)) in seen.iter().enumerate() {
        let k = k as u64;
        assert_eq!(
            (*id, *version),
            (k, k),
            "max_staleness 0: batch k on step k's weights"
        );
        let first = 6 * k as i64;
        assert_eq!(*rows, (first..first + 6).collect::<Vec<_>>(), "batch {k}");
    }
    // Whichever replica took batch 0's first chunk, the fast one ended a later chunk
    // before the slow one ended its own.
    let ended: Vec<String> = log
        .events()
        .into_iter()
        .filter(|e| e.starts_with("generator.") && e.contains(" generate 0."))
        .map(|e| e.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(ended.len(), 3, "{ended:?}");
    assert!(ended.windows(2).any(|w| w[0] > w[1]), "in order: {ended:?}");
    stop_all(actors);
}
