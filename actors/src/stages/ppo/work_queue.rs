//! The queue the replicas of a producer stage share: each takes the next item when it is
//! free. A replica on a node that leaves the cluster hands its item back ([`WorkQueue::lost`])
//! and the others take it, so no episode is lost and none is done twice; the queue ends
//! only when its input has closed and no item is still out.

use crate::system::policy_node::link::is_lost;
use crate::system::telemetry;
use rlhf::metric_names::RESTARTS;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};
use tracing::warn;

pub struct WorkQueue<T>(Arc<Inner<T>>);

struct Inner<T> {
    input: tokio::sync::Mutex<mpsc::Receiver<T>>,
    /// Items handed back, taken before new ones.
    returned: Mutex<VecDeque<T>>,
    /// Items taken and neither done nor handed back.
    out: AtomicUsize,
    /// Replicas still serving.
    live: AtomicUsize,
    /// Rung when an item is handed back or done.
    changed: Notify,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue(self.0.clone())
    }
}

impl<T> WorkQueue<T> {
    /// A queue over `input` for `replicas` replicas.
    pub fn new(input: mpsc::Receiver<T>, replicas: usize) -> WorkQueue<T> {
        WorkQueue(Arc::new(Inner {
            input: tokio::sync::Mutex::new(input),
            returned: Mutex::new(VecDeque::new()),
            out: AtomicUsize::new(0),
            live: AtomicUsize::new(replicas),
            changed: Notify::new(),
        }))
    }

    /// One more replica serves the queue (a node that joined mid-run).
    pub fn add_replica(&self) {
        self.0.live.fetch_add(1, Ordering::SeqCst);
    }

    /// The next item: a handed-back one first; none once the input has closed and every
    /// item taken is done.
    pub async fn next(&self) -> Option<T> {
        let inner = &self.0;
        let mut input = inner.input.lock().await;
        let mut closed = false;
        loop {
            let changed = inner.changed.notified();
            if let Some(item) = self.take_returned() {
                return Some(item);
            }
            if closed {
                if inner.out.load(Ordering::SeqCst) == 0 {
                    return None;
                }
                changed.await;
                continue;
            }
            tokio::select! {
                item = input.recv() => match item {
                    Some(item) => {
                        inner.out.fetch_add(1, Ordering::SeqCst);
                        return Some(item);
                    }
                    None => closed = true,
                },
                _ = changed => {}
            }
        }
    }

    fn take_returned(&self) -> Option<T> {
        let item = self
            .0
            .returned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()?;
        self.0.out.fetch_add(1, Ordering::SeqCst);
        Some(item)
    }

    /// The item taken last by this replica is done.
    pub fn done(&self) {
        self.0.out.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }

    /// Replica `name` failed on `item` (chunk `index` of batch `batch`) with `error`. A
    /// node that left hands the item back and its replica stops serving (Ok, while other
    /// replicas remain); any other failure, or the loss of the last replica, is the
    /// run's error.
    pub fn lost(
        &self,
        name: &str,
        batch: u64,
        index: usize,
        item: T,
        error: anyhow::Error,
    ) -> anyhow::Result<()> {
        if !is_lost(&error) {
            return Err(error);
        }
        let live = self.0.live.fetch_sub(1, Ordering::SeqCst) - 1;
        if live == 0 {
            return Err(error.context(format!(
                "{name} was the last replica of its stage; chunk {index} of rollout batch {batch} has none left to run on"
            )));
        }
        warn!(
            "{name} is gone; chunk {index} of rollout batch {batch} goes to the {live} other \
             replica(s) ({error:#})"
        );
        telemetry::add(&RESTARTS, name, 1);
        self.0
            .returned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(item);
        self.0.out.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::policy_node::link::NodeLost;

    #[tokio::test]
    async fn a_lost_replicas_item_goes_to_another_and_the_queue_ends_after_it() {
        let (tx, rx) = mpsc::channel(4);
        let queue = WorkQueue::new(rx, 2);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        drop(tx);
        let first = queue.next().await.unwrap();
        let second = queue.next().await.unwrap();
        assert_eq!((first, second), (1, 2));
        // The input is closed, but item 1 is still out: the other replica waits for it.
        let other = queue.clone();
        let waiting = tokio::spawn(async move { other.next().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let lost =
            anyhow::Error::new(NodeLost("\"g\" (127.0.0.1:1)".into())).context("generator.g");
        queue.lost("generator.g", 0, 0, first, lost).unwrap();
        assert_eq!(waiting.await.unwrap(), Some(1));
        queue.done();
        queue.done();
        assert_eq!(queue.next().await, None);
    }

    #[tokio::test]
    async fn other_failures_and_the_last_replicas_loss_are_errors() {
        let (tx, rx) = mpsc::channel(1);
        let queue = WorkQueue::new(rx, 1);
        tx.send(7).await.unwrap();
        let item = queue.next().await.unwrap();
        let e = queue
            .lost("generator", 3, 1, item, anyhow::anyhow!("out of memory"))
            .unwrap_err();
        assert_eq!(e.to_string(), "out of memory");
        let e = queue
            .lost(
                "generator.g",
                3,
                1,
                item,
                NodeLost("\"g\" (x)".into()).into(),
            )
            .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "generator.g was the last replica of its stage; chunk 1 of rollout batch 3 has none \
             left to run on: node \"g\" (x) left the cluster"
        );
    }
}
