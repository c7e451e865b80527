"""Generates rlhf.json, the Grafana dashboard: edit this script, not the JSON, then run
`python3 dashboards/generate.py`. Every expression uses only names from src/metric_names.rs
(actors/tests/prometheus.rs checks each one against a real Prometheus)."""

import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
S = '{stage=~"$stage"}'
RI = "[$__rate_interval]"

panels = []
next_id = [1]
y = [0]
x = [0]
row_h = [0]


def new_id():
    i = next_id[0]
    next_id[0] += 1
    return i


def row(title):
    if x[0] != 0:
        y[0] += row_h[0]
        x[0] = 0
    panels.append({
        "type": "row", "title": title, "id": new_id(), "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": [],
    })
    y[0] += 1
    row_h[0] = 0


def place(w, h):
    if x[0] + w > 24:
        y[0] += row_h[0]
        x[0] = 0
        row_h[0] = 0
    pos = {"h": h, "w": w, "x": x[0], "y": y[0]}
    x[0] += w
    row_h[0] = max(row_h[0], h)
    return pos


def targets(ts):
    out = []
    for i, (expr, legend) in enumerate(ts):
        out.append({
            "datasource": DS, "editorMode": "code", "expr": expr,
            "legendFormat": legend, "range": True, "refId": chr(ord("A") + i),
        })
    return out


def panel(kind, title, desc, tgts, defaults, options, w, h, decimals, minv, maxv):
    for key, value in (("decimals", decimals), ("min", minv), ("max", maxv)):
        if value is not None:
            defaults[key] = value
    panels.append({
        "type": kind, "title": title, "description": desc, "id": new_id(),
        "datasource": DS, "gridPos": place(w, h),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": targets(tgts),
    })


def ts(title, desc, unit, tgts, w=6, h=8, decimals=None, minv=None, maxv=None, stack=False):
    defaults = {
        "unit": unit,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line", "lineInterpolation": "linear", "lineWidth": 1,
            "fillOpacity": 10, "showPoints": "never", "spanNulls": False,
            "axisPlacement": "auto", "axisLabel": "",
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
        "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
    }
    options = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    panel("timeseries", title, desc, tgts, defaults, options, w, h, decimals, minv, maxv)


def stat(title, desc, unit, tgts, w=4, h=8, decimals=None, minv=None, maxv=None, thresholds=None):
    defaults = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": thresholds or [{"color": "green", "value": None}]},
    }
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
        "orientation": "auto", "textMode": "auto", "wideLayout": True,
        "showPercentChange": False,
    }
    panel("stat", title, desc, tgts, defaults, options, w, h, decimals, minv, maxv)


def by_stage_rate(name):
    return f"sum by (stage) (rate({name}{S}{RI}))"


def by_actor_rate(name):
    return f"sum by (actor) (rate({name}{RI}))"


def gauge(name):
    return f"{name}{S}"


def quantile(q, name):
    return f"histogram_quantile({q}, sum by (le, stage) (rate({name}_bucket{S}{RI})))"


def mean(name):
    return (f"sum by (stage) (rate({name}_sum{S}{RI}))"
            f" / sum by (stage) (rate({name}_count{S}{RI}))")


# Throughput.
row("Throughput")
ts("Generated tokens/s", "Response tokens sampled by the generator per second (rate of rlhf_generated_tokens_total).",
   "suffix: tok/s", [(by_stage_rate("rlhf_generated_tokens_total"), "{{stage}}")], w=8)
ts("Trained tokens/s", "Non-padding tokens the learner ran forward and backward per second; PPO epochs count each pass (rate of rlhf_trained_tokens_total).",
   "suffix: tok/s", [(by_stage_rate("rlhf_trained_tokens_total"), "{{stage}}")], w=8)
ts("Optimizer steps/s", "Optimizer steps per second; one PPO step is one rollout batch's update (rate of rlhf_steps_total).",
   "suffix: steps/s", [(by_stage_rate("rlhf_steps_total"), "{{stage}}")], w=8)
ts("Samples/s by actor", "Sequences each actor generated, scored or trained on per second (rate of rlhf_samples_total).",
   "suffix: seq/s", [(by_actor_rate("rlhf_samples_total"), "{{actor}}")], w=8)
ts("Batches/s by actor", "Batches each actor processed per second (rate of rlhf_batches_total).",
   "suffix: batches/s", [(by_actor_rate("rlhf_batches_total"), "{{actor}}")], w=8)
stat("Stage progress", "Fraction of each stage's configured steps done (rlhf_stage_progress_ratio).",
     "percentunit", [(gauge("rlhf_stage_progress_ratio"), "{{stage}}")], w=4, minv=0, maxv=1)
stat("Steps done", "Optimizer steps completed per stage (rlhf_steps_total).",
     "none", [(f"sum by (stage) (rlhf_steps_total{S})", "{{stage}}")], w=4, decimals=0)

# Learning.
row("Learning")
ts("Reward score (batch mean)", "Mean reward-model score of the last rollout batch (rlhf_reward_score_mean).",
   "none", [(gauge("rlhf_reward_score_mean"), "{{stage}}")])
ts("Reward score distribution", "p10, p50 and p90 of the per-response reward-model scores over the rate window (rlhf_reward_score histogram).",
   "none", [(quantile(0.1, "rlhf_reward_score"), "p10 {{stage}}"),
            (quantile(0.5, "rlhf_reward_score"), "p50 {{stage}}"),
            (quantile(0.9, "rlhf_reward_score"), "p90 {{stage}}")])
ts("Shaped reward", "Mean per-sequence reward PPO optimised: score minus the KL penalty (rlhf_shaped_reward_mean).",
   "none", [(gauge("rlhf_shaped_reward_mean"), "{{stage}}")])
ts("Monitor score", "Mean score of the logged-only monitor, the embedded world's gold labeler; diverging from the reward shows over-optimisation (rlhf_monitor_score_mean).",
   "none", [(gauge("rlhf_monitor_score_mean"), "{{stage}}")])
ts("KL from the reference", "Mean per-sequence KL divergence of the policy from the reference policy (rlhf_kl_nats).",
   "suffix: nats", [(gauge("rlhf_kl_nats"), "{{stage}}")])
ts("KL coefficient", "KL penalty coefficient beta, adaptive when a KL target is set (rlhf_kl_coef).",
   "none", [(gauge("rlhf_kl_coef"), "{{stage}}")])
ts("Entropy", "Entropy of the sampling distribution per response token (rlhf_entropy_nats).",
   "suffix: nats", [(gauge("rlhf_entropy_nats"), "{{stage}}")])
ts("Clip ratios", "Fraction of response tokens where PPO's clipped surrogate (policy) or the clipped value error (value) was active (rlhf_clip_ratio, rlhf_value_clip_ratio).",
   "percentunit", [(gauge("rlhf_clip_ratio"), "policy {{stage}}"),
                   (gauge("rlhf_value_clip_ratio"), "value {{stage}}")], minv=0)
ts("Approximate KL of the update", "k3 estimate of KL(pi_old || pi) per token over the PPO update (rlhf_approx_kl_nats).",
   "suffix: nats", [(gauge("rlhf_approx_kl_nats"), "{{stage}}")])
ts("Policy and value loss", "PPO clipped policy loss and value-function loss (rlhf_policy_loss, rlhf_value_loss).",
   "none", [(gauge("rlhf_policy_loss"), "policy {{stage}}"),
            (gauge("rlhf_value_loss"), "value {{stage}}")])
ts("Pretraining loss (PPO-ptx)", "Pretraining negative log-likelihood per token in PPO-ptx (rlhf_ptx_loss_nats).",
   "suffix: nats", [(gauge("rlhf_ptx_loss_nats"), "{{stage}}")])
ts("Supervised loss", "Training loss of the last step of a supervised stage: NLL per token for pretraining and SFT, the K-wise ranking loss for the reward model, the preference loss for DPO (rlhf_loss).",
   "none", [(gauge("rlhf_loss"), "{{stage}}")])
ts("Ranking accuracy", "Fraction of ranked pairs the reward model (DPO: the implicit reward) orders like the labels in the last step (rlhf_accuracy_ratio).",
   "percentunit", [(gauge("rlhf_accuracy_ratio"), "{{stage}}")], minv=0, maxv=1)
ts("Reward margin", "Mean reward margin r(better) - r(worse) over the last step's ranked pairs: the reward model's, or DPO's implicit reward's (rlhf_reward_margin).",
   "none", [(gauge("rlhf_reward_margin"), "{{stage}}")])
ts("DPO implicit rewards", "DPO: mean implicit reward beta * (log pi - log pi_ref) of each pair's better (chosen) and worse (rejected) response in the last step (rlhf_chosen_reward, rlhf_rejected_reward).",
   "none", [(gauge("rlhf_chosen_reward"), "chosen {{stage}}"),
            (gauge("rlhf_rejected_reward"), "rejected {{stage}}")])
ts("DPO implicit KL", "DPO: mean log pi - log pi_ref of a ranked response in the last step, nats per response (rlhf_implicit_kl_nats).",
   "suffix: nats", [(gauge("rlhf_implicit_kl_nats"), "{{stage}}")])
ts("Gradient norm", "Global gradient norm before clipping; PPO: the policy's (rlhf_grad_norm).",
   "none", [(gauge("rlhf_grad_norm"), "{{stage}}")])
ts("Learning rate", "Learning rate of the last optimizer step (rlhf_learning_rate).",
   "sci", [(gauge("rlhf_learning_rate"), "{{stage}}")])
ts("Generator/learner log-prob gap", "Mean |log mu - log pi_old| per token between the generator's and the learner's log-probs of the same weights, on fresh batches only; ~0 when in sync (rlhf_logprob_gap_nats).",
   "suffix: nats", [(gauge("rlhf_logprob_gap_nats"), "{{stage}}")])
ts("Policy drift", "Mean |log mu - log pi_old| per token on stale batches: how far the learner moved since the generator's weights (rlhf_policy_drift_nats).",
   "suffix: nats", [(gauge("rlhf_policy_drift_nats"), "{{stage}}")])

# Phases.
row("Phases")
phases = [
    ("Generation", "generation", "rlhf_generation_duration_seconds", "sampling one rollout batch (replicas' seconds, summed over its chunks)"),
    ("Reference log-probs", "reference", "rlhf_reference_duration_seconds", "the reference replicas adding log-probs to one rollout batch (summed over its chunks)"),
    ("Reward scoring", "reward", "rlhf_reward_duration_seconds", "the reward replicas scoring one rollout batch (summed over its chunks)"),
    ("Learner step", "learner", "rlhf_learner_step_duration_seconds", "the learner's forward, backward and optimizer passes for one step"),
    ("Weight sync", "weight sync", "rlhf_weight_sync_duration_seconds", "copying the learner's new weights out for the generator replicas"),
    ("Queue wait", "queue wait", "rlhf_queue_wait_duration_seconds", "the learner waiting for the next scored rollout batch (idle learner)"),
    ("Whole step", "step", "rlhf_step_duration_seconds", "one whole training step as the stage's loop sees it"),
]
ts("Mean phase durations", "Mean wall time of each phase over the rate window: rate of _sum over rate of _count of each *_duration_seconds histogram.",
   "s", [(mean(m), f"{short} {{{{stage}}}}") for (_, short, m, _) in phases])
for title, short, m, what in phases:
    ts(f"{title} duration p50/p90", f"Median and 90th percentile wall time of {what} ({m}).",
       "s", [(quantile(0.5, m), "p50 {{stage}}"), (quantile(0.9, m), "p90 {{stage}}")])

# Actors.
row("Actors")
ts("Actor utilisation", "Busy fraction of each actor's worker thread: seconds of work per second, 100% is an actor that never waits (rate of rlhf_actor_work_duration_seconds_sum).",
   "percentunit", [("sum by (actor) (rate(rlhf_actor_work_duration_seconds_sum[$__rate_interval]))", "{{actor}}")], w=8, minv=0)
ts("Actor job duration p50/p90", "Median and 90th percentile wall time of one job on each actor's thread (rlhf_actor_work_duration_seconds).",
   "s", [("histogram_quantile(0.5, sum by (le, actor) (rate(rlhf_actor_work_duration_seconds_bucket[$__rate_interval])))", "p50 {{actor}}"),
         ("histogram_quantile(0.9, sum by (le, actor) (rate(rlhf_actor_work_duration_seconds_bucket[$__rate_interval])))", "p90 {{actor}}")], w=8)
ts("Policy version by actor", "Version of the policy weights each actor holds, the learner's count of updates (rlhf_policy_version).",
   "none", [("rlhf_policy_version", "{{actor}}")], w=8, decimals=0)
ts("Rollout staleness", "How many updates behind the learner the weights that generated the last batch were; bounded by max_staleness (rlhf_rollout_staleness_versions).",
   "none", [(gauge("rlhf_rollout_staleness_versions"), "{{stage}}")], w=12, decimals=0, minv=0)
ts("Rollout queue depth", "Scored rollout batches waiting for the learner, at most max(max_staleness, 1) (rlhf_rollout_queue_batches).",
   "none", [(gauge("rlhf_rollout_queue_batches"), "{{stage}}")], w=12, decimals=0, minv=0)
ts("Chunks waiting per actor kind", "Rollout chunks queued for the replicas of each actor kind: a stage whose queue stays full is the producer's bottleneck (rlhf_actor_queue_chunks).",
   "none", [("rlhf_actor_queue_chunks", "{{actor}}")], w=8, decimals=0, minv=0)
ts("Weight loads by replica", "Bytes of policy weights each generator replica loaded per second (rate of rlhf_weight_load_bytes_total).",
   "Bps", [(by_actor_rate("rlhf_weight_load_bytes_total"), "{{actor}}")], w=8, minv=0)
ts("Weight load duration p50/p90", "Median and 90th percentile wall time of a generator replica loading newer weights before its next chunk (rlhf_weight_load_duration_seconds).",
   "s", [("histogram_quantile(0.5, sum by (le, actor) (rate(rlhf_weight_load_duration_seconds_bucket[$__rate_interval])))", "p50 {{actor}}"),
         ("histogram_quantile(0.9, sum by (le, actor) (rate(rlhf_weight_load_duration_seconds_bucket[$__rate_interval])))", "p90 {{actor}}")], w=8)
ts("Staleness distribution", "Share of trained batches at each staleness, in updates behind the learner, over the rate window (rlhf_batch_staleness_versions histogram).",
   "percentunit", [(f"sum by (le, stage) (rate(rlhf_batch_staleness_versions_bucket{S}{RI})) / ignoring(le) group_left sum by (stage) (rate(rlhf_batch_staleness_versions_count{S}{RI}))", "<= {{le}} {{stage}}")], w=24, minv=0, maxv=1)

# Health.
row("Health")
ts("Actor errors/s", "Messages each actor answered with an error, per second (rate of rlhf_actor_errors_total).",
   "suffix: errors/s", [(by_actor_rate("rlhf_actor_errors_total"), "{{actor}}")], w=10, minv=0)
stat("Actor errors", "Messages each actor answered with an error since the process started (rlhf_actor_errors_total).",
     "none", [("sum by (actor) (rlhf_actor_errors_total)", "{{actor}}")], w=4, decimals=0,
     thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}])
stat("Actor restarts", "Times each actor was replaced and went on, e.g. a remote reward node that rejoined (rlhf_actor_restarts_total).",
     "none", [("sum by (actor) (rlhf_actor_restarts_total)", "{{actor}}")], w=4, decimals=0,
     thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}])
stat("Skipped steps", "Training steps skipped for a NaN or infinite loss or gradient norm (on_nan = \"skip\"), per stage (rlhf_skipped_steps_total).",
     "none", [("sum by (stage) (rlhf_skipped_steps_total{stage=~\"$stage\"})", "{{stage}}")], w=4, decimals=0,
     thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}])
ts("Resident memory", "Resident memory of the trainer process (rlhf_process_resident_memory_bytes).",
   "bytes", [("rlhf_process_resident_memory_bytes", "resident")], w=24, minv=0)

dashboard = {
    "__inputs": [{
        "name": "DS_PROMETHEUS", "label": "Prometheus",
        "description": "The Prometheus that scrapes the rlhf exporter",
        "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus",
    }],
    "__elements": {},
    "__requires": [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
    ],
    "annotations": {"list": [{
        "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts", "type": "dashboard",
    }]},
    "description": "The rlhf trainer's Prometheus metrics (src/metric_names.rs): throughput, learning curves, phase durations, the PPO actor system and process health.",
    "editable": True,
    "fiscalYearStartMonth": 0,
    "graphTooltip": 1,
    "id": None,
    "links": [],
    "liveNow": False,
    "panels": panels,
    "refresh": "10s",
    "schemaVersion": 39,
    "tags": ["rlhf", "training"],
    "templating": {"list": [
        {
            "name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "regex": "", "refresh": 1, "hide": 0,
            "includeAll": False, "multi": False, "options": [],
            "current": {"selected": False, "text": "Prometheus", "value": "${DS_PROMETHEUS}"},
        },
        {
            "name": "stage", "label": "Stage", "type": "query", "datasource": DS,
            "definition": "label_values(rlhf_steps_total, stage)",
            "query": "label_values(rlhf_steps_total, stage)",
            "refresh": 2, "regex": "", "sort": 1, "hide": 0,
            "multi": True, "includeAll": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
        },
    ]},
    "time": {"from": "now-1h", "to": "now"},
    "timepicker": {},
    "timezone": "",
    "title": "rlhf trainer",
    "uid": "rlhf-trainer",
    "version": 1,
    "weekStart": "",
}

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "rlhf.json"), "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
