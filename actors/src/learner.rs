//! The learner actor: owns the trainable model(s) and optimizer(s) on a dedicated thread
//! and is the only place weights change. Its engine is a supervised `Trainer` (SFT, RM)
//! or a `PpoLearner` (policy and value model); both hand out weights the same way.

use crate::telemetry;
use crate::worker::Worker;
use anyhow::anyhow;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rlhf::data::SftBatch;
use rlhf::metric_names::POLICY_VERSION;
use rlhf::ppo::learner::{PpoLearner, PpoStats};
use rlhf::rng::Rng;
use rlhf::rollout::RolloutBatch;
use rlhf::train::{Batch, Stats, Trainer};
use std::path::PathBuf;
use tch::Tensor;
use tracing::Instrument;

pub type Reply<T> = RpcReplyPort<anyhow::Result<T>>;

pub enum LearnerMsg {
    /// One optimizer step over the micro-batches of one batch (supervised engine).
    Train(Vec<Batch>, Reply<Stats>),
    /// Loss and figures over held-out batches (supervised engine).
    Evaluate(Vec<Batch>, Reply<Stats>),
    /// One PPO update on a scored rollout batch, with an optional pretraining batch.
    PpoUpdate(RolloutBatch, Option<SftBatch>, Reply<PpoStats>),
    /// Save the model in Hugging Face layout into the folder (PPO: the policy; the value
    /// model goes to `<folder>-value`).
    Save(PathBuf, Reply<()>),
    /// Write the complete training state into a checkpoint folder.
    SaveState(PathBuf, Reply<()>),
    /// Restore what `SaveState` wrote.
    LoadState(PathBuf, Reply<()>),
    /// Copies of the (policy) weights and their version, for the generator.
    Weights(Reply<(u64, Vec<(String, Tensor)>)>),
    /// Shift the scalar head so these (ids, valid) sequences score 0 on average; replies
    /// with their mean score before the shift (supervised engine).
    CenterScores(Vec<(Tensor, Tensor)>, Reply<f64>),
}

// Local only: with ractor's cluster feature on, messages say whether they cross nodes.
impl ractor::Message for LearnerMsg {}

impl LearnerMsg {
    /// The message's kind, for log spans.
    fn name(&self) -> &'static str {
        match self {
            LearnerMsg::Train(..) => "train",
            LearnerMsg::Evaluate(..) => "evaluate",
            LearnerMsg::PpoUpdate(..) => "ppo_update",
            LearnerMsg::Save(..) => "save",
            LearnerMsg::SaveState(..) => "save_state",
            LearnerMsg::LoadState(..) => "load_state",
            LearnerMsg::Weights(..) => "weights",
            LearnerMsg::CenterScores(..) => "center_scores",
        }
    }
}

/// The PPO learner's minibatch rng state in a checkpoint folder.
const RNG_STATE: &str = "learner-rng.txt";

/// What the learner thread owns.
pub enum Engine {
    Supervised(Box<Trainer>),
    /// The PPO learner, the rng that shuffles its minibatches, and its learning rate.
    Ppo(Box<PpoLearner>, Rng, f64),
}

impl Engine {
    fn supervised(&mut self) -> anyhow::Result<&mut Trainer> {
        match self {
            Engine::Supervised(t) => Ok(t),
            Engine::Ppo(..) => Err(anyhow!("the learner runs PPO, not a supervised stage")),
        }
    }

    fn weights(&self) -> (u64, Vec<(String, Tensor)>) {
        let _guard = tch::no_grad_guard();
        match self {
            Engine::Supervised(t) => {
                let vars = t.model().var_store().variables();
                (
                    t.steps(),
                    vars.into_iter()
                        .map(|(n, v)| (n, v.detach().copy()))
                        .collect(),
                )
            }
            Engine::Ppo(p, ..) => (p.version(), p.policy_weights()),
        }
    }

    /// The complete training state into a checkpoint folder: the supervised trainer's, or
    /// the PPO learner's plus its minibatch rng.
    fn save_state(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        match self {
            Engine::Supervised(t) => t.save_state(dir)?,
            Engine::Ppo(p, rng, _) => {
                p.save_state(dir)?;
                std::fs::write(dir.join(RNG_STATE), rng.state().to_string())?;
            }
        }
        Ok(())
    }

    fn load_state(&mut self, dir: &std::path::Path) -> anyhow::Result<()> {
        match self {
            Engine::Supervised(t) => t.load_state(dir)?,
            Engine::Ppo(p, rng, _) => {
                p.load_state(dir)?;
                let path = dir.join(RNG_STATE);
                let text = std::fs::read_to_string(&path)?;
                let state = text
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("{}: not an rng state", path.display()))?;
                *rng = Rng::new(state);
            }
        }
        Ok(())
    }

    fn save(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        match self {
            Engine::Supervised(t) => t.model().save(dir)?,
            Engine::Ppo(p, ..) => {
                p.policy().save(dir)?;
                // The value model beside it, for resuming: `<dir>-value`.
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                p.value()
                    .save(&dir.with_file_name(format!("{name}-value")))?;
            }
        }
        Ok(())
    }
}

/// Empty: the state lives in `LearnerState`.
pub struct Learner;

pub struct LearnerState {
    worker: Worker<Engine>,
    /// Train messages handled (the NaN test hook counts them).
    train_messages: u64,
}

pub struct LearnerArgs {
    /// libtorch intra-op threads for the learner thread.
    pub threads: i32,
    /// Builds the engine on the learner thread (loading the models there).
    pub build: Box<dyn FnOnce() -> anyhow::Result<Engine> + Send>,
}

impl Actor for Learner {
    type Msg = LearnerMsg;
    type State = LearnerState;
    type Arguments = LearnerArgs;

    async fn pre_start(
        &self,
        _: ActorRef<LearnerMsg>,
        args: LearnerArgs,
    ) -> Result<LearnerState, ActorProcessingErr> {
        let worker = Worker::spawn("learner", args.threads, args.build).await?;
        Ok(LearnerState {
            worker,
            train_messages: 0,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<LearnerMsg>,
        msg: LearnerMsg,
        state: &mut LearnerState,
    ) -> Result<(), ActorProcessingErr> {
        let worker = &state.worker;
        let span = tracing::debug_span!(
            "learner",
            actor = "learner",
            message = msg.name(),
            policy_version = tracing::field::Empty,
            batch = tracing::field::Empty,
        );
        match msg {
            LearnerMsg::Train(batches, reply) => {
                let rows: i64 = batches.iter().map(|b| b.rows_and_tokens().0).sum();
                state.train_messages += 1;
                // Test hook: a NaN loss in the N-th training step of this learner.
                let poison = std::env::var("RLHF_NAN_AT_STEP")
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    == Some(state.train_messages);
                let result = worker
                    .call(move |e| {
                        let trainer = e.supervised()?;
                        if poison {
                            trainer.poison_next_step();
                        }
                        Ok(trainer.train_step(&batches)?)
                    })
                    .instrument(span)
                    .await;
                if result.is_ok() {
                    telemetry::processed("learner", rows);
                }
                let _ = reply.send(result);
            }
            LearnerMsg::Evaluate(batches, reply) => {
                let result = worker
                    .call(move |e| Ok(e.supervised()?.evaluate(&batches)))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            LearnerMsg::PpoUpdate(batch, ptx, reply) => {
                span.record("batch", batch.id);
                span.record("policy_version", batch.policy_version);
                let rows = batch.len();
                let result = worker
                    .call(move |e| match e {
                        Engine::Ppo(learner, rng, lr) => {
                            Ok(learner.update(&batch, ptx.as_ref(), rng, *lr)?)
                        }
                        Engine::Supervised(_) => {
                            Err(anyhow!("the learner runs a supervised stage, not PPO"))
                        }
                    })
                    .instrument(span)
                    .await;
                if let Ok(stats) = &result {
                    telemetry::processed("learner", rows);
                    telemetry::set(&POLICY_VERSION, "learner", stats.policy_version as f64);
                }
                let _ = reply.send(result);
            }
            LearnerMsg::Save(dir, reply) => {
                let result = worker.call(move |e| e.save(&dir)).instrument(span).await;
                let _ = reply.send(result);
            }
            LearnerMsg::SaveState(dir, reply) => {
                let result = worker
                    .call(move |e| e.save_state(&dir))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            LearnerMsg::LoadState(dir, reply) => {
                let result = worker
                    .call(move |e| e.load_state(&dir))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            LearnerMsg::Weights(reply) => {
                let _ = reply.send(worker.run(|e| e.weights()).instrument(span).await);
            }
            LearnerMsg::CenterScores(sequences, reply) => {
                let result = worker
                    .call(move |e| {
                        let t = e.supervised()?;
                        let mean = t.mean_score(&sequences);
                        let bias = t.model().score_bias() - mean;
                        t.model_mut().set_score_bias(bias);
                        Ok(mean)
                    })
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::ask;
    use ractor::Actor;
    use rlhf::data::SftBatch;
    use rlhf::device::DType;
    use rlhf::model::{Head, Model};
    use rlhf::optim::OptimizerConfig;
    use rlhf::schedule::ScheduleConfig;
    use std::path::Path;
    use tch::Device;

    fn fixture(head: Head) -> Model {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gpt2-tiny");
        Model::load(&dir, head, DType::F32, Device::Cpu).unwrap().0
    }

    async fn spawn(head: Head) -> ActorRef<LearnerMsg> {
        let build = move || {
            let config = OptimizerConfig {
                lr: 1e-2,
                ..OptimizerConfig::default()
            };
            let trainer = Trainer::new(fixture(head), &config, &ScheduleConfig::default(), 1, 1);
            Ok(Engine::Supervised(Box::new(trainer)))
        };
        let args = LearnerArgs {
            threads: 1,
            build: Box::new(build),
        };
        Actor::spawn(None, Learner, args).await.unwrap().0
    }

    fn sft_batch() -> Batch {
        let input_ids = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10]).view([1, 6]);
        let targets = input_ids.roll([-1], [1]);
        let loss_mask = Tensor::from_slice(&[0f32, 0., 1., 1., 1., 0.]).view([1, 6]);
        let valid = Tensor::ones_like(&input_ids);
        Batch::Sft(SftBatch {
            input_ids,
            valid,
            targets,
            loss_mask,
            tokens: 3,
        })
    }

    #[tokio::test]
    async fn a_train_step_changes_the_weights_it_hands_out_and_bumps_the_version() {
        let learner = spawn(Head::LanguageModel).await;
        let (v0, before) = ask(&learner, LearnerMsg::Weights).await.unwrap();
        let stats = ask(&learner, |r| LearnerMsg::Train(vec![sft_batch()], r))
            .await
            .unwrap();
        assert_eq!(stats.tokens, 3);
        assert!(stats.loss.is_finite() && stats.grad_norm.unwrap() > 0.0);
        let (v1, after) = ask(&learner, LearnerMsg::Weights).await.unwrap();
        assert_eq!((v0, v1), (0, 1));
        let changed = before
            .iter()
            .zip(&after)
            .filter(|((_, a), (_, b))| !a.equal(b))
            .count();
        assert!(changed > 0, "weights did not move");
        learner.stop(None);
    }

    /// The metrics endpoint answers while the learner's thread is busy with a training
    /// step on every core (the bound is generous; the note quotes the measured figure).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_metrics_endpoint_answers_during_a_training_step() {
        use crate::telemetry::tests::{endpoint, scrape};
        let addr = endpoint();
        let build = move || {
            let trainer = Trainer::new(
                fixture(Head::LanguageModel),
                &OptimizerConfig::default(),
                &ScheduleConfig::default(),
                1,
                1,
            );
            Ok(Engine::Supervised(Box::new(trainer)))
        };
        let args = LearnerArgs {
            threads: 2,
            build: Box::new(build),
        };
        let learner = Actor::spawn(None, Learner, args).await.unwrap().0;
        // About a second or more of work in one step: many micro-batches of full rows.
        let input_ids = Tensor::randint(90, [128, 64], (tch::Kind::Int64, Device::Cpu)) + 1;
        let micro = || {
            Batch::Sft(SftBatch {
                targets: input_ids.roll([-1], [1]),
                loss_mask: Tensor::ones([128, 64], (tch::Kind::Float, Device::Cpu)),
                valid: Tensor::ones_like(&input_ids),
                input_ids: input_ids.shallow_clone(),
                tokens: 128 * 64,
            })
        };
        let batches: Vec<Batch> = (0..8).map(|_| micro()).collect();
        let step = {
            let learner = learner.clone();
            tokio::spawn(async move { ask(&learner, |r| LearnerMsg::Train(batches, r)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut during = Vec::new();
        while !step.is_finished() {
            let started = std::time::Instant::now();
            tokio::task::spawn_blocking(move || scrape(addr))
                .await
                .unwrap();
            if !step.is_finished() {
                during.push(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        step.await.unwrap().unwrap();
        learner.stop(None);
        assert!(
            during.len() >= 3,
            "the step ended before three scrapes: {during:?}"
        );
        let worst = during.iter().cloned().fold(0.0, f64::max);
        println!(
            "{} scrapes during the step, slowest {:.1} ms",
            during.len(),
            worst * 1e3
        );
        assert!(worst < 1.0, "slowest scrape {worst:.3} s");
    }

    #[tokio::test]
    async fn centring_makes_the_given_sequences_score_zero_on_average() {
        let learner = spawn(Head::Scalar).await;
        let ids = Tensor::from_slice(&[3i64, 4, 5, 0, 7, 8]).view([2, 3]);
        let valid = Tensor::from_slice(&[1i64, 1, 1, 0, 1, 1]).view([2, 3]);
        let seqs = || vec![(ids.shallow_clone(), valid.shallow_clone())];
        let first = ask(&learner, |r| LearnerMsg::CenterScores(seqs(), r))
            .await
            .unwrap();
        assert!(
            first.abs() > 1e-6,
            "a random head should not already be centred"
        );
        let second = ask(&learner, |r| LearnerMsg::CenterScores(seqs(), r))
            .await
            .unwrap();
        assert!(second.abs() < 1e-5, "mean after centring: {second}");
        learner.stop(None);
    }
}
