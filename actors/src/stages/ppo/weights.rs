//! The policy weights the generator replicas sample with, published by the consumer after
//! every step and taken by the producer for each batch. Batch k is sampled with the weights
//! after step `k - max_staleness` exactly (the initial policy before that): whichever
//! replica generates a chunk, and however fast the learner runs, a batch's weights are
//! fixed by its index, so a run does not depend on timing or on the replica layout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tch::Tensor;
use tokio::sync::watch;

/// The policy after a step: the learner's version, and its tensors (none for version 0,
/// the initial policy every replica starts with). A replica holding the version has them.
pub struct Published {
    pub version: u64,
    tensors: Option<Mutex<Vec<(String, Tensor)>>>,
}

impl Published {
    /// The initial policy, which the replicas load themselves.
    pub fn initial() -> Published {
        Published {
            version: 0,
            tensors: None,
        }
    }

    pub fn new(version: u64, tensors: Vec<(String, Tensor)>) -> Published {
        Published {
            version,
            tensors: Some(Mutex::new(tensors)),
        }
    }

    /// The tensors, sharing storage (a replica's load copies them); none for version 0.
    pub fn tensors(&self) -> Option<Vec<(String, Tensor)>> {
        let tensors = self.tensors.as_ref()?;
        let tensors = tensors.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            tensors
                .iter()
                .map(|(name, t)| (name.clone(), t.shallow_clone()))
                .collect(),
        )
    }
}

/// The published steps not yet passed by the producer.
#[derive(Clone)]
pub struct WeightBoard {
    steps: watch::Sender<BTreeMap<u64, Arc<Published>>>,
}

impl WeightBoard {
    /// A board holding `first` as the weights after `step`: the initial policy, or a
    /// resumed run's weights.
    pub fn new(step: u64, first: Published) -> WeightBoard {
        let (steps, _) = watch::channel(BTreeMap::from([(step, Arc::new(first))]));
        WeightBoard { steps }
    }

    /// Publish the weights after `step`.
    pub fn publish(&self, step: u64, published: Published) {
        self.steps.send_modify(|steps| {
            steps.insert(step, Arc::new(published));
        });
    }

    /// Publish after a step that changed nothing (a skipped update): the newest weights
    /// again, under `step` (the same version, so no replica loads them again).
    pub fn republish(&self, step: u64) {
        self.steps.send_modify(|steps| {
            if let Some(newest) = steps.values().next_back().cloned() {
                steps.insert(step, newest);
            }
        });
    }

    /// The weights after `step`, once published (this board holds a sender, so it waits
    /// until then), dropping every older step: the producer asks in order.
    pub async fn take(&self, step: u64) -> Arc<Published> {
        let mut seen = self.steps.subscribe();
        let published = match seen.wait_for(|steps| steps.contains_key(&step)).await {
            Ok(steps) => steps.get(&step).cloned().expect("present"),
            Err(_) => unreachable!("the board holds its own sender"),
        };
        self.steps
            .send_modify(|steps| steps.retain(|&s, _| s >= step));
        published
    }
}
