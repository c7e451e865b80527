//! The actor system. Every actor keeps its tensor work on a dedicated thread ([`worker`])
//! so the tokio runtime, and with it the metrics endpoint and supervision, stays
//! responsive. Actor structs are empty, their state lives in `State`, each has one message
//! enum, and every request goes through the one RPC helper, [`rpc::ask`].
//!
//! - [`learner`]: the only actor that changes trainable weights (SFT, RM and PPO).
//! - [`generator`], [`scorers`]: PPO's generator, reference-policy and reward actors.
//! - [`reward`]: the reward contract and its kinds; [`node`]: serving an actor as a cluster
//!   node; [`cluster`]: the cluster plumbing both sides share; [`policy_node`]: generator
//!   and reference replicas on nodes.
//! - [`supervisor`]: links a run's actors, so one that dies is reported by name at once.
//! - [`shutdown`], [`telemetry`], [`process`], [`serial`], [`allocator`]: signals, metrics,
//!   this process's memory and CPU figures, the wire format, and the allocator setting
//!   every binary applies first.

pub mod allocator;
pub mod cluster;
pub mod generator;
pub mod learner;
pub mod node;
pub mod policy_node;
pub mod process;
pub mod reward;
pub mod rpc;
pub mod scorers;
pub mod serial;
pub mod shutdown;
pub mod supervisor;
pub mod telemetry;
pub mod worker;

/// The actor runtime: two async workers are plenty, tensor work runs on actor threads.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
