//! The reward node: the actor the trainer calls, its reward on a worker thread.

use super::wire::{self, RewardNodeMsg};
use crate::system::cluster::join::{serve_in_group, Session};
use crate::system::reward::contract::Reward;
use crate::system::worker::Worker;
use anyhow::anyhow;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::time::Instant;
use tracing::{debug, warn};

/// Serve `reward` (its tensor work on `threads` libtorch threads) to the trainer of
/// `session`; see [`serve_in_group`].
pub async fn serve(
    reward: Box<dyn Reward>,
    threads: i32,
    session: Session<'_>,
) -> anyhow::Result<()> {
    let what = reward.name();
    let (actor, _) = Actor::spawn(None, RewardNode, (reward, threads))
        .await
        .map_err(|e| anyhow!("starting the reward actor: {e}"))?;
    serve_in_group(actor, wire::GROUP, &what, session).await
}

/// The actor the trainer calls; the reward itself runs on the worker's thread.
struct RewardNode;

struct RewardNodeState {
    worker: Worker<Box<dyn Reward>>,
}

impl Actor for RewardNode {
    type Msg = RewardNodeMsg;
    type State = RewardNodeState;
    type Arguments = (Box<dyn Reward>, i32);

    async fn pre_start(
        &self,
        _: ActorRef<RewardNodeMsg>,
        (reward, threads): (Box<dyn Reward>, i32),
    ) -> Result<RewardNodeState, ActorProcessingErr> {
        let worker = Worker::spawn("reward", threads, move || Ok(reward)).await?;
        Ok(RewardNodeState { worker })
    }

    async fn handle(
        &self,
        _: ActorRef<RewardNodeMsg>,
        msg: RewardNodeMsg,
        state: &mut RewardNodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RewardNodeMsg::Score(bytes, reply) => {
                let answer = answer(&state.worker, &bytes).await;
                // A trainer that stopped waiting has closed the port: nothing to do.
                let _ = reply.send(wire::encode_reply(&answer)?);
            }
        }
        Ok(())
    }
}

/// The scores for one encoded request, or the error the trainer will report.
async fn answer(worker: &Worker<Box<dyn Reward>>, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let request = wire::decode_request(bytes).map_err(|e| format!("{e:#}"))?;
    let (batch, rows) = (request.batch_id, request.len());
    let started = Instant::now();
    let scores = worker.call(move |reward| reward.score(&request)).await;
    match &scores {
        Ok(_) => debug!(
            batch,
            rows,
            seconds = started.elapsed().as_secs_f64(),
            "scored a rollout batch"
        ),
        Err(e) => warn!("rollout batch {batch}: {e:#}"),
    }
    scores.map_err(|e| format!("{e:#}"))
}
