//! What a PPO step exports to Prometheus, labelled with the run's name as `stage`.

use crate::system::telemetry::{add, observe, set};
use rlhf::metric_names as m;
use rlhf::ppo::learner::PpoStats;
use rlhf::rollout::BatchFigures;

/// Seconds the producer's phases took for one batch, summed over its chunks (the
/// replicas' busy time): loading weights, generating, reference log-probs, reward.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProducerTimes {
    pub weight_load: f64,
    pub generate: f64,
    pub reference: f64,
    pub reward: f64,
}

impl ProducerTimes {
    pub fn add(&mut self, other: &ProducerTimes) {
        self.weight_load += other.weight_load;
        self.generate += other.generate;
        self.reference += other.reference;
        self.reward += other.reward;
    }
}

/// Seconds the consumer's phases took for one step.
pub struct StepTimes {
    pub queue_wait: f64,
    pub learner: f64,
    pub weight_sync: f64,
    pub step: f64,
}

/// A scored batch entered the queue.
pub fn produced(stage: &str, figures: &BatchFigures, times: &ProducerTimes) {
    add(&m::GENERATED_TOKENS, stage, figures.response_tokens);
    observe(&m::GENERATION_DURATION, stage, times.generate);
    observe(&m::REFERENCE_DURATION, stage, times.reference);
    observe(&m::REWARD_DURATION, stage, times.reward);
    for &score in &figures.scores {
        observe(&m::REWARD_SCORE, stage, score as f64);
    }
}

/// The queue now holds `depth` batches.
pub fn queue_depth(stage: &str, depth: usize) {
    set(&m::QUEUE_DEPTH, stage, depth as f64);
}

/// The chunks waiting in `queue` for the replicas of an actor kind.
pub fn waiting<T>(kind: &str, queue: &tokio::sync::mpsc::Sender<T>) {
    let depth = queue.max_capacity() - queue.capacity();
    set(&m::CHUNK_QUEUE_DEPTH, kind, depth as f64);
}

/// A generator replica loaded `bytes` of new weights in `seconds`.
pub fn weights_loaded(replica: &str, bytes: u64, seconds: f64) {
    add(&m::WEIGHT_LOAD_BYTES, replica, bytes);
    observe(&m::WEIGHT_LOAD_DURATION, replica, seconds);
}

/// One PPO update is done.
pub fn learned(stage: &str, stats: &PpoStats, monitor: Option<f64>, times: &StepTimes) {
    observe(&m::QUEUE_WAIT_DURATION, stage, times.queue_wait);
    observe(&m::LEARNER_DURATION, stage, times.learner);
    observe(&m::WEIGHT_SYNC_DURATION, stage, times.weight_sync);
    observe(&m::STEP_DURATION, stage, times.step);
    add(&m::STEPS, stage, 1);
    observe(&m::STALENESS_HISTOGRAM, stage, stats.staleness as f64);
    let gauges = [
        (&m::STALENESS, stats.staleness as f64),
        (&m::REWARD_MEAN, stats.score_mean),
        (&m::SHAPED_REWARD_MEAN, stats.reward_mean),
        (&m::KL, stats.kl_per_sequence),
        (&m::KL_COEF, stats.kl_coef),
        (&m::ENTROPY, stats.entropy),
        (&m::CLIP_FRACTION, stats.clip_fraction),
        (&m::VALUE_CLIP_FRACTION, stats.value_clip_fraction),
        (&m::APPROX_KL, stats.approx_kl),
        (&m::POLICY_LOSS, stats.policy_loss),
        (&m::VALUE_LOSS, stats.value_loss),
        (&m::GRAD_NORM, stats.grad_norm_policy),
        (&m::LEARNING_RATE, stats.lr),
    ];
    for (metric, value) in gauges {
        set(metric, stage, value);
    }
    // Each only from the batches it is measured on: no step reports a fake 0.
    if let Some(gap) = stats.logprob_gap {
        set(&m::LOGPROB_GAP, stage, gap);
    }
    if let Some(drift) = stats.policy_drift {
        set(&m::POLICY_DRIFT, stage, drift);
    }
    if let Some(ptx) = stats.ptx_loss {
        set(&m::PTX_LOSS, stage, ptx);
    }
    if let Some(score) = monitor {
        set(&m::MONITOR_SCORE_MEAN, stage, score);
    }
}
