//! The producer's stages stream: the generator samples the next batch while the reference
//! policy is still scoring the one before, and batches reach the queue in order.

use super::produce::Producer;
use super::tests::stage;
use crate::system::generator::GeneratorMsg;
use crate::system::scorers::ScorerMsg;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::rollout::RolloutBatch;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use tokio::sync::{mpsc, watch, Notify};

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

fn batch(id: u64) -> RolloutBatch {
    let ids = || Tensor::ones([2, 3], (Kind::Int64, Device::Cpu));
    RolloutBatch {
        id,
        policy_version: 0,
        prompt_ids: ids(),
        prompt_mask: ids(),
        response_ids: ids(),
        response_mask: Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
        behaviour_logprobs: Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
        ended_with_eos: Tensor::from_slice(&[true, true]),
        ref_logprobs: None,
        scores: None,
        monitor_scores: None,
    }
}

/// Answers batch after batch at once, logging each request.
struct FakeGenerator;

impl Actor for FakeGenerator {
    type Msg = GeneratorMsg;
    type State = (Log, u64);
    type Arguments = Log;

    async fn pre_start(
        &self,
        _: ActorRef<GeneratorMsg>,
        log: Log,
    ) -> Result<(Log, u64), ActorProcessingErr> {
        Ok((log, 0))
    }

    async fn handle(
        &self,
        _: ActorRef<GeneratorMsg>,
        msg: GeneratorMsg,
        (log, next): &mut (Log, u64),
    ) -> Result<(), ActorProcessingErr> {
        if let GeneratorMsg::Generate(_, _, reply) = msg {
            log.push(format!("generate {next}"));
            let _ = reply.send(Ok(batch(*next)));
            *next += 1;
        }
        Ok(())
    }
}

/// Scores batches, logging each; the reference holds batch 0 until batch 1 is generated.
struct FakeScorer;

impl Actor for FakeScorer {
    type Msg = ScorerMsg;
    type State = (&'static str, Log);
    type Arguments = (&'static str, Log);

    async fn pre_start(
        &self,
        _: ActorRef<ScorerMsg>,
        args: (&'static str, Log),
    ) -> Result<(&'static str, Log), ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<ScorerMsg>,
        ScorerMsg::Score(mut batch, reply): ScorerMsg,
        (name, log): &mut (&'static str, Log),
    ) -> Result<(), ActorProcessingErr> {
        if *name == "reference" && batch.id == 0 && !log.wait_for("generate 1").await {
            let _ = reply.send(Err(anyhow::anyhow!(
                "batch 1 was not generated while the reference scored batch 0"
            )));
            return Ok(());
        }
        log.push(format!("{name} {}", batch.id));
        batch.scores = Some(Tensor::zeros([2], (Kind::Float, Device::Cpu)));
        let _ = reply.send(Ok(batch));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_samples_while_earlier_batches_are_scored() {
    let log = Log::default();
    let (generator, _) = Actor::spawn(None, FakeGenerator, log.clone())
        .await
        .unwrap();
    let (reference, _) = Actor::spawn(None, FakeScorer, ("reference", log.clone()))
        .await
        .unwrap();
    let (reward, _) = Actor::spawn(None, FakeScorer, ("reward", log.clone()))
        .await
        .unwrap();
    let mut stage = stage();
    stage.steps = 3;
    stage.max_staleness = 1;
    stage.rollout_batch_size = 2;
    stage.algo.samples_per_prompt = 1;
    let producer = Producer {
        name: "stream-test".into(),
        generator: generator.clone(),
        reference: reference.clone(),
        reward: reward.clone(),
        prompts: vec![vec![1, 2], vec![3]],
        stage,
        seed: 5,
    };
    let (queue, mut inbox) = mpsc::channel(1);
    let (synced, synced_rx) = watch::channel(0u64);
    let running = tokio::spawn(producer.run(0, queue, synced_rx));
    // The learner's side: take each batch, then report its step done.
    let mut ids = Vec::new();
    while let Some(produced) = inbox.recv().await {
        ids.push(produced.batch.id);
        let _ = synced.send(ids.len() as u64);
    }
    running.await.unwrap().unwrap();
    assert_eq!(ids, [0, 1, 2]);
    let events = log.events();
    let at = |e: &str| events.iter().position(|x| x == e).unwrap();
    assert!(at("generate 1") < at("reference 0"), "{events:?}");
    assert!(at("reward 0") < at("reward 1"), "{events:?}");
    for actor in [
        generator.get_cell(),
        reference.get_cell(),
        reward.get_cell(),
    ] {
        actor.stop(None);
    }
}
