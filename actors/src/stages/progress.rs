//! Progress of long work: a bar on a terminal, periodic log lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    every: u64,
    label: String,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} eta {eta} {msg}",
                )
                .expect("valid template"),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        // Without a terminal: about twenty log lines per stage.
        Progress {
            bar,
            total,
            done: 0,
            every: (total / 20).max(1),
            label: label.to_string(),
        }
    }

    /// Units already done before this run (a resumed stage).
    pub fn skip(&mut self, done: u64) {
        self.done = done;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// One unit done; `message` summarises the latest figures.
    pub fn inc(&mut self, message: &str) {
        self.done += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_message(message.to_string());
                bar.inc(1);
            }
            None if self.done.is_multiple_of(self.every) || self.done == self.total => {
                tracing::info!("{} {}/{} {message}", self.label, self.done, self.total);
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }
}
