//! The four actors of a PPO run (generator, reference policy, reward, learner), where
//! their models come from, and how they start.

use super::nodes::Nodes;
use super::replica::{replica_name, Replica};
use super::weights::Published;
use crate::system::generator::{Generator, GeneratorArgs, GeneratorMsg, Sampler};
use crate::system::learner::{ask_common, Common, LearnerArgs, PpoEngine, PpoLearnerActor, PpoMsg};
use crate::system::policy_node::link::Cluster;
use crate::system::policy_node::node::Role;
use crate::system::policy_node::proxy::{RemoteGenerator, RemoteReference};
use crate::system::policy_node::wire::Setup;
use crate::system::reward::{BuildContext, Decoder, LoadModel};
use crate::system::scorers::{
    reference_apply, reward_apply, Reference, RewardEngine, Scorer, ScorerArgs, ScorerMsg,
};
use crate::system::supervisor::Supervised;
use anyhow::Context;
use ractor::ActorRef;
use rlhf::config::{PpoStage, RewardConfig};
use rlhf::device::parse_device;
use rlhf::generate::GenerateOptions;
use rlhf::model::{Head, Model};
use rlhf::ppo::learner::PpoLearner;
use rlhf::rng::Rng;
use std::collections::hash_map::{Entry, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The learner's minibatch random stream, derived from the run's seed.
pub const LEARNER_STREAM: u64 = 0x1ea;

pub struct Actors {
    pub generators: Vec<Replica<GeneratorMsg>>,
    pub references: Vec<Replica<ScorerMsg>>,
    pub rewards: Vec<Replica<ScorerMsg>>,
    pub learner: ActorRef<PpoMsg>,
    pub pad_id: i64,
    /// Every actor above is linked to it.
    pub supervised: Arc<Supervised>,
    /// Where the replicas on nodes joined (and later ones join); dropping it ends their
    /// sessions.
    pub nodes: Option<Nodes>,
}

impl Actors {
    /// The learner's newest weights, and the seconds it took to get them.
    pub async fn weights(&self) -> anyhow::Result<(Published, f64)> {
        let fetch = Instant::now();
        let (version, weights) = ask_common(&self.learner, Common::Weights)
            .await
            .context("learner")?;
        let published = Published::new(version, weights);
        Ok((published, fetch.elapsed().as_secs_f64()))
    }

    pub fn stop(&self) {
        self.supervised.stopping();
        for g in &self.generators {
            g.actor.stop(None);
        }
        for s in self.references.iter().chain(&self.rewards) {
            s.actor.stop(None);
        }
        self.learner.stop(None);
        if let Some(nodes) = &self.nodes {
            nodes.close();
        }
    }
}

/// What the actors need to know about tokens: the EOS ids a response stops at (none:
/// always generate max_new_tokens), padding, and how the reward actor turns rollouts into
/// text.
#[derive(Clone)]
pub struct Tokens {
    pub eos: Vec<i64>,
    pub pad: i64,
    pub decoder: Decoder,
}

/// Builds the reward actor's engine on a device.
pub type BuildScorers = Arc<dyn Fn(&str) -> anyhow::Result<RewardEngine> + Send + Sync>;

/// Where the actors' models come from, given a device: the policy (LM head), the reward
/// model (scalar head; it also initialises the value model) and the reward actor's scorers
/// (by default the reward model itself). Folders for runs, in-memory random models for
/// benchmarks.
pub struct ModelSource {
    pub policy: LoadModel,
    pub reward: LoadModel,
    pub scorers: BuildScorers,
}

impl ModelSource {
    /// The reward is `reward` (the config's `[ppo.reward]`), built on the reward actor's
    /// thread; its `kind = "model"` is the `reward` model.
    pub fn new(policy: LoadModel, reward_model: LoadModel, reward: RewardConfig) -> ModelSource {
        // The reward actor scores with the reward model as trained: adapters off (a LoRA
        // run's value model trains adapters on the same base).
        let frozen = reward_model.clone();
        let context = BuildContext {
            model: Arc::new(move |device: &str| {
                let model = frozen(device)?;
                model.set_adapters(false);
                Ok(model)
            }),
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        let scorers: BuildScorers = Arc::new(move |device: &str| {
            Ok(RewardEngine {
                reward: crate::system::reward::build(&reward, device, &context)?,
                monitor: None,
                decoder: Decoder::ids_only(),
            })
        });
        ModelSource {
            policy,
            reward: reward_model,
            scorers,
        }
    }

    /// The stage's folders. With `[ppo.lora]` each folder is loaded once per device and
    /// every actor there gets its own adapters on that one frozen base (see
    /// [`Model::share`]): generators, reference and learner share the policy's weights,
    /// the reward actor and the value model the reward model's.
    pub fn from_folders(stage: &PpoStage) -> ModelSource {
        let (dtype, lora) = (stage.dtype, stage.lora.clone());
        let load = move |path: PathBuf, head: Head| -> LoadModel {
            let lora = lora.clone();
            let build = move |device: &str| -> anyhow::Result<Model> {
                let device = parse_device(device)?;
                Ok(Model::load_with_lora(&path, head, dtype, device, lora.as_ref())?.0)
            };
            match stage.lora.is_some() {
                true => shared_bases(build),
                false => Arc::new(build),
            }
        };
        ModelSource::new(
            load(stage.policy.clone(), Head::LanguageModel),
            load(stage.reward_model.clone(), Head::Scalar),
            stage.reward.clone(),
        )
    }
}

/// A loader that builds one LoRA model per device with `build` and hands out
/// [`Model::share`]s of it: one copy of the frozen base weights per device, adapters of
/// their own for every caller.
pub fn shared_bases(
    build: impl Fn(&str) -> anyhow::Result<Model> + Send + Sync + 'static,
) -> LoadModel {
    let bases: Mutex<HashMap<String, Model>> = Mutex::default();
    Arc::new(move |device: &str| {
        let mut bases = bases.lock().expect("no loader panics holding the lock");
        let base = match bases.entry(device.to_string()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(build(device)?),
        };
        Ok(base.share())
    })
}

/// Start the four actors, each on its configured device and thread budget.
pub async fn spawn(
    stage: &PpoStage,
    tokens: Tokens,
    seed: u64,
    source: &ModelSource,
) -> anyhow::Result<Actors> {
    spawn_with(stage, tokens, seed, source, rlhf::faults::arm_ppo_learner).await
}

/// [`spawn`], with `arm` applied to the new learner: the fault-injection seam, which in a
/// build without the `fault-injection` feature does nothing.
pub(super) async fn spawn_with(
    stage: &PpoStage,
    tokens: Tokens,
    seed: u64,
    source: &ModelSource,
    arm: fn(&mut PpoLearner),
) -> anyhow::Result<Actors> {
    let a = &stage.actors;
    let supervised = Arc::new(Supervised::start().await?);
    let options = GenerateOptions {
        sampling: stage.sampling.clone(),
        max_new_tokens: stage.max_new_tokens,
        eos_token_ids: tokens.eos,
        pad_token_id: tokens.pad,
        static_batch: false,
    };
    let mut generators = Vec::new();
    for i in 0..a.generator.replicas {
        let (policy, options) = (source.policy.clone(), options.clone());
        let device = a.generator.device_of(i).to_string();
        let name = replica_name("generator", i, a.generator.total());
        let args = GeneratorArgs {
            name,
            threads: a.generator.threads,
            pad_id: tokens.pad,
            build: Box::new(move || Ok(Sampler::new(policy(&device)?, options, seed))),
        };
        let actor = supervised.spawn(name, Generator, args).await?;
        generators.push(Replica { name, actor });
    }
    let mut references = Vec::new();
    for i in 0..a.reference.replicas {
        let (policy, sampling) = (source.policy.clone(), stage.sampling.clone());
        let device = a.reference.device_of(i).to_string();
        let name = replica_name("reference", i, a.reference.total());
        let args = ScorerArgs {
            name,
            threads: a.reference.threads,
            build: Box::new(move || {
                let model = policy(&device)?;
                // With LoRA the reference policy is the base: adapters off.
                model.set_adapters(false);
                Ok(Reference { model, sampling })
            }),
            apply: reference_apply,
        };
        let actor = supervised.spawn(name, Scorer::new(), args).await?;
        references.push(Replica { name, actor });
    }
    let nodes = match stage.has_nodes() {
        true => {
            let setup = Setup {
                seed,
                options: options.clone(),
            };
            let cluster = Arc::new(Cluster::start(&stage.cluster).await?);
            let nodes = Nodes::new(cluster, setup, supervised.clone());
            generators.extend(
                nodes
                    .join(Role::Generator, a.generator.nodes, RemoteGenerator)
                    .await?,
            );
            references.extend(
                nodes
                    .join(Role::Reference, a.reference.nodes, RemoteReference)
                    .await?,
            );
            Some(nodes)
        }
        false => None,
    };
    let mut rewards = Vec::new();
    for i in 0..a.reward.replicas {
        let (scorers, decoder) = (source.scorers.clone(), tokens.decoder.clone());
        let device = a.reward.device_of(i).to_string();
        let name = replica_name("reward", i, a.reward.replicas);
        let args = ScorerArgs {
            name,
            threads: a.reward.threads,
            build: Box::new(move || {
                let mut engine = scorers(&device)?;
                engine.decoder = decoder;
                Ok(engine)
            }),
            apply: reward_apply,
        };
        let actor = supervised.spawn(name, Scorer::new(), args).await?;
        rewards.push(Replica { name, actor });
    }
    let (policy, rm, device, s) = (
        source.policy.clone(),
        source.reward.clone(),
        a.learner.device.clone(),
        stage.clone(),
    );
    let learner = supervised
        .spawn(
            "learner",
            PpoLearnerActor,
            LearnerArgs {
                threads: a.learner.threads,
                build: Box::new(move || {
                    // No value model with a group baseline: none is loaded.
                    let value = match s.algo.uses_value_model() {
                        true => Some(rm(&device)?),
                        false => None,
                    };
                    let mut learner = PpoLearner::new(
                        policy(&device)?,
                        value,
                        &s.optimizer,
                        &s.algo,
                        s.sampling.clone(),
                    );
                    learner.set_gradient_checkpointing(s.gradient_checkpointing);
                    arm(&mut learner);
                    Ok(PpoEngine {
                        learner,
                        minibatch_rng: Rng::new(seed ^ LEARNER_STREAM),
                        lr: s.optimizer.lr,
                    })
                }),
            },
        )
        .await?;
    Ok(Actors {
        generators,
        references,
        rewards,
        learner,
        pad_id: tokens.pad,
        supervised,
        nodes,
    })
}
