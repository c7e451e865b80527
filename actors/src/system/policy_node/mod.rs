//! Generator and reference replicas on other processes (`rlhf node --role generator` or
//! `reference`, counted by `[ppo.actors.<kind>] nodes`). The trainer listens
//! ([`link::Cluster`], `[ppo.cluster]`); each node joins with the cluster secret, serves
//! its policy ([`node`]), and the trainer gives it a stand-in actor ([`proxy`]) that the
//! producer uses like a local replica. [`wire`] is what crosses between them.

pub mod link;
pub mod node;
pub mod proxy;
pub mod wire;
