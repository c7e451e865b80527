//! The supervised learner: a `Trainer` (pretraining, SFT, RM) on its own thread.

use super::common::{span, Common, Engine, LearnerArgs};
use crate::system::rpc::Reply;
use crate::system::telemetry;
use crate::system::worker::Worker;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rlhf::train::{Batch, Stats, Trainer};
use std::path::Path;
use tch::Tensor;
use tracing::Instrument;

pub enum SupervisedMsg {
    /// One optimizer step over the micro-batches of one batch.
    Train(Vec<Batch>, Reply<Stats>),
    /// Loss and figures over held-out batches.
    Evaluate(Vec<Batch>, Reply<Stats>),
    /// Shift the scalar head so these (ids, valid) sequences score 0 on average; replies
    /// with their mean score before the shift.
    CenterScores(Vec<(Tensor, Tensor)>, Reply<f64>),
    /// Each row's response log-probability, per DPO batch, under the model as it is.
    SequenceLogps(Vec<Batch>, Reply<Vec<Vec<f32>>>),
    Common(Common),
}

// Local only: with ractor's cluster feature on, messages say whether they cross nodes.
impl ractor::Message for SupervisedMsg {}

impl From<Common> for SupervisedMsg {
    fn from(common: Common) -> Self {
        SupervisedMsg::Common(common)
    }
}

impl SupervisedMsg {
    /// The message's kind, for log spans.
    fn name(&self) -> &'static str {
        match self {
            SupervisedMsg::Train(..) => "train",
            SupervisedMsg::Evaluate(..) => "evaluate",
            SupervisedMsg::CenterScores(..) => "center_scores",
            SupervisedMsg::SequenceLogps(..) => "sequence_logps",
            SupervisedMsg::Common(c) => c.name(),
        }
    }
}

impl Engine for Trainer {
    fn weights(&self) -> (u64, Vec<(String, Tensor)>) {
        (self.steps(), self.model().trainable_copy())
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        Ok(self.model().export(dir)?)
    }

    fn save_state(&self, dir: &Path) -> anyhow::Result<()> {
        Ok(Trainer::save_state(self, dir)?)
    }

    fn load_state(&mut self, dir: &Path) -> anyhow::Result<()> {
        Ok(Trainer::load_state(self, dir)?)
    }
}

/// Empty: the state lives in `SupervisedState`.
pub struct SupervisedLearner;

pub struct SupervisedState {
    worker: Worker<Trainer>,
    /// Train messages handled (the fault-injection seam counts them).
    train_messages: u64,
}

impl Actor for SupervisedLearner {
    type Msg = SupervisedMsg;
    type State = SupervisedState;
    type Arguments = LearnerArgs<Trainer>;

    async fn pre_start(
        &self,
        _: ActorRef<SupervisedMsg>,
        args: LearnerArgs<Trainer>,
    ) -> Result<SupervisedState, ActorProcessingErr> {
        let worker = Worker::spawn("learner", args.threads, args.build).await?;
        Ok(SupervisedState {
            worker,
            train_messages: 0,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<SupervisedMsg>,
        msg: SupervisedMsg,
        state: &mut SupervisedState,
    ) -> Result<(), ActorProcessingErr> {
        let worker = &state.worker;
        let span = span(msg.name());
        match msg {
            SupervisedMsg::Train(batches, reply) => {
                let rows: i64 = batches.iter().map(|b| b.rows_and_tokens().0).sum();
                state.train_messages += 1;
                let message = state.train_messages;
                let result = worker
                    .call(move |trainer| {
                        rlhf::faults::poison_trainer_if(trainer, message);
                        Ok(trainer.train_step(&batches)?)
                    })
                    .instrument(span)
                    .await;
                if result.is_ok() {
                    telemetry::processed("learner", rows);
                }
                let _ = reply.send(result);
            }
            SupervisedMsg::Evaluate(batches, reply) => {
                let result = worker
                    .run(move |trainer| trainer.evaluate(&batches))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            SupervisedMsg::CenterScores(sequences, reply) => {
                let result = worker
                    .run(move |trainer| trainer.center_scores(&sequences))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            SupervisedMsg::SequenceLogps(batches, reply) => {
                let result = worker
                    .call(move |trainer| Ok(trainer.sequence_logps(&batches)?))
                    .instrument(span)
                    .await;
                let _ = reply.send(result);
            }
            SupervisedMsg::Common(common) => common.handle(worker, span).await,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::learner::ask_common;
    use crate::system::rpc::ask;
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

    async fn spawn(head: Head) -> ActorRef<SupervisedMsg> {
        let build = move || {
            let config = OptimizerConfig {
                lr: 1e-2,
                ..OptimizerConfig::default()
            };
            let trainer = Trainer::new(fixture(head), &config, &ScheduleConfig::default(), 1, 1);
            Ok(trainer)
        };
        let args = LearnerArgs {
            threads: 1,
            build: Box::new(build),
        };
        Actor::spawn(None, SupervisedLearner, args).await.unwrap().0
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
        let (v0, before) = ask_common(&learner, Common::Weights).await.unwrap();
        let stats = ask(&learner, "learner", |r| {
            SupervisedMsg::Train(vec![sft_batch()], r)
        })
        .await
        .unwrap();
        assert_eq!(stats.tokens, 3);
        assert!(stats.loss.is_finite() && stats.grad_norm.unwrap() > 0.0);
        let (v1, after) = ask_common(&learner, Common::Weights).await.unwrap();
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
        use crate::system::telemetry::tests::{endpoint, scrape};
        let addr = endpoint();
        let build = move || {
            let trainer = Trainer::new(
                fixture(Head::LanguageModel),
                &OptimizerConfig::default(),
                &ScheduleConfig::default(),
                1,
                1,
            );
            Ok(trainer)
        };
        let args = LearnerArgs {
            threads: 2,
            build: Box::new(build),
        };
        let learner = Actor::spawn(None, SupervisedLearner, args).await.unwrap().0;
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
            tokio::spawn(async move {
                ask(&learner, "learner", |r| SupervisedMsg::Train(batches, r)).await
            })
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
        let first = ask(&learner, "learner", |r| {
            SupervisedMsg::CenterScores(seqs(), r)
        })
        .await
        .unwrap();
        assert!(
            first.abs() > 1e-6,
            "a random head should not already be centred"
        );
        let second = ask(&learner, "learner", |r| {
            SupervisedMsg::CenterScores(seqs(), r)
        })
        .await
        .unwrap();
        assert!(second.abs() < 1e-5, "mean after centring: {second}");
        learner.stop(None);
    }
}
