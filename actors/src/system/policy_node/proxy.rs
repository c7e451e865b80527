//! The trainer's stand-ins for policy nodes: actors that take the local actors' messages
//! ([`GeneratorMsg`], [`ScorerMsg`]) and forward them to a node, so the producer treats a
//! node like any other replica. Weights cross in parts of `weight_chunk_mib`, in
//! `weights_dtype`.

use super::link::NodeLink;
use super::wire::{self, Answer, Request, Setup};
use crate::system::generator::GeneratorMsg;
use crate::system::scorers::ScorerMsg;
use crate::system::telemetry;
use anyhow::bail;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::metric_names::{ERRORS, POLICY_VERSION, RESTARTS};
use rlhf::rollout::RolloutBatch;
use tch::{Kind, Tensor};

/// What a proxy needs: its replica name, its node, the node's setup, and how weights
/// travel.
pub struct ProxyArgs {
    pub name: &'static str,
    pub link: NodeLink,
    pub setup: Setup,
    pub weights_kind: Kind,
    pub weight_chunk_bytes: usize,
}

pub struct ProxyState {
    args: ProxyArgs,
}

async fn set_up(args: ProxyArgs) -> anyhow::Result<ProxyState> {
    args.link
        .call(wire::frame(&Request::Setup(args.setup.clone()), &[])?)
        .await?;
    // Present from the start, as a local actor's are.
    telemetry::add(&ERRORS, args.name, 0);
    telemetry::add(&RESTARTS, args.name, 0);
    telemetry::set(&POLICY_VERSION, args.name, 0.0);
    Ok(ProxyState { args })
}

impl ProxyState {
    /// The rollout the node sends back for `request` (with `raw` after it).
    async fn rollout(&self, request: Request, raw: &[u8]) -> anyhow::Result<RolloutBatch> {
        let answer = self.args.link.call(wire::frame(&request, raw)?).await;
        let (answer, raw) = match answer {
            Ok(answer) => answer,
            Err(e) => {
                telemetry::add(&ERRORS, self.args.name, 1);
                return Err(e);
            }
        };
        let Answer::Rollout(header) = answer else {
            bail!(
                "node {}: answered {answer:?} to a rollout",
                self.args.link.label
            );
        };
        let batch = wire::unpack_rollout(&header, &raw)?;
        telemetry::processed(self.args.name, batch.len());
        Ok(batch)
    }

    /// Send policy `version` in parts; the bytes sent.
    async fn send_weights(
        &self,
        version: u64,
        weights: Vec<(String, Tensor)>,
    ) -> anyhow::Result<u64> {
        let kind = self.args.weights_kind;
        let (metas, bytes) = tokio::task::spawn_blocking(move || {
            let converted: Vec<(String, Tensor)> = weights
                .into_iter()
                .map(|(name, t)| match t.kind() {
                    Kind::Float | Kind::BFloat16 | Kind::Half => (name, t.to_kind(kind)),
                    _ => (name, t),
                })
                .collect();
            wire::pack(&converted)
        })
        .await??;
        let size = self.args.weight_chunk_bytes;
        let parts = bytes.len().div_ceil(size).max(1) as u32;
        let mut metas = Some(metas);
        for part in 0..parts {
            let start = part as usize * size;
            let slice = &bytes[start..(start + size).min(bytes.len())];
            let request = Request::Weights {
                version,
                part,
                parts,
                offset: start as u64,
                tensors: metas.take().unwrap_or_default(),
            };
            if let Err(e) = self.args.link.call(wire::frame(&request, slice)?).await {
                telemetry::add(&ERRORS, self.args.name, 1);
                return Err(e);
            }
        }
        telemetry::set(&POLICY_VERSION, self.args.name, version as f64);
        Ok(bytes.len() as u64)
    }
}

/// A generator replica on a node.
#[derive(Clone)]
pub struct RemoteGenerator;

impl Actor for RemoteGenerator {
    type Msg = GeneratorMsg;
    type State = ProxyState;
    type Arguments = ProxyArgs;

    async fn pre_start(
        &self,
        _: ActorRef<GeneratorMsg>,
        args: ProxyArgs,
    ) -> Result<ProxyState, ActorProcessingErr> {
        Ok(set_up(args).await?)
    }

    async fn handle(
        &self,
        _: ActorRef<GeneratorMsg>,
        msg: GeneratorMsg,
        state: &mut ProxyState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            GeneratorMsg::Generate(prompts, keys, batch, reply) => {
                let request = Request::Generate {
                    prompts,
                    keys,
                    batch,
                };
                let _ = reply.send(state.rollout(request, &[]).await);
            }
            GeneratorMsg::SetWeights(version, weights, reply) => {
                let _ = reply.send(state.send_weights(version, weights).await);
            }
        }
        Ok(())
    }
}

/// A reference-policy replica on a node.
#[derive(Clone)]
pub struct RemoteReference;

impl Actor for RemoteReference {
    type Msg = ScorerMsg;
    type State = ProxyState;
    type Arguments = ProxyArgs;

    async fn pre_start(
        &self,
        _: ActorRef<ScorerMsg>,
        args: ProxyArgs,
    ) -> Result<ProxyState, ActorProcessingErr> {
        Ok(set_up(args).await?)
    }

    async fn handle(
        &self,
        _: ActorRef<ScorerMsg>,
        msg: ScorerMsg,
        state: &mut ProxyState,
    ) -> Result<(), ActorProcessingErr> {
        let ScorerMsg::Score(batch, reply) = msg;
        // Packed before any wait: a batch's tensors may not be held across one.
        let packed = wire::pack_rollout(&batch);
        drop(batch);
        let result = match packed {
            Ok((header, raw)) => state.rollout(Request::Reference(header), &raw).await,
            Err(e) => Err(e),
        };
        let _ = reply.send(result);
        Ok(())
    }
}
