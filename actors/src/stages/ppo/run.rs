//! One PPO run on started actors: the producer and the consumer side by side, over a
//! queue as deep as the staleness bound allows.

use super::actors::Actors;
use super::checkpoint::Resumed;
use super::consume::Consumer;
use super::produce::{Produced, Producer};
use super::weights::{Published, WeightBoard};
use crate::stages::run_dir::RunDir;
use anyhow::anyhow;
use rlhf::checkpoint::Checkpoints;
use rlhf::config::PpoStage;
use rlhf::data::SftSequence;
use tokio::sync::mpsc;

/// One PPO run: its name (the `stage` label of its metrics), settings, seed, and the
/// checkpoint it continues from.
pub struct Run<'a> {
    pub name: &'a str,
    pub stage: &'a PpoStage,
    pub seed: u64,
    pub from: Option<Resumed>,
}

/// Run the producer and the consumer until the steps are done, a signal arrives, or an
/// actor fails. Returns the steps completed (counting those before a resume).
pub async fn pipeline(
    run: Run<'_>,
    actors: &Actors,
    prompts: Vec<Vec<i64>>,
    ptx: Option<&[SftSequence]>,
    dir: &mut RunDir,
) -> anyhow::Result<u64> {
    let Run {
        name,
        stage,
        seed,
        from,
    } = run;
    let (from, inflight) = match from {
        Some(r) => (Some(r.cursor), r.inflight),
        None => (None, Vec::new()),
    };
    let start = from.map_or(0, |c| c.step);
    let (queue, mut inbox) = mpsc::channel::<Produced>(stage.max_staleness.max(1) as usize);
    // The weights the generators sample with: the initial policy, or a resumed run's.
    let board = WeightBoard::new(
        start,
        match from {
            Some(_) => actors.weights().await?.0,
            None => Published::initial(),
        },
    );
    let producer = Producer::new(name, actors, prompts, stage, seed);
    // The checkpoint's in-flight batches come first; the producer goes on after them.
    let first = start + inflight.len() as u64;
    let producer = tokio::spawn(producer.run(first, queue, board.clone()));
    let consumer = Consumer {
        name,
        stage,
        pad_id: actors.pad_id,
        ptx,
        seed,
        from,
        states: Checkpoints::new(dir.path("state"), stage.keep_checkpoints),
    };
    let consuming = consumer.run(
        actors,
        (inflight.into(), &mut inbox),
        &board,
        dir,
        crate::system::shutdown::listen(),
    );
    // An actor that dies ends the run at once, whatever the loops were waiting for.
    let consumed = tokio::select! {
        consumed = consuming => consumed,
        failure = actors.supervised.failure() => Err(anyhow!(failure)),
    };
    // The producer either finished, or waits on a queue or a version nobody will send.
    producer.abort();
    let produced = match producer.await {
        Ok(result) => result,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(anyhow!("the rollout producer panicked: {e}")),
    };
    // A producer failure shows on the consumer's side only as a closed queue: report it.
    produced.and(consumed)
}
