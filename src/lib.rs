//! The `rlhf` engine: everything InstructGPT's three stages compute (SFT, a K-wise reward
//! model, PPO and PPO-ptx), as plain functions and structs on tensors. No async runtime
//! and no actors live here (those are in the `rlhf-actors` crate), so every piece can be
//! tested on its own.
//!
//! # Layout
//!
//! Models
//! - [`model`]: GPT-2, the Llama family, GPT-NeoX and Gemma 2 in Hugging Face layout (one
//!   file per architecture), the KV cache, LM and scalar heads, safetensors I/O.
//! - [`generate`]: batched generation over left-padded prompts with a caller-owned cache.
//! - [`sampling`]: greedy, temperature, top-k, top-p on caller-supplied uniforms.
//! - [`tokenizer`], [`template`]: `tokenizer.json`, BPE training; chat templates (the
//!   model's Jinja `chat_template` as transformers renders it, or the built-in one).
//! - [`generation_config`]: stop ids and sampling defaults of `generation_config.json`.
//! - [`text_side`]: a folder's tokenizer, chat template and generation config together.
//!
//! Data
//! - [`data`]: the JSONL formats users bring, tokenization, collation, batch order.
//! - [`rollout`]: [`rollout::RolloutBatch`], the unit of work of stage 3, and the scoring
//!   passes over it.
//!
//! Training math
//! - [`losses`]: SFT cross-entropy and the K-wise reward-model loss.
//! - [`dpo`]: DPO on rankings (Plackett-Luce or pairs; sigmoid, cDPO, IPO).
//! - [`optim`], [`schedule`]: AdamW with saveable state; cosine and constant schedules.
//! - [`train`]: [`train::Trainer`], one model + optimizer + schedule (SFT, RM, DPO,
//!   pretraining).
//! - [`eval`]: bootstrap intervals, win rates, pairwise reward-model agreement.
//!
//! PPO
//! - [`ppo`]: KL, shaped rewards, GAE, clipped losses, and [`ppo::PpoLearner`], the update
//!   on one rollout batch.
//!
//! Config
//! - [`config`]: the run configuration (TOML), one file per section.
//! - [`device`]: devices and dtypes as users spell them.
//!
//! The embedded world
//! - [`world`]: the synthetic instruction world and its gold labeler, so the main command
//!   runs with no downloads.
//!
//! Infrastructure
//! - [`checkpoint`]: atomic checkpoint folders with checksummed manifests.
//! - [`metric_names`]: every exported metric's name and description.
//! - [`rng`]: SplitMix64, the source of every random draw.
//! - [`error`]: the error type; user errors name the file and the line, key or tensor.
//! - [`faults`]: the test-only fault-injection seam (feature `fault-injection`).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod dpo;
pub mod error;
pub mod eval;
pub mod faults;
pub mod generate;
pub mod generation_config;
pub mod losses;
pub mod metric_names;
pub mod model;
pub mod optim;
pub mod plan;
pub mod ppo;
pub mod rng;
pub mod rollout;
pub mod sampling;
pub mod schedule;
pub mod template;
pub mod text_side;
pub mod tokenizer;
pub mod train;
pub mod world;

pub use error::{Error, Result};
