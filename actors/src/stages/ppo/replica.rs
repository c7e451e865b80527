//! A replica of an actor kind and the names that label it in metrics, logs and errors.

use ractor::ActorRef;

/// One replica of an actor, with its name (the `actor` label of its metrics).
pub struct Replica<M: ractor::Message> {
    pub name: &'static str,
    pub actor: ActorRef<M>,
}

impl<M: ractor::Message> Clone for Replica<M> {
    fn clone(&self) -> Self {
        Replica {
            name: self.name,
            actor: self.actor.clone(),
        }
    }
}

/// The name of local replica `i` of `count` replicas (nodes included) of an actor `kind`:
/// the kind alone for a single replica, else `kind.i` (the `actor` label of its metrics).
/// Interned for the run: a run has a handful of replicas.
pub(super) fn replica_name(kind: &'static str, i: usize, count: usize) -> &'static str {
    match count {
        1 => kind,
        _ => intern(format!("{kind}.{i}")),
    }
}

pub(super) fn intern(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}
