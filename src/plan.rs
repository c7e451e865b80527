//! The memory plan: before a run loads anything, the bytes each actor will hold on each
//! device (weights, gradients, optimizer state, KV cache, activations, and the rest), from
//! the configuration and the models' `config.json` alone, and the check that every
//! device's sum fits its budget (`rlhf plan`; every training command runs it at start).
//!
//! What is counted, per actor:
//! - weights: every parameter in the stage's dtype; LoRA adapters (`A` [r, in], `B`
//!   [out, r]) in f32 beside them.
//! - gradients: the trainable parameters, in their own dtype (with LoRA: the adapters and
//!   a scalar head only; the base is frozen).
//! - optimizer: AdamW's two f32 moments (8 B per trainable parameter) plus an f32 master
//!   copy (4 B) of each bf16/f16 trainable parameter (see [`crate::optim`]).
//! - KV cache: a generator's cache, `2 x layers x rows x kv_heads x (prompt + new tokens)
//!   x head_dim` in the dtype, rows being one rollout chunk.
//! - activations: what the forward pass keeps for the backward pass, per layer and token
//!   ([`layer_elements`]), the attention probabilities (`heads x seq` per token), and the
//!   logits (PPO: of the response positions only) with their f32 log-softmax and both
//!   gradients; with gradient checkpointing only
//!   each block's input per layer plus one block's full activations. Inference-only actors
//!   hold one layer's transients and their logits.
//! - other: the PPO learner's weight copies published to the generators (one per version
//!   in flight, `max_staleness + 1`) and, with `on_nan = "skip"` and more than one
//!   minibatch step, its rollback snapshot (weights and optimizer state); on CPU the
//!   process's fixed libtorch/runtime footprint, once ([`CPU_RUNTIME_BYTES`]), and on
//!   each CUDA device its context ([`CUDA_RUNTIME_BYTES`]).
//!
//! The activation constants were calibrated against the peak resident memory of a
//! GPT-2-small-shaped model on CPU (README, "Memory plan").

use crate::config::{canonical_device, PpoStage, StageConfig};
use crate::device::DType;
use crate::model::lora::LoraConfig;
use crate::model::{Architecture, ModelConfig};
use crate::ppo::Baseline;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Resident memory of an `rlhf` process on CPU before any model is built: libtorch's code
/// and allocator pools, the tokio runtime, the tokenizer (measured: see the README).
pub const CPU_RUNTIME_BYTES: u64 = 256 << 20;

/// Device memory a process takes on each CUDA device before any tensor: the CUDA context,
/// cuBLAS workspaces and the caching allocator's first blocks (typical figures are
/// 300-600 MiB; not measured here).
pub const CUDA_RUNTIME_BYTES: u64 = 512 << 20;

/// f32 copies of the logits alive at the loss's peak, per logit element, besides the
/// logits themselves in the model's dtype: the f32 log-softmax kept for the backward pass
/// and its gradient (the logits' gradient reuses the logits' size in the dtype).
const LOGIT_F32_COPIES: u64 = 2;

/// Bytes of one element of `dtype`.
pub fn dtype_bytes(dtype: DType) -> u64 {
    match dtype {
        DType::F32 => 4,
        DType::Bf16 | DType::F16 => 2,
    }
}

/// The memory of one actor (replica) on one device, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bytes {
    pub weights: u64,
    pub grads: u64,
    pub optimizer: u64,
    pub kv_cache: u64,
    pub activations: u64,
    pub other: u64,
}

impl Bytes {
    pub fn total(&self) -> u64 {
        self.weights + self.grads + self.optimizer + self.kv_cache + self.activations + self.other
    }

    fn add(&mut self, other: Bytes) {
        self.weights += other.weights;
        self.grads += other.grads;
        self.optimizer += other.optimizer;
        self.kv_cache += other.kv_cache;
        self.activations += other.activations;
        self.other += other.other;
    }
}

/// One row of the plan: an actor (or replica) on a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `learner`, `generator`, `generator[1]`, `reference`, `reward`, or `runtime`.
    pub actor: String,
    /// The canonical device (`cpu`, `cuda:N`).
    pub device: String,
    pub bytes: Bytes,
}

/// Every actor's memory, and what the plan assumed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub entries: Vec<Entry>,
    /// Assumptions worth a line under the table (shared copies, K of a ranking).
    pub notes: Vec<String>,
}

/// A device whose actors need more than its budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Shortfall {
    /// The actors on the device, as they are named in the plan.
    pub actors: Vec<String>,
    pub device: String,
    pub need: u64,
    pub have: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (who, verb) = match &self.actors[..] {
            [one] => (one.clone(), "needs"),
            many => (many.join(" + "), "need"),
        };
        write!(
            f,
            "plan: {who} on {} {verb} {}, the device has {} (short by {})",
            self.device,
            gib(self.need),
            gib(self.have),
            gib(self.need - self.have)
        )
    }
}

/// Bytes as GiB with one decimal (`91.2 GiB`), or MiB below one GiB.
pub fn gib(bytes: u64) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

impl Plan {
    /// Each device's total, in order of name.
    pub fn per_device(&self) -> BTreeMap<String, u64> {
        let mut sums = BTreeMap::new();
        for e in &self.entries {
            *sums.entry(e.device.clone()).or_insert(0) += e.bytes.total();
        }
        sums
    }

    /// The first device whose total exceeds `budget(device)` (None: unknown, not checked).
    pub fn check(&self, budget: impl Fn(&str) -> Option<u64>) -> Result<(), Shortfall> {
        for (device, need) in self.per_device() {
            let Some(have) = budget(&device) else {
                continue;
            };
            if need > have {
                let actors = self
                    .entries
                    .iter()
                    .filter(|e| e.device == device && e.actor != "runtime")
                    .map(|e| e.actor.clone())
                    .collect();
                return Err(Shortfall {
                    actors,
                    device,
                    need,
                    have,
                });
            }
        }
        Ok(())
    }

    fn push(&mut self, actor: impl Into<String>, device: &str, bytes: Bytes) {
        self.entries.push(Entry {
            actor: actor.into(),
            device: canonical_device(device),
            bytes,
        });
    }

    /// The runtime's fixed footprint, once per device that any actor uses: the CPU
    /// process's, or each CUDA device's context.
    fn add_runtime(&mut self) {
        let devices: std::collections::BTreeSet<String> =
            self.entries.iter().map(|e| e.device.clone()).collect();
        for device in devices {
            let other = if device == "cpu" {
                CPU_RUNTIME_BYTES
            } else {
                CUDA_RUNTIME_BYTES
            };
            self.push(
                "runtime",
                &device,
                Bytes {
                    other,
                    ..Bytes::default()
                },
            );
        }
    }
}

/// What a model head is: the LM head (logits over the vocabulary) or a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    LanguageModel,
    Scalar,
}

/// Parameters of the model with `head` (a scalar head replaces a tied LM head's use of the
/// embedding, or an untied LM head, with `hidden` weights and no bias, as HF's `score`).
pub fn parameters(model: &ModelConfig, head: Head) -> u64 {
    let base = model.num_parameters() as u64;
    let (v, d) = (model.vocab_size as u64, model.hidden_size as u64);
    match head {
        Head::LanguageModel => base,
        Head::Scalar => {
            let lm_head = if model.arch == Architecture::Gpt2 || model.tie_embeddings {
                0
            } else {
                v * d
            };
            base - lm_head + d
        }
    }
}

/// The linear layers of one block: (name under the block, in, out).
fn block_linears(model: &ModelConfig) -> Vec<(&'static str, i64, i64)> {
    let d = model.hidden_size;
    let ff = model.intermediate_size;
    let q = model.num_heads * model.head_dim;
    let kv = model.num_kv_heads * model.head_dim;
    match model.arch {
        Architecture::Gpt2 => vec![
            ("attn.c_attn", d, 3 * d),
            ("attn.c_proj", d, d),
            ("mlp.c_fc", d, ff),
            ("mlp.c_proj", ff, d),
        ],
        Architecture::Llama | Architecture::Gemma2 => vec![
            ("self_attn.q_proj", d, q),
            ("self_attn.k_proj", d, kv),
            ("self_attn.v_proj", d, kv),
            ("self_attn.o_proj", q, d),
            ("mlp.gate_proj", d, ff),
            ("mlp.up_proj", d, ff),
            ("mlp.down_proj", ff, d),
        ],
        Architecture::NeoX => vec![
            ("attention.query_key_value", d, 3 * d),
            ("attention.dense", d, d),
            ("mlp.dense_h_to_4h", d, ff),
            ("mlp.dense_4h_to_h", ff, d),
        ],
    }
}

/// The blocks' path as the weights name it (`transformer.h`, `model.layers`, ...).
fn blocks_path(model: &ModelConfig) -> &'static str {
    match model.arch {
        Architecture::Gpt2 => "transformer.h",
        Architecture::Llama | Architecture::Gemma2 => "model.layers",
        Architecture::NeoX => "gpt_neox.layers",
    }
}

/// Adapter parameters of `lora` on `model`: `rank x (in + out)` per targeted linear layer.
pub fn lora_parameters(model: &ModelConfig, lora: &LoraConfig) -> u64 {
    let mut n = 0;
    for layer in 0..model.num_layers {
        for (name, input, output) in block_linears(model) {
            let module = format!("{}.{layer}.{name}", blocks_path(model));
            if lora.targets_module(&module) {
                n += (lora.rank * (input + output)) as u64;
            }
        }
    }
    n
}

/// Output elements per token of the adapted linear layers of one block (block 0 stands
/// for every block): a LoRA forward keeps about that much more per layer in f32 than full
/// fine-tuning does (measured on GPT-2 small, 1.3 GiB more at 4096 tokens with every layer
/// adapted, SFT and RM alike; see the README), so the plan counts it.
pub fn adapted_outputs(model: &ModelConfig, lora: &LoraConfig) -> u64 {
    block_linears(model)
        .into_iter()
        .filter(|(name, _, _)| lora.targets_module(&format!("{}.0.{name}", blocks_path(model))))
        .map(|(_, _, output)| output as u64)
        .sum()
}

/// Elements each token keeps per layer for the backward pass (no dropout masks): the norms'
/// inputs and outputs, q/k/v, the attention output, the MLP's hidden activations.
pub fn layer_elements(model: &ModelConfig) -> u64 {
    let d = model.hidden_size as u64;
    let ff = model.intermediate_size as u64;
    let q = (model.num_heads * model.head_dim) as u64;
    let kv = (model.num_kv_heads * model.head_dim) as u64;
    match model.arch {
        // ln1 in/out, qkv, attention out, ln2 in/out, fc out, gelu out.
        Architecture::Gpt2 | Architecture::NeoX => 5 * d + (q + 2 * kv) + 2 * ff,
        // norm in/out twice, q/k/v, attention out, gate, up, act(gate), act * up.
        Architecture::Llama => 4 * d + (q + 2 * kv) + q + 4 * ff,
        // and Gemma's two post-norms.
        Architecture::Gemma2 => 6 * d + (q + 2 * kv) + q + 4 * ff,
    }
}

/// One forward (and, with `train`, backward) pass of `rows` sequences of `seq` tokens.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub rows: u64,
    pub seq: u64,
    /// Positions of each row that get logits (the LM head): every one in SFT, the
    /// response's in PPO's scoring and training.
    pub logit_positions: u64,
    pub head: Head,
    pub train: bool,
    pub checkpointing: bool,
    /// [`adapted_outputs`] of a LoRA model that trains (0 otherwise).
    pub adapted: u64,
}

/// Blocks' worth of activations alive while one block is recomputed: its graph, the
/// gradients flowing in and out, and the allocator's slack; calibrated on GPT-2 small (SFT
/// and RM at 4096 tokens, where planning one block's worth fell 0.7-1.0 GiB short).
const RECOMPUTE_BLOCKS: u64 = 4;

/// Activation bytes of a pass at its peak. Each layer also keeps its attention
/// probabilities, `heads x seq` per token: libtorch's attention on the CPU materialises
/// them (measured: see the README); a fused CUDA kernel would not, so there the plan errs
/// high.
pub fn activation_bytes(model: &ModelConfig, dtype: DType, pass: Pass) -> u64 {
    let e = dtype_bytes(dtype);
    let tokens = pass.rows * pass.seq;
    let d = model.hidden_size as u64;
    let layers = model.num_layers as u64;
    let scores = model.num_heads as u64 * pass.seq;
    let per_layer = tokens * ((layer_elements(model) + scores) * e + 4 * pass.adapted);
    let body = if !pass.train {
        // One layer's transients at a time, and the hidden state it reads.
        per_layer + tokens * d * e
    } else if pass.checkpointing {
        layers * tokens * d * e + RECOMPUTE_BLOCKS.min(layers) * per_layer
    } else {
        layers * per_layer
    };
    let logits = match pass.head {
        Head::Scalar => 0,
        Head::LanguageModel => {
            let n = pass.rows * pass.logit_positions * model.vocab_size as u64;
            if pass.train {
                // logits and their gradient in the dtype, log-softmax and its gradient in f32.
                n * (2 * e + 4 * LOGIT_F32_COPIES)
            } else {
                n * (e + 4)
            }
        }
    };
    body + logits
}

/// Weights, gradients and optimizer state of one trained model.
fn trained(model: &ModelConfig, head: Head, dtype: DType, lora: Option<&LoraConfig>) -> Bytes {
    let e = dtype_bytes(dtype);
    let params = parameters(model, head);
    let master = |n: u64| if dtype == DType::F32 { 0 } else { 4 * n };
    match lora {
        None => Bytes {
            weights: params * e,
            grads: params * e,
            optimizer: 8 * params + master(params),
            ..Bytes::default()
        },
        Some(lora) => {
            let adapters = lora_parameters(model, lora);
            let head_params = match head {
                Head::Scalar => model.hidden_size as u64,
                Head::LanguageModel => 0,
            };
            Bytes {
                weights: params * e + 4 * adapters,
                grads: 4 * adapters + head_params * e,
                optimizer: 8 * (adapters + head_params) + master(head_params),
                ..Bytes::default()
            }
        }
    }
}

/// A frozen model's weights.
fn frozen(model: &ModelConfig, head: Head, dtype: DType) -> Bytes {
    Bytes {
        weights: parameters(model, head) * dtype_bytes(dtype),
        ..Bytes::default()
    }
}

/// The supervised stages' learner: `stage` is `pretrain`, `sft`, `rm` or `dpo`;
/// `responses` is K, the rows per prompt of a ranking (rm, dpo; 1 otherwise).
pub fn supervised(
    stage: &str,
    config: &StageConfig,
    model: &ModelConfig,
    responses: usize,
) -> Plan {
    let head = if stage == "rm" {
        Head::Scalar
    } else {
        Head::LanguageModel
    };
    let rows_per_example = if matches!(stage, "rm" | "dpo") {
        responses.max(1)
    } else {
        1
    };
    let mut bytes = trained(model, head, config.dtype, config.lora.as_ref());
    bytes.activations = activation_bytes(
        model,
        config.dtype,
        Pass {
            rows: (config.micro_batch_size() * rows_per_example) as u64,
            seq: config.max_seq_len as u64,
            logit_positions: config.max_seq_len as u64,
            head,
            train: true,
            checkpointing: config.gradient_checkpointing,
            adapted: config
                .lora
                .as_ref()
                .map_or(0, |l| adapted_outputs(model, l)),
        },
    );
    let mut plan = Plan::default();
    plan.push("learner", &config.device, bytes);
    if rows_per_example > 1 {
        plan.notes.push(format!(
            "{stage}: {responses} responses per prompt, {} rows per micro-batch",
            config.micro_batch_size() * rows_per_example
        ));
    }
    plan.add_runtime();
    plan
}

/// PPO's four actors: every local replica of the generator, reference and reward actors
/// and the learner (with the value model unless the baseline is `group`).
pub fn ppo(stage: &PpoStage, policy: &ModelConfig, reward: &ModelConfig) -> Plan {
    let mut plan = Plan::default();
    let dtype = stage.dtype;
    let e = dtype_bytes(dtype);
    let lora = stage.lora.as_ref();
    let chunks = stage.actors.chunks(stage.rollout_chunks).max(1);
    let chunk_rows = stage.rollout_batch_size.div_ceil(chunks) as u64;
    let new_tokens = stage.max_new_tokens.max(0) as u64;
    let seq = stage.max_prompt_len as u64 + new_tokens;
    let name = |kind: &str, i: usize, n: usize| {
        if n > 1 {
            format!("{kind}[{i}]")
        } else {
            kind.to_string()
        }
    };
    // With LoRA every actor on a device shares one copy of a model's frozen base
    // (`Model::share`): the first actor there holds it, the others only their adapters.
    let mut held = BTreeSet::new();
    let mut base = |model: &'static str, device: &str, bytes: u64| -> u64 {
        match lora.is_none() || held.insert((model, canonical_device(device))) {
            true => bytes,
            false => 0,
        }
    };
    let policy_base = frozen(policy, Head::LanguageModel, dtype).weights;
    let reward_base = frozen(reward, Head::Scalar, dtype).weights;
    // Generators: a policy copy (with its adapters), the KV cache, the prefill's transients.
    let generators = &stage.actors.generator;
    for i in 0..generators.replicas {
        let mut bytes = Bytes {
            weights: base("policy", generators.device_of(i), policy_base),
            ..Bytes::default()
        };
        if let Some(lora) = lora {
            bytes.weights += 4 * lora_parameters(policy, lora);
        }
        bytes.kv_cache = 2
            * (policy.num_layers * policy.num_kv_heads * policy.head_dim) as u64
            * chunk_rows
            * seq
            * e;
        let prefill = Pass {
            rows: chunk_rows,
            seq: stage.max_prompt_len as u64,
            logit_positions: 0,
            head: Head::Scalar,
            train: false,
            checkpointing: false,
            adapted: 0,
        };
        // The prefill's layer transients, and the sampling's f32 logits and probabilities.
        bytes.activations = activation_bytes(policy, dtype, prefill)
            + 3 * chunk_rows * policy.vocab_size as u64 * 4;
        plan.push(
            name("generator", i, generators.replicas),
            generators.device_of(i),
            bytes,
        );
    }
    // References: a frozen policy copy each, scoring a chunk's log-probs.
    let references = &stage.actors.reference;
    for i in 0..references.replicas {
        let device = canonical_device(references.device_of(i));
        let mut bytes = Bytes {
            weights: base("policy", &device, policy_base),
            ..Bytes::default()
        };
        bytes.activations = activation_bytes(
            policy,
            dtype,
            Pass {
                rows: chunk_rows,
                seq,
                logit_positions: new_tokens,
                head: Head::LanguageModel,
                train: false,
                checkpointing: false,
                adapted: 0,
            },
        );
        plan.push(name("reference", i, references.replicas), &device, bytes);
    }
    if lora.is_some() {
        plan.notes.push(
            "lora: one copy of each model's frozen base per device, counted at the first actor \
             there; the reference is the policy's base with its adapters off"
                .into(),
        );
    }
    // Reward replicas: the reward model (only when it scores), reading a chunk.
    if matches!(stage.reward, crate::config::RewardConfig::Model) {
        let rewards = &stage.actors.reward;
        for i in 0..rewards.replicas {
            let mut bytes = Bytes {
                weights: base("reward", rewards.device_of(i), reward_base),
                ..Bytes::default()
            };
            bytes.activations = activation_bytes(
                reward,
                dtype,
                Pass {
                    rows: chunk_rows,
                    seq,
                    logit_positions: 0,
                    head: Head::Scalar,
                    train: false,
                    checkpointing: false,
                    adapted: 0,
                },
            );
            plan.push(
                name("reward", i, rewards.replicas),
                rewards.device_of(i),
                bytes,
            );
        }
    }
    // The learner: the policy and (with a value baseline) the value model, trained.
    let algo = &stage.algo;
    let rows = stage.rollout_batch_size;
    let minibatch = algo.minibatch_size(rows) as u64;
    let pass = |head, model: &ModelConfig| Pass {
        rows: minibatch,
        seq,
        logit_positions: new_tokens,
        head,
        train: true,
        checkpointing: stage.gradient_checkpointing,
        adapted: lora.map_or(0, |l| adapted_outputs(model, l)),
    };
    let device = &stage.actors.learner.device;
    let mut learner = trained(policy, Head::LanguageModel, dtype, lora);
    learner.weights = learner.weights - policy_base + base("policy", device, policy_base);
    learner.activations = activation_bytes(policy, dtype, pass(Head::LanguageModel, policy));
    if algo.ptx_coef > 0.0 {
        learner.activations += activation_bytes(
            policy,
            dtype,
            Pass {
                rows: stage.ptx_batch_size as u64,
                seq: stage.ptx_seq_len as u64,
                logit_positions: stage.ptx_seq_len as u64,
                ..pass(Head::LanguageModel, policy)
            },
        );
    }
    let with_value = algo.baseline != Baseline::Group;
    if with_value {
        let mut value = trained(reward, Head::Scalar, dtype, lora);
        // With LoRA the value model's head is a copy of its own beside the shared base.
        let head = lora.map_or(0, |_| reward.hidden_size as u64 * e);
        value.weights = value.weights - reward_base + base("reward", device, reward_base) + head;
        value.activations = activation_bytes(reward, dtype, pass(Head::Scalar, reward));
        learner.add(value);
    }
    // Published weights for the generators: the adapters alone with LoRA.
    let published = match lora {
        Some(lora) => 4 * lora_parameters(policy, lora),
        None => parameters(policy, Head::LanguageModel) * e,
    };
    learner.other = (stage.max_staleness + 1) * published;
    if algo.on_nan == crate::config::OnNan::Skip && algo.optimizer_steps(rows) > 1 {
        // The rollback snapshot: the trained tensors and the optimizer state, of both
        // models (with LoRA the adapters and head alone, which is what their gradients hold).
        let mut snapshot = trained(policy, Head::LanguageModel, dtype, lora);
        if with_value {
            snapshot.add(trained(reward, Head::Scalar, dtype, lora));
        }
        learner.other += snapshot.grads + snapshot.optimizer;
        plan.notes.push(
            "learner: on_nan = \"skip\" keeps a rollback copy of the weights and optimizer \
             state (in `other`)"
                .into(),
        );
    }
    plan.push("learner", &stage.actors.learner.device, learner);
    if !with_value {
        plan.notes
            .push("learner: no value model (ppo.algo.baseline = \"group\")".into());
    }
    plan.add_runtime();
    plan
}

#[cfg(test)]
mod tests;
