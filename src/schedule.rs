//! Learning-rate schedules: cosine decay to a floor (per epoch, as the InstructGPT paper
//! states for SFT and RM, or per optimiser step) or constant, each after an optional linear
//! warm-up. A schedule is a pure function of the step, so resuming needs only the step count.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// The shape of the decay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Cosine from the initial rate down towards `min_lr_ratio` times it.
    #[default]
    Cosine,
    /// The initial rate throughout (after warm-up).
    Constant,
}

/// What the cosine counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecayUnit {
    /// The rate changes once per epoch and is constant within one.
    #[default]
    Epoch,
    /// The rate changes every optimiser step.
    Step,
}

/// The learning-rate schedule section of a stage's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// `cosine` or `constant`.
    pub kind: ScheduleKind,
    /// `epoch` or `step`: the unit the cosine decays over.
    pub per: DecayUnit,
    /// Optimiser steps of linear warm-up (0: none).
    pub warmup_steps: u64,
    /// The cosine's floor as a fraction of the initial rate, in [0, 1].
    pub min_lr_ratio: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: ScheduleKind::Cosine,
            per: DecayUnit::Epoch,
            warmup_steps: 0,
            min_lr_ratio: 0.1,
        }
    }
}

impl ScheduleConfig {
    /// Checks every field; the message starts with the field's name.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(format!(
                "min_lr_ratio must be in [0, 1], got {}",
                self.min_lr_ratio
            ));
        }
        Ok(())
    }

    /// LR for optimizer step `step` (0-based) of `total_steps`, with `steps_per_epoch`.
    ///
    /// Linear warm-up from `eta_init / warmup_steps` to `eta_init` over the first
    /// `warmup_steps` steps. Then cosine: `eta = floor + (eta_init - floor) * (1 +
    /// cos(pi * i / (N - 1))) / 2` where `floor = min_lr_ratio * eta_init`, so the first
    /// unit after warm-up is at `eta_init` and the last one at the floor (InstructGPT decays
    /// to 10% by the end). `(i, N)` are (epoch index, number of epochs) when `per = epoch`
    /// (the rate is constant within an epoch; a last partial epoch counts), or (steps since
    /// the warm-up, steps after it) when `per = step`, so the decay continues from the
    /// warm-up's peak. A single unit stays at `eta_init`. Constant: `eta_init` (after
    /// warm-up). Steps past the end stay at the floor; zero `steps_per_epoch` or
    /// `total_steps` are treated as one.
    pub fn lr(&self, base_lr: f64, step: u64, steps_per_epoch: u64, total_steps: u64) -> f64 {
        if step < self.warmup_steps {
            return base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            ScheduleKind::Constant => base_lr,
            ScheduleKind::Cosine => {
                let total_steps = total_steps.max(1);
                let (i, n) = match self.per {
                    DecayUnit::Step => (
                        step - self.warmup_steps,
                        total_steps.saturating_sub(self.warmup_steps),
                    ),
                    DecayUnit::Epoch => {
                        let per_epoch = steps_per_epoch.max(1);
                        (step / per_epoch, total_steps.div_ceil(per_epoch))
                    }
                };
                // From the first unit (progress 0) to the last (progress 1).
                let last = n.saturating_sub(1).max(1);
                let progress = i.min(last) as f64 / last as f64;
                let floor = self.min_lr_ratio * base_lr;
                floor + (base_lr - floor) * (1.0 + (PI * progress).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn per_epoch_cosine_is_constant_within_an_epoch_and_ends_at_the_floor() {
        let s = ScheduleConfig::default();
        // 3 epochs of 4 steps, floor 0.1: the last epoch is at the floor.
        let want = [1.0, 0.55, 0.1];
        for step in 0..12 {
            let lr = s.lr(1.0, step, 4, 12);
            assert!(close(lr, want[(step / 4) as usize]), "step {step}: {lr}");
        }
        // Scales with the base rate; the floor is a fraction of it.
        assert!(close(s.lr(2e-5, 5, 4, 12), 2e-5 * 0.55));
        // Past the end: the floor.
        assert!(close(s.lr(1.0, 40, 4, 12), 0.1));
        // A last partial epoch counts: 10 steps of 4 per epoch are 3 epochs.
        assert!(close(s.lr(1.0, 9, 4, 10), 0.1));
        // Two epochs: the peak, then the floor (not the midpoint 0.55).
        assert!(close(s.lr(1.0, 0, 4, 8), 1.0));
        assert!(close(s.lr(1.0, 4, 4, 8), 0.1));
        // One epoch has nothing to decay over.
        assert!(close(s.lr(1.0, 3, 4, 4), 1.0));
    }

    #[test]
    fn per_step_cosine_runs_from_the_peak_to_the_floor() {
        let s = ScheduleConfig {
            per: DecayUnit::Step,
            min_lr_ratio: 0.0,
            ..ScheduleConfig::default()
        };
        assert!(close(s.lr(1.0, 0, 3, 4), 1.0));
        assert!(close(s.lr(1.0, 1, 3, 4), 0.75));
        assert!(close(s.lr(1.0, 2, 3, 4), 0.25));
        assert!(close(s.lr(1.0, 3, 3, 4), 0.0));
        assert!(close(s.lr(1.0, 4, 3, 4), 0.0));
    }

    /// Warm-up 4 of 10 steps: up to the peak, then the cosine over the remaining six from
    /// it, with no jump (it used to fall from 1.0 to 0.689 at step 4).
    #[test]
    fn per_step_cosine_continues_from_the_warmup_peak() {
        let s = ScheduleConfig {
            per: DecayUnit::Step,
            warmup_steps: 4,
            ..ScheduleConfig::default()
        };
        for (step, want) in [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0)] {
            assert!(close(s.lr(1.0, step, 10, 10), want), "step {step}");
        }
        let lrs: Vec<f64> = (4..10).map(|step| s.lr(1.0, step, 10, 10)).collect();
        for (k, lr) in lrs.iter().enumerate() {
            let cos = 0.1 + 0.9 * (1.0 + (PI * k as f64 / 5.0).cos()) / 2.0;
            assert!(close(*lr, cos), "step {}: {lr} vs {cos}", k + 4);
        }
        assert!(close(lrs[0], 1.0) && close(lrs[5], 0.1));
        // Smooth: no step after the peak falls by more than the cosine's steepest step.
        let steepest = 0.9 * (PI / 10.0).sin();
        for pair in lrs.windows(2) {
            assert!(pair[0] - pair[1] <= steepest + 1e-12, "{lrs:?}");
        }
    }

    #[test]
    fn constant_after_warmup() {
        let s = ScheduleConfig {
            kind: ScheduleKind::Constant,
            warmup_steps: 2,
            ..ScheduleConfig::default()
        };
        assert!(close(s.lr(3.0, 0, 5, 50), 1.5));
        for step in [1, 2, 10, 49, 100] {
            assert!(close(s.lr(3.0, step, 5, 50), 3.0));
        }
    }

    #[test]
    fn degenerate_lengths_do_not_divide_by_zero() {
        let s = ScheduleConfig::default();
        assert!(close(s.lr(1.0, 0, 0, 0), 1.0));
        assert!(s.lr(1.0, 7, 0, 0).is_finite());
    }

    #[test]
    fn config_parses_and_validates() {
        let s: ScheduleConfig =
            toml::from_str("kind = \"constant\"\nper = \"step\"\nwarmup_steps = 3").unwrap();
        assert_eq!(s.kind, ScheduleKind::Constant);
        assert_eq!(s.per, DecayUnit::Step);
        assert_eq!(s.min_lr_ratio, 0.1);
        assert!(toml::from_str::<ScheduleConfig>("kind = \"linear\"").is_err());
        assert!(toml::from_str::<ScheduleConfig>("warmup = 3").is_err());
        assert_eq!(ScheduleConfig::default().validate(), Ok(()));
        let bad = ScheduleConfig {
            min_lr_ratio: 1.5,
            ..ScheduleConfig::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("min_lr_ratio"));
    }
}
