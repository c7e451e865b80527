//! SIGINT and SIGTERM: a running stage finishes its current step, checkpoints and exits 0.
//! One listener per process; every stage that asks gets a receiver that turns true.

use std::sync::OnceLock;
use tokio::sync::watch;

static SIGNALLED: OnceLock<watch::Sender<bool>> = OnceLock::new();

/// A receiver that becomes true on SIGINT or SIGTERM (call inside the tokio runtime).
pub fn listen() -> watch::Receiver<bool> {
    SIGNALLED
        .get_or_init(|| {
            let (tx, _) = watch::channel(false);
            let notify = tx.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut term) = signal(SignalKind::terminate()) else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                let _ = notify.send(true);
            });
            tx
        })
        .subscribe()
}

/// Whether a shutdown was asked for.
pub fn requested() -> bool {
    SIGNALLED.get().is_some_and(|tx| *tx.borrow())
}
