//! The PPO actor system end to end on tiny random models.

use super::actors::{shared_bases, spawn_with, LEARNER_STREAM};
use super::prompts::PromptCycle;
use super::*;
use crate::system::generator::{EpisodeKey, Sampler};
use crate::system::learner::{ask_common, Common};
use crate::system::reward::{Decoder, LoadModel};
use crate::system::scorers::{reference_apply, reward_apply, Reference, RewardEngine};
use rlhf::config::{Actors as Placements, OnNan, Placement, RewardConfig};
use rlhf::data::SftSequence;
use rlhf::device::{parse_device, DType};
use rlhf::generate::GenerateOptions;
use rlhf::model::{Architecture, Head, LoraConfig, Model, ModelConfig, ModelShape};
use rlhf::optim::OptimizerConfig;
use rlhf::ppo::learner::PpoLearner;
use rlhf::ppo::PpoConfig;
use rlhf::rng::Rng;
use rlhf::rollout::RolloutBatch;
use rlhf::sampling::Sampling;
use std::sync::Arc;

pub(super) fn source() -> ModelSource {
    tiny_source(None)
}

/// Tiny random GPT-2 models; with `lora`, every actor's model shares one base per device
/// (as [`ModelSource::from_folders`] loads them).
fn tiny_source(lora: Option<LoraConfig>) -> ModelSource {
    let build = |head: Head| -> LoadModel {
        let (lora, shared) = (lora.clone(), lora.is_some());
        let build = move |device: &str| -> anyhow::Result<Model> {
            let shape = ModelShape {
                arch: Architecture::Gpt2,
                vocab_size: 64,
                hidden_size: 32,
                num_layers: 2,
                num_heads: 4,
                num_kv_heads: 4,
                max_positions: 64,
                eos_token_id: 63,
            };
            let device = parse_device(device)?;
            let config = ModelConfig::new_json(&shape);
            Ok(crate::seeded(3, || match &lora {
                Some(lora) => Model::new_with_lora(config, head, DType::F32, device, lora),
                None => Model::new(config, head, DType::F32, device),
            })?)
        };
        match shared {
            true => shared_bases(build),
            false => Arc::new(build),
        }
    };
    ModelSource::new(
        build(Head::LanguageModel),
        build(Head::Scalar),
        RewardConfig::Model,
    )
}

pub(super) fn stage() -> PpoStage {
    let place = Placement::single("cpu", 1);
    PpoStage {
        policy: "mem".into(),
        reward_model: "mem".into(),
        prompts: "mem".into(),
        keys: Default::default(),
        truncate: Default::default(),
        pretrain: None,
        steps: 3,
        rollout_batch_size: 4,
        max_prompt_len: 8,
        max_new_tokens: 6,
        max_staleness: 0,
        ptx_batch_size: 1,
        ptx_seq_len: 1,
        sampling: Sampling::default(),
        algo: PpoConfig {
            ppo_epochs: 2,
            minibatches: 2,
            ..PpoConfig::default()
        },
        optimizer: OptimizerConfig {
            lr: 1e-2,
            ..OptimizerConfig::default()
        },
        dtype: DType::F32,
        lora: None,
        gradient_checkpointing: false,
        actors: Placements {
            generator: place.clone(),
            reference: place.clone(),
            reward: place.clone(),
            learner: place,
        },
        rollout_chunks: None,
        reward: RewardConfig::Model,
        cluster: Default::default(),
        checkpoint_every: 0,
        keep_checkpoints: 1,
    }
}

/// The actors' parts as plain values, for a loop that replays a run without actors.
pub(super) struct PlainLoop {
    pub(super) sampler: Sampler,
    reference: Reference,
    reward: RewardEngine,
    pub(super) learner: PpoLearner,
    /// The learner's minibatch rng, seeded as the learner actor's.
    pub(super) rng: Rng,
    cycle: PromptCycle,
    /// Batches generated so far: the next batch's index, which keys its episodes.
    batches: u64,
}

impl PlainLoop {
    pub(super) fn new(source: &ModelSource, stage: &PpoStage, seed: u64) -> PlainLoop {
        // The same libtorch thread count as the actors, so reductions run in the same order.
        tch::set_num_threads(1);
        let model = || (source.policy)("cpu").unwrap();
        let options = GenerateOptions {
            sampling: stage.sampling.clone(),
            max_new_tokens: stage.max_new_tokens,
            eos_token_ids: vec![63],
            pad_token_id: 0,
            static_batch: false,
        };
        let reference = model();
        reference.set_adapters(false);
        PlainLoop {
            sampler: Sampler::new(model(), options, seed),
            reference: Reference {
                model: reference,
                sampling: stage.sampling.clone(),
            },
            reward: (source.scorers)("cpu").unwrap(),
            learner: PpoLearner::new(
                model(),
                stage
                    .algo
                    .uses_value_model()
                    .then(|| (source.reward)("cpu").unwrap()),
                &stage.optimizer,
                &stage.algo,
                stage.sampling.clone(),
            ),
            rng: Rng::new(seed ^ LEARNER_STREAM),
            cycle: PromptCycle::new(seed),
            batches: 0,
        }
    }

    /// The next scored batch: 4 prompts of the cycle over `prompts`, generated with the
    /// sampler's current weights.
    pub(super) fn batch(&mut self, prompts: &[Vec<i64>]) -> RolloutBatch {
        let keys = EpisodeKey::of_batch(self.batches, 4, 1);
        let id = self.batches;
        self.batches += 1;
        let batch = self
            .sampler
            .rollout(&self.cycle.next(prompts, 4, 1), &keys, id, 0)
            .unwrap();
        let batch = reference_apply(&mut self.reference, batch).unwrap();
        reward_apply(&mut self.reward, batch).unwrap()
    }
}

/// A PPO-ptx run exports every PPO metric under its documented name and labels, and
/// nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ppo_run_exports_its_metrics_under_the_documented_names() {
    use crate::system::telemetry::tests::{endpoint, families, scrape};
    use rlhf::metric_names as m;
    let addr = endpoint();
    let mut stage = stage();
    stage.algo.ptx_coef = 0.5;
    let tokens = Tokens {
        eos: vec![63],
        pad: 0,
        decoder: Decoder::ids_only(),
    };
    let dir = std::env::temp_dir().join(format!("rlhf-ppo-metrics-{}", std::process::id()));
    let config = RunConfig::for_ppo(dir.clone(), 5, stage.clone());
    let mut run_dir = RunDir::create(&dir, &config).unwrap();
    let actors = spawn(&stage, tokens, 5, &source()).await.unwrap();
    let prompts = vec![vec![5, 6, 7], vec![9, 10]];
    let ptx = [SftSequence::new(vec![3, 4, 5, 6, 7], 0)];
    let run = "ppo_metrics_test";
    let spec = Run {
        name: run,
        stage: &stage,
        seed: 5,
        from: None,
    };
    pipeline(spec, &actors, prompts, Some(&ptx), &mut run_dir)
        .await
        .unwrap();
    actors.stop();
    let body = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .unwrap();
    let exported = families(&body).unwrap_or_else(|p| panic!("{p:#?}\n{body}"));
    // The drift is measured on stale batches only, which a synchronous run has none of
    // (stale_tests checks it).
    let supervised_or_monitor = [
        m::LOSS.name,
        m::ACCURACY.name,
        m::REWARD_MARGIN.name,
        m::CHOSEN_REWARD.name,
        m::REJECTED_REWARD.name,
        m::IMPLICIT_KL.name,
        m::MONITOR_SCORE_MEAN.name,
        m::POLICY_DRIFT.name,
    ];
    for metric in m::ALL
        .iter()
        .filter(|x| !supervised_or_monitor.contains(&x.name))
    {
        assert!(
            exported.iter().any(|e| e.name == metric.name),
            "{} is not exported",
            metric.name
        );
        let series = match metric.kind {
            m::Kind::Histogram => format!("{}_count", metric.name),
            _ => metric.name.to_string(),
        };
        let labelled = match metric.labels {
            ["stage"] => vec![format!("{series}{{stage=\"{run}\"}}")],
            ["actor"] => {
                let actors: &[&str] = match metric.name {
                    n if n == m::POLICY_VERSION.name => &["generator", "learner"],
                    n if n == m::WEIGHT_LOAD_DURATION.name || n == m::WEIGHT_LOAD_BYTES.name => {
                        &["generator"]
                    }
                    n if n == m::CHUNK_QUEUE_DEPTH.name => &["generator", "reference", "reward"],
                    _ => &["generator", "reference", "reward", "learner"],
                };
                actors
                    .iter()
                    .map(|a| format!("{series}{{actor=\"{a}\"}}"))
                    .collect()
            }
            _ => vec![format!("{series} ")],
        };
        for s in labelled {
            assert!(body.contains(&s), "no {s} in\n{body}");
        }
    }
    assert!(body.contains(&format!("rlhf_steps_total{{stage=\"{run}\"}} 3")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// on_nan = "skip": a NaN in the last minibatch step of update 2 (after its first three
/// were applied) is counted in rlhf_skipped_steps_total and metrics.jsonl, and rolled
/// back: step 3 trains from the weights the generator holds (no weight sync after the
/// skip), so their log-probs agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_nan_update_is_counted_and_changes_nothing() {
    use crate::system::telemetry::tests::{endpoint, scrape};
    let addr = endpoint();
    let mut stage = stage();
    stage.algo.on_nan = OnNan::Skip;
    let tokens = Tokens {
        eos: vec![63],
        pad: 0,
        decoder: Decoder::ids_only(),
    };
    let dir = std::env::temp_dir().join(format!("rlhf-ppo-skip-{}", std::process::id()));
    let config = RunConfig::for_ppo(dir.clone(), 5, stage.clone());
    let mut run_dir = RunDir::create(&dir, &config).unwrap();
    let actors = spawn_with(&stage, tokens, 5, &source(), |l| l.poison_update(2))
        .await
        .unwrap();
    let prompts = vec![vec![5, 6, 7], vec![9, 10], vec![11], vec![12, 13, 14, 15]];
    let run = "ppo_skip_test";
    let spec = Run {
        name: run,
        stage: &stage,
        seed: 5,
        from: None,
    };
    let done = pipeline(spec, &actors, prompts, None, &mut run_dir).await;
    let (version, _) = ask_common(&actors.learner, Common::Weights).await.unwrap();
    actors.stop();
    assert_eq!(done.unwrap(), 3);
    assert_eq!(version, 2, "two updates applied");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.path("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let skipped: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r.get("skipped").is_some())
        .collect();
    assert_eq!(skipped.len(), 1, "{records:?}");
    assert_eq!(skipped[0]["step"], 2);
    let what = skipped[0]["skipped"].as_str().unwrap();
    assert!(
        what.contains("non-finite PPO loss (policy NaN")
            && what.contains("in minibatch step 4 of 4 at step 2"),
        "{what}"
    );
    let steps: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r.get("policy_version").is_some())
        .collect();
    assert_eq!(steps.len(), 2);
    let third = steps[1];
    assert_eq!(
        (third["step"].as_u64(), third["batch_version"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(third["staleness"], 0);
    let gap = third["logprob_gap"].as_f64().unwrap();
    assert!(
        gap < 1e-5,
        "the skipped update moved the learner: logprob gap {gap}"
    );
    let body = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .unwrap();
    for series in [
        format!("rlhf_skipped_steps_total{{stage=\"{run}\"}} 1"),
        format!("rlhf_steps_total{{stage=\"{run}\"}} 2"),
    ] {
        assert!(body.contains(&series), "no {series} in\n{body}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The invariant that makes the actor system trustworthy: with max_staleness 0 it is
/// exactly PPO, the same rollouts and updates as a plain loop over the same functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_actor_system_equals_a_plain_loop() {
    equals_a_plain_loop(stage(), source).await;
}

/// With LoRA: the learner sends adapters alone, generators apply them on the shared base,
/// the reference is the base with adapters off, and the run is still the plain loop's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lora_actor_system_equals_a_plain_loop_and_syncs_adapters_alone() {
    let lora = LoraConfig {
        rank: 4,
        ..LoraConfig::default()
    };
    let stage = PpoStage {
        lora: Some(lora.clone()),
        ..stage()
    };
    let weights = equals_a_plain_loop(stage, move || tiny_source(Some(lora.clone()))).await;
    // Two blocks with four adapted layers each, A and B: 16 tensors and no base weight.
    assert_eq!(weights.len(), 16);
    assert!(weights
        .iter()
        .all(|(n, _)| rlhf::model::lora::is_adapter(n)));
}

/// Runs 3 synchronous steps on the actors and in a plain loop from two `source()`s (so
/// nothing is shared between the two), checks that they agree, and returns the weights
/// the learner hands out.
async fn equals_a_plain_loop(
    stage: PpoStage,
    make_source: impl Fn() -> ModelSource,
) -> Vec<(String, tch::Tensor)> {
    let (seed, tokens) = (
        5,
        Tokens {
            eos: vec![63],
            pad: 0,
            decoder: Decoder::ids_only(),
        },
    );
    let prompts: Vec<Vec<i64>> = vec![
        vec![5, 6, 7],
        vec![9],
        vec![10, 11, 12, 13, 14],
        vec![20, 21],
        vec![30, 31, 32, 33],
        vec![40],
    ];
    let dir = std::env::temp_dir().join(format!(
        "rlhf-ppo-invariant-{}-{}",
        std::process::id(),
        stage.lora.is_some()
    ));
    let config = RunConfig::for_ppo(dir.clone(), seed, stage.clone());
    let mut run_dir = RunDir::create(&dir, &config).unwrap();
    let source = make_source();
    let actors = spawn(&stage, tokens, seed, &source).await.unwrap();
    assert_eq!(
        pipeline(
            Run {
                name: "ppo",
                stage: &stage,
                seed,
                from: None
            },
            &actors,
            prompts.clone(),
            None,
            &mut run_dir
        )
        .await
        .unwrap(),
        3
    );
    let (version, weights) = ask_common(&actors.learner, Common::Weights).await.unwrap();
    actors.stop();

    let plain_source = make_source();
    let mut plain = PlainLoop::new(&plain_source, &stage, seed);
    let mut plain_stats = Vec::new();
    for _ in 0..3 {
        let batch = plain.batch(&prompts);
        let learner = &mut plain.learner;
        plain_stats.push(
            learner
                .update(&batch, &[], &mut plain.rng, stage.optimizer.lr)
                .unwrap(),
        );
        plain
            .sampler
            .set_weights(learner.version(), &learner.policy_weights())
            .unwrap();
    }
    let learner = &plain.learner;
    assert_eq!(version, learner.version());
    // The same rollouts: every step's scores are bit-identical, and the update's figures
    // agree to float precision.
    let metrics = std::fs::read_to_string(run_dir.path("metrics.jsonl")).unwrap();
    let actor_stats: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r.get("policy_version").is_some())
        .collect();
    assert_eq!(actor_stats.len(), plain_stats.len());
    for (a, p) in actor_stats.iter().zip(&plain_stats) {
        assert_eq!(
            a["score_mean"].as_f64().unwrap(),
            p.score_mean,
            "rollout scores differ: {a}"
        );
        assert_eq!(
            a["response_length_mean"].as_f64().unwrap(),
            p.response_length_mean
        );
        for (key, value) in [
            ("policy_loss", p.policy_loss),
            ("value_loss", p.value_loss),
            ("grad_norm_policy", p.grad_norm_policy),
        ] {
            let diff = (a[key].as_f64().unwrap() - value).abs();
            assert!(diff < 1e-5, "{key}: {} vs {value}", a[key]);
        }
    }
    // The same updated weights. libtorch's CPU kernels are not bitwise reproducible run to
    // run (about 1e-7 relative), and Adam turns that noise on near-zero gradients into
    // steps of up to lr, so single entries can differ by ~1e-4 while the mean is ~1e-7.
    let plain = learner.policy_weights();
    assert_eq!(weights.len(), plain.len());
    let initial_model = (source.policy)("cpu").unwrap();
    let initial = initial_model.var_store().variables();
    let initial_trainable: Vec<String> = initial_model
        .trainable()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let (mut diff_sum, mut count, mut worst, mut moved) = (0.0f64, 0i64, 0.0f64, 0.0f64);
    for ((name, a), (other, b)) in weights.iter().zip(&plain) {
        assert_eq!(name, other);
        let diff = (a - b).abs();
        diff_sum += diff.sum(tch::Kind::Double).double_value(&[]);
        count += diff.numel() as i64;
        worst = worst.max(diff.max().double_value(&[]));
        moved = moved.max((b - &initial[name]).abs().max().double_value(&[]));
    }
    let mean = diff_sum / count as f64;
    assert!(mean < 1e-5, "mean |weight difference| {mean}");
    assert!(
        worst < 10.0 * stage.optimizer.lr,
        "max |weight difference| {worst}"
    );
    assert!(moved > 1e-3, "the updates should move the weights");
    // Training moved no frozen weight of the base the actors shared.
    let after = (source.policy)("cpu").unwrap();
    let fresh = (make_source().policy)("cpu")
        .unwrap()
        .var_store()
        .variables();
    for (name, t) in after.var_store().variables() {
        if !initial_trainable.contains(&name) {
            assert!(t.equal(&fresh[&name]), "{name} changed");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    weights
}
