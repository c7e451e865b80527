//! The node's side: a generator or a reference policy serving the trainer's chunks on a
//! worker thread, its weights assembled from the parts the trainer sends.

use super::wire::{self, Answer, PolicyNodeMsg, Request, Setup, TensorMeta};
use crate::system::cluster::join::{serve_in_group, Session};
use crate::system::generator::Sampler;
use crate::system::scorers::Reference;
use crate::system::worker::Worker;
use anyhow::{anyhow, bail, ensure};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::model::Model;
use tracing::{debug, warn};

/// The actor a policy node hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Generator,
    Reference,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Generator => "generator",
            Role::Reference => "reference",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Role::Generator => wire::GENERATOR_GROUP,
            Role::Reference => wire::REFERENCE_GROUP,
        }
    }
}

/// Serve `role` with the policy `load` builds (on the node's thread, with `threads` libtorch
/// threads) to the trainer of `session`; see [`serve_in_group`].
pub async fn serve(
    role: Role,
    load: Box<dyn FnOnce() -> anyhow::Result<Model> + Send>,
    threads: i32,
    session: Session<'_>,
) -> anyhow::Result<()> {
    let (actor, _) = Actor::spawn(None, PolicyNode, (role, load, threads))
        .await
        .map_err(crate::system::worker::spawn_error)?;
    let what = format!("the {} policy", role.name());
    serve_in_group(actor, role.group(), &what, session).await
}

/// What the node's thread holds: the policy, until the trainer's setup turns it into the
/// role's engine.
enum Engine {
    /// Taken by the setup.
    Loaded(Option<Model>),
    Generator(Sampler),
    Reference(Reference),
}

/// Weights arriving part by part.
struct Pending {
    version: u64,
    next: u32,
    tensors: Vec<TensorMeta>,
    bytes: Vec<u8>,
}

struct PolicyNode;

struct PolicyNodeState {
    role: Role,
    worker: Worker<Engine>,
    pad_id: i64,
    pending: Option<Pending>,
}

type Args = (Role, Box<dyn FnOnce() -> anyhow::Result<Model> + Send>, i32);

impl Actor for PolicyNode {
    type Msg = PolicyNodeMsg;
    type State = PolicyNodeState;
    type Arguments = Args;

    async fn pre_start(
        &self,
        _: ActorRef<PolicyNodeMsg>,
        (role, load, threads): Args,
    ) -> Result<PolicyNodeState, ActorProcessingErr> {
        let worker = Worker::spawn(role.name(), threads, move || {
            Ok(Engine::Loaded(Some(load()?)))
        })
        .await?;
        Ok(PolicyNodeState {
            role,
            worker,
            pad_id: 0,
            pending: None,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<PolicyNodeMsg>,
        msg: PolicyNodeMsg,
        state: &mut PolicyNodeState,
    ) -> Result<(), ActorProcessingErr> {
        let PolicyNodeMsg::Call(bytes, reply) = msg;
        let (answer, raw) = match state.answer(&bytes).await {
            Ok(answer) => answer,
            Err(e) => {
                warn!("{e:#}");
                (Answer::Failed(format!("{e:#}")), Vec::new())
            }
        };
        // A trainer that stopped waiting has closed the port: nothing to do.
        let _ = reply.send(wire::frame(&answer, &raw)?);
        Ok(())
    }
}

impl PolicyNodeState {
    async fn answer(&mut self, bytes: &[u8]) -> anyhow::Result<(Answer, Vec<u8>)> {
        let (request, raw): (Request, &[u8]) = wire::unframe(bytes, "the trainer")?;
        match request {
            Request::Setup(setup) => {
                self.pad_id = setup.options.pad_token_id;
                let role = self.role;
                self.worker.call(move |e| e.setup(role, setup)).await?;
                Ok((Answer::Done, Vec::new()))
            }
            Request::Weights {
                version,
                part,
                parts,
                offset,
                tensors,
            } => {
                ensure!(
                    self.role == Role::Generator,
                    "a reference node keeps its weights"
                );
                if let Some(weights) = self.receive(version, part, parts, offset, tensors, raw)? {
                    self.worker
                        .call(move |e| e.sampler()?.set_weights(version, &weights))
                        .await?;
                    debug!(version, "loaded policy weights");
                }
                Ok((Answer::Done, Vec::new()))
            }
            Request::Generate {
                prompts,
                keys,
                batch,
            } => {
                let pad = self.pad_id;
                let rollout = self
                    .worker
                    .call(move |e| e.sampler()?.rollout(&prompts, &keys, batch, pad))
                    .await?;
                let (header, raw) = wire::pack_rollout(&rollout)?;
                Ok((Answer::Rollout(header), raw))
            }
            Request::Reference(header) => {
                let batch = wire::unpack_rollout(&header, raw)?;
                let scored = self
                    .worker
                    .call(move |e| match e {
                        Engine::Reference(r) => Ok(r.add_ref_logprobs(batch)),
                        _ => bail!("this node is not a set-up reference node"),
                    })
                    .await?;
                let (header, raw) = wire::pack_rollout(&scored)?;
                Ok((Answer::Rollout(header), raw))
            }
        }
    }

    /// Part `part` of `parts` into the pending weights; all of them once the last arrived.
    fn receive(
        &mut self,
        version: u64,
        part: u32,
        parts: u32,
        offset: u64,
        tensors: Vec<TensorMeta>,
        raw: &[u8],
    ) -> anyhow::Result<Option<Vec<(String, tch::Tensor)>>> {
        if part == 0 {
            let total = tensors
                .iter()
                .map(TensorMeta::bytes)
                .sum::<anyhow::Result<usize>>()?;
            self.pending = Some(Pending {
                version,
                next: 0,
                tensors,
                bytes: vec![0; total],
            });
        }
        let pending = self
            .pending
            .as_mut()
            .ok_or_else(|| anyhow!("weights part {part} of version {version} without part 0"))?;
        ensure!(
            pending.version == version && pending.next == part,
            "weights part {part} of version {version}, expected part {} of version {}",
            pending.next,
            pending.version
        );
        let range = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(raw.len())?))
            .filter(|range| range.end <= pending.bytes.len());
        let range = range.ok_or_else(|| anyhow!("weights part {part} runs past the weights"))?;
        pending.bytes[range].copy_from_slice(raw);
        pending.next += 1;
        if pending.next < parts {
            return Ok(None);
        }
        let done = self.pending.take().expect("present");
        Ok(Some(wire::unpack(&done.tensors, &done.bytes)?))
    }
}

impl Engine {
    fn setup(&mut self, role: Role, setup: Setup) -> anyhow::Result<()> {
        let Engine::Loaded(slot @ Some(_)) = self else {
            bail!("the node was set up already");
        };
        let model = slot.take().expect("matched");
        *self = match role {
            Role::Generator => Engine::Generator(Sampler::new(model, setup.options, setup.seed)),
            Role::Reference => Engine::Reference(Reference {
                model,
                sampling: setup.options.sampling,
            }),
        };
        Ok(())
    }

    fn sampler(&mut self) -> anyhow::Result<&mut Sampler> {
        match self {
            Engine::Generator(sampler) => Ok(sampler),
            _ => bail!("this node is not a set-up generator node"),
        }
    }
}
