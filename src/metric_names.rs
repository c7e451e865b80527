//! Every Prometheus metric the trainer exports: name, type, labels and description, in one
//! place, so the exporter, the dashboards and their tests agree on the same names.
//!
//! Conventions (checked by the tests below): prefix `rlhf_`, base units with unit suffixes
//! (`_seconds`, `_bytes`, `_tokens`, `_nats`, `_ratio`), counters end in `_total`, and the
//! only labels are `actor` (generator, reference, reward, learner; a replica of several is
//! `generator.0`, `generator.1`, ...) and `stage` (the stage or
//! run name: pretrain, sft, rm, ppo, ppo_ptx, ...).

/// The Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word Prometheus's `# TYPE` line uses.
    pub fn prometheus(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// The labels every sample carries.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const ACTOR: &[&str] = &["actor"];
const STAGE: &[&str] = &["stage"];

impl Metric {
    const fn new(
        kind: Kind,
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Metric {
        Metric {
            name,
            kind,
            labels,
            help,
        }
    }
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric::new(Kind::Counter, name, labels, help)
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric::new(Kind::Gauge, name, labels, help)
}

const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric::new(Kind::Histogram, name, labels, help)
}

// Throughput.
pub const GENERATED_TOKENS: Metric = counter(
    "rlhf_generated_tokens_total",
    STAGE,
    "Response tokens sampled by the generator (up to and including EOS).",
);
pub const TRAINED_TOKENS: Metric = counter(
    "rlhf_trained_tokens_total",
    STAGE,
    "Tokens the learner trained on, once per pass: non-padding tokens (each PPO epoch counts), \
     and PPO-ptx's loss tokens of every optimizer step's pretraining batch.",
);
pub const SAMPLES: Metric = counter(
    "rlhf_samples_total",
    ACTOR,
    "Sequences an actor processed (generated, scored or trained on).",
);
pub const BATCHES: Metric = counter(
    "rlhf_batches_total",
    ACTOR,
    "Batches (messages with a batch of sequences) an actor processed.",
);
pub const STEPS: Metric = counter(
    "rlhf_steps_total",
    STAGE,
    "Optimizer steps completed (one PPO step is one rollout batch's update).",
);
pub const SKIPPED_STEPS: Metric = counter(
    "rlhf_skipped_steps_total",
    STAGE,
    "Training steps skipped because the loss or gradient norm was NaN or infinite (on_nan = \"skip\").",
);
pub const STAGE_PROGRESS: Metric = gauge(
    "rlhf_stage_progress_ratio",
    STAGE,
    "Fraction of the stage's configured steps done.",
);

// Durations of the phases of a step.
pub const GENERATION_DURATION: Metric = histogram(
    "rlhf_generation_duration_seconds",
    STAGE,
    "Seconds the generator replicas spent sampling one rollout batch (summed over its chunks).",
);
pub const REFERENCE_DURATION: Metric = histogram(
    "rlhf_reference_duration_seconds",
    STAGE,
    "Seconds the reference replicas spent adding log-probs to one rollout batch (summed over its chunks).",
);
pub const REWARD_DURATION: Metric = histogram(
    "rlhf_reward_duration_seconds",
    STAGE,
    "Seconds the reward replicas spent scoring one rollout batch (summed over its chunks).",
);
pub const LEARNER_DURATION: Metric = histogram(
    "rlhf_learner_step_duration_seconds",
    STAGE,
    "Wall time of the learner's forward, backward and optimizer passes for one step.",
);
pub const WEIGHT_SYNC_DURATION: Metric = histogram(
    "rlhf_weight_sync_duration_seconds",
    STAGE,
    "Wall time to copy the learner's new weights out for the generator replicas after a step.",
);
pub const WEIGHT_LOAD_DURATION: Metric = histogram(
    "rlhf_weight_load_duration_seconds",
    ACTOR,
    "Wall time a generator replica took to load newer weights before its next chunk.",
);
pub const WEIGHT_LOAD_BYTES: Metric = counter(
    "rlhf_weight_load_bytes_total",
    ACTOR,
    "Bytes of policy weights a generator replica loaded.",
);
pub const QUEUE_WAIT_DURATION: Metric = histogram(
    "rlhf_queue_wait_duration_seconds",
    STAGE,
    "Time the learner waited for the next scored rollout batch (idle learner).",
);
pub const STEP_DURATION: Metric = histogram(
    "rlhf_step_duration_seconds",
    STAGE,
    "Wall time of one whole training step, as the stage's loop sees it.",
);

// The asynchronous pipeline.
pub const QUEUE_DEPTH: Metric = gauge(
    "rlhf_rollout_queue_batches",
    STAGE,
    "Scored rollout batches waiting for the learner (at most max(max_staleness, 1)).",
);
pub const CHUNK_QUEUE_DEPTH: Metric = gauge(
    "rlhf_actor_queue_chunks",
    ACTOR,
    "Rollout chunks waiting for the replicas of an actor kind (generator, reference, reward).",
);
pub const STALENESS_HISTOGRAM: Metric = histogram(
    "rlhf_batch_staleness_versions",
    STAGE,
    "How many updates behind the learner each trained batch's weights were.",
);
pub const POLICY_VERSION: Metric = gauge(
    "rlhf_policy_version",
    ACTOR,
    "Version of the policy weights an actor holds (the learner's count of updates).",
);
pub const STALENESS: Metric = gauge(
    "rlhf_rollout_staleness_versions",
    STAGE,
    "How many updates behind the learner the weights that generated the last batch were.",
);
pub const LOGPROB_GAP: Metric = gauge(
    "rlhf_logprob_gap_nats",
    STAGE,
    "Mean |log mu - log pi_old| per token between the generator's and the learner's \
     log-probs of the same weights, on fresh batches only (~0 unless they disagree); \
     unchanged by stale batches, absent until a fresh one.",
);
pub const POLICY_DRIFT: Metric = gauge(
    "rlhf_policy_drift_nats",
    STAGE,
    "Mean |log mu - log pi_old| per token on stale batches: how far the learner moved since \
     the generator's weights; unchanged by fresh batches, absent until a stale one.",
);

// Learning.
pub const REWARD_SCORE: Metric = histogram(
    "rlhf_reward_score",
    STAGE,
    "Per-response reward-model score as the reward actor gave it.",
);
pub const REWARD_MEAN: Metric = gauge(
    "rlhf_reward_score_mean",
    STAGE,
    "Mean reward-model score of the last rollout batch.",
);
pub const SHAPED_REWARD_MEAN: Metric = gauge(
    "rlhf_shaped_reward_mean",
    STAGE,
    "Mean per-sequence reward PPO optimised: score minus the KL penalty.",
);
pub const MONITOR_SCORE_MEAN: Metric = gauge(
    "rlhf_monitor_score_mean",
    STAGE,
    "Mean score of a logged-only monitor (the gold labeler of the embedded world).",
);
pub const KL: Metric = gauge(
    "rlhf_kl_nats",
    STAGE,
    "Mean per-sequence KL divergence of the policy from the reference policy.",
);
pub const KL_COEF: Metric = gauge(
    "rlhf_kl_coef",
    STAGE,
    "KL penalty coefficient beta (adaptive when a KL target is set).",
);
pub const ENTROPY: Metric = gauge(
    "rlhf_entropy_nats",
    STAGE,
    "Entropy of the sampling distribution per response token.",
);
pub const CLIP_FRACTION: Metric = gauge(
    "rlhf_clip_ratio",
    STAGE,
    "Fraction of response tokens where PPO's clipped surrogate was active.",
);
pub const VALUE_CLIP_FRACTION: Metric = gauge(
    "rlhf_value_clip_ratio",
    STAGE,
    "Fraction of response tokens where the clipped value error was active.",
);
pub const APPROX_KL: Metric = gauge(
    "rlhf_approx_kl_nats",
    STAGE,
    "k3 estimate of KL(pi_old || pi) per token over the update.",
);
pub const POLICY_LOSS: Metric = gauge("rlhf_policy_loss", STAGE, "PPO clipped policy loss.");
pub const VALUE_LOSS: Metric = gauge("rlhf_value_loss", STAGE, "PPO value-function loss.");
pub const PTX_LOSS: Metric = gauge(
    "rlhf_ptx_loss_nats",
    STAGE,
    "Pretraining negative log-likelihood per token in PPO-ptx.",
);
pub const LOSS: Metric = gauge(
    "rlhf_loss",
    STAGE,
    "Training loss of the last step of a supervised stage (SFT and pretraining: NLL per token; RM: K-wise ranking loss; DPO: its preference loss).",
);
pub const ACCURACY: Metric = gauge(
    "rlhf_accuracy_ratio",
    STAGE,
    "Fraction of ranked pairs the reward model (DPO: the implicit reward) orders like the labels in the last step.",
);
pub const REWARD_MARGIN: Metric = gauge(
    "rlhf_reward_margin",
    STAGE,
    "Mean reward margin r(better) - r(worse) over the last step's ranked pairs (RM: the reward model's; DPO: the implicit reward's).",
);
pub const CHOSEN_REWARD: Metric = gauge(
    "rlhf_chosen_reward",
    STAGE,
    "DPO: mean implicit reward beta * (log pi - log pi_ref) of each ranked pair's better response in the last step.",
);
pub const REJECTED_REWARD: Metric = gauge(
    "rlhf_rejected_reward",
    STAGE,
    "DPO: mean implicit reward of each ranked pair's worse response in the last step.",
);
pub const IMPLICIT_KL: Metric = gauge(
    "rlhf_implicit_kl_nats",
    STAGE,
    "DPO: mean log pi - log pi_ref of a ranked response in the last step, nats per response.",
);
pub const GRAD_NORM: Metric = gauge(
    "rlhf_grad_norm",
    STAGE,
    "Global gradient norm before clipping (PPO: the policy's).",
);
pub const LEARNING_RATE: Metric = gauge(
    "rlhf_learning_rate",
    STAGE,
    "Learning rate of the last optimizer step.",
);

// Health.
pub const WORK_DURATION: Metric = histogram(
    "rlhf_actor_work_duration_seconds",
    ACTOR,
    "Wall time of each job on an actor's thread; rate(_sum) is the actor's busy fraction.",
);
pub const ERRORS: Metric = counter(
    "rlhf_actor_errors_total",
    ACTOR,
    "Messages an actor answered with an error.",
);
pub const RESTARTS: Metric = counter(
    "rlhf_actor_restarts_total",
    ACTOR,
    "Times an actor was replaced and the run went on: a remote reward node that rejoined after a loss, or a generator or reference node that left (its work re-queued to the other replicas).",
);
pub const RESIDENT_MEMORY: Metric = gauge(
    "rlhf_process_resident_memory_bytes",
    &[],
    "Resident memory of the trainer process.",
);

/// Every metric, for describing them to the exporter and for checking names.
pub const ALL: &[Metric] = &[
    GENERATED_TOKENS,
    TRAINED_TOKENS,
    SAMPLES,
    BATCHES,
    STEPS,
    SKIPPED_STEPS,
    STAGE_PROGRESS,
    GENERATION_DURATION,
    REFERENCE_DURATION,
    REWARD_DURATION,
    LEARNER_DURATION,
    WEIGHT_SYNC_DURATION,
    WEIGHT_LOAD_DURATION,
    WEIGHT_LOAD_BYTES,
    QUEUE_WAIT_DURATION,
    STEP_DURATION,
    QUEUE_DEPTH,
    CHUNK_QUEUE_DEPTH,
    STALENESS_HISTOGRAM,
    POLICY_VERSION,
    STALENESS,
    LOGPROB_GAP,
    POLICY_DRIFT,
    REWARD_SCORE,
    REWARD_MEAN,
    SHAPED_REWARD_MEAN,
    MONITOR_SCORE_MEAN,
    KL,
    KL_COEF,
    ENTROPY,
    CLIP_FRACTION,
    VALUE_CLIP_FRACTION,
    APPROX_KL,
    POLICY_LOSS,
    VALUE_LOSS,
    PTX_LOSS,
    LOSS,
    ACCURACY,
    REWARD_MARGIN,
    CHOSEN_REWARD,
    REJECTED_REWARD,
    IMPLICIT_KL,
    GRAD_NORM,
    LEARNING_RATE,
    WORK_DURATION,
    ERRORS,
    RESTARTS,
    RESIDENT_MEMORY,
];

/// The metric named `name`.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

/// Why `metric` breaks the naming rules, if it does.
pub fn naming_problem(metric: &Metric) -> Option<String> {
    let name = metric.name;
    let valid = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !name.starts_with("rlhf_") || !valid {
        return Some(format!("{name}: not rlhf_ followed by [a-z0-9_]"));
    }
    let total = name.ends_with("_total");
    if total != (metric.kind == Kind::Counter) {
        return Some(format!("{name}: only counters end in _total"));
    }
    if metric.kind == Kind::Histogram && name.contains("duration") && !name.ends_with("_seconds") {
        return Some(format!("{name}: durations are in _seconds"));
    }
    if let Some(label) = metric
        .labels
        .iter()
        .find(|l| !["actor", "stage"].contains(l))
    {
        return Some(format!("{name}: label {label} is not actor or stage"));
    }
    // Prometheus reserves these suffixes for a histogram's series.
    if ["_bucket", "_sum", "_count"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return Some(format!("{name}: ends in a histogram series suffix"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_follows_the_naming_rules_once() {
        for m in ALL {
            assert_eq!(naming_problem(m), None);
            assert!(!m.help.is_empty(), "{} has no description", m.name);
            assert_eq!(ALL.iter().filter(|o| o.name == m.name).count(), 1);
        }
        assert!(find("rlhf_kl_nats").is_some());
        assert!(find("rlhf_kl").is_none());
    }

    #[test]
    fn the_rules_catch_bad_names() {
        let bad = [
            counter("rlhf_tokens", STAGE, "x"),
            gauge("rlhf_tokens_total", STAGE, "x"),
            gauge("tokens", STAGE, "x"),
            gauge("rlhf_Tokens", STAGE, "x"),
            histogram("rlhf_step_duration", STAGE, "x"),
            gauge("rlhf_loss", &["model"], "x"),
            histogram("rlhf_x_bucket", STAGE, "x"),
        ];
        for m in &bad {
            assert!(naming_problem(m).is_some(), "{} passed", m.name);
        }
    }
}
