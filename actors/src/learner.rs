//! The learner actor: owns the trainable model and its optimizer (an `rlhf::train::Trainer`
//! on a dedicated thread) and is the only place weights change. SFT and RM drive it now;
//! PPO reuses it.

use crate::worker::Worker;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rlhf::train::{Batch, Stats, Trainer};
use std::path::PathBuf;
use tch::Tensor;

pub type Reply<T> = RpcReplyPort<anyhow::Result<T>>;

pub enum LearnerMsg {
    /// One optimizer step over the micro-batches of one batch.
    Train(Vec<Batch>, Reply<Stats>),
    /// Loss and figures over held-out batches.
    Evaluate(Vec<Batch>, Reply<Stats>),
    /// Save the model in Hugging Face layout into the folder.
    Save(PathBuf, Reply<()>),
    /// Copies of the weights and their version (optimizer steps taken), for other actors.
    // The PPO stage's weight sync to the generator is the caller; until it lands, tests are.
    #[cfg_attr(not(test), allow(dead_code))]
    Weights(Reply<(u64, Vec<(String, Tensor)>)>),
    /// Shift the scalar head so these (ids, valid) sequences score 0 on average; replies
    /// with their mean score before the shift.
    CenterScores(Vec<(Tensor, Tensor)>, Reply<f64>),
}

/// Empty: the state lives in `LearnerState`.
pub struct Learner;

pub struct LearnerState {
    worker: Worker<Trainer>,
}

pub struct LearnerArgs {
    /// libtorch intra-op threads for the learner thread.
    pub threads: i32,
    /// Builds the trainer on the learner thread (loading the model there).
    pub build: Box<dyn FnOnce() -> anyhow::Result<Trainer> + Send>,
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
        Ok(LearnerState { worker })
    }

    async fn handle(
        &self,
        _: ActorRef<LearnerMsg>,
        msg: LearnerMsg,
        state: &mut LearnerState,
    ) -> Result<(), ActorProcessingErr> {
        let worker = &state.worker;
        match msg {
            LearnerMsg::Train(batches, reply) => {
                let result = worker
                    .run(move |t| t.train_step(&batches).map_err(anyhow::Error::from))
                    .await;
                let _ = reply.send(result.and_then(|r| r));
            }
            LearnerMsg::Evaluate(batches, reply) => {
                let _ = reply.send(worker.run(move |t| t.evaluate(&batches)).await);
            }
            LearnerMsg::Save(dir, reply) => {
                let result = worker
                    .run(move |t| t.model().save(&dir).map_err(anyhow::Error::from))
                    .await;
                let _ = reply.send(result.and_then(|r| r));
            }
            LearnerMsg::Weights(reply) => {
                let result = worker.run(copy_weights).await;
                let _ = reply.send(result);
            }
            LearnerMsg::CenterScores(sequences, reply) => {
                let result = worker.run(move |t| {
                    let mean = t.mean_score(&sequences);
                    let bias = t.model().score_bias() - mean;
                    t.model_mut().set_score_bias(bias);
                    mean
                });
                let _ = reply.send(result.await);
            }
        }
        Ok(())
    }
}

fn copy_weights(trainer: &mut Trainer) -> (u64, Vec<(String, Tensor)>) {
    let _guard = tch::no_grad_guard();
    let weights = trainer
        .model()
        .var_store()
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().copy()))
        .collect();
    (trainer.steps(), weights)
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
            Ok(Trainer::new(
                fixture(head),
                &config,
                &ScheduleConfig::default(),
                1,
                1,
            ))
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
