//! What every `rlhf bench` reports besides its rate: peak resident memory (VmHWM), the
//! machine's measured matmul peak for the dtype and the fraction of it the work reached,
//! and an idle-machine wait before each timed repeat.
//!
//! FLOP accounting (the usual dense-transformer estimate, counting every parameter once per
//! token; embeddings included, attention's T^2 term left out):
//! - a forward pass costs `2 x params` per position, forward + backward `6 x params`;
//! - generation runs every position through the model once: the prompt in prefill, then
//!   every sampled token but the last, so `2 x params x batch x (prompt + new - 1)`;
//! - a training step on `batch x seq_len` positions costs `6 x params x batch x seq_len`;
//! - scoring `batch x (prompt + response)` positions costs `2 x params` each;
//! - a PPO step is the algorithm's work, whatever an implementation recomputes: generation,
//!   the reference, reward and value (old values) forwards over the sequences, and per PPO
//!   epoch forward + backward of the policy and of the value model.

use crate::system::process::{cpu_times, CpuTimes};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// FLOPs of generating `new_tokens` after `prompt_len` for `batch` rows.
pub fn generation_flops(params: i64, batch: i64, prompt_len: i64, new_tokens: i64) -> f64 {
    let positions = batch * (prompt_len + new_tokens - 1).max(0);
    2.0 * params as f64 * positions as f64
}

/// FLOPs of one forward pass over `positions` tokens.
pub fn forward_flops(params: i64, positions: i64) -> f64 {
    2.0 * params as f64 * positions as f64
}

/// FLOPs of one forward + backward pass over `positions` tokens.
pub fn training_flops(params: i64, positions: i64) -> f64 {
    6.0 * params as f64 * positions as f64
}

/// The shape of one PPO step, for [`ppo_step_flops`].
pub struct PpoWork {
    pub policy_params: i64,
    pub value_params: i64,
    pub batch: i64,
    pub prompt_len: i64,
    pub new_tokens: i64,
    pub ppo_epochs: i64,
}

/// FLOPs of one PPO step (see the module documentation).
pub fn ppo_step_flops(w: &PpoWork) -> f64 {
    let positions = w.batch * (w.prompt_len + w.new_tokens);
    generation_flops(w.policy_params, w.batch, w.prompt_len, w.new_tokens)
        + forward_flops(w.policy_params, positions) // reference
        + forward_flops(w.value_params, positions) // reward
        + forward_flops(w.value_params, positions) // old values
        + w.ppo_epochs as f64
            * (training_flops(w.policy_params, positions)
                + training_flops(w.value_params, positions))
}

/// This process's peak resident memory so far (None where /proc is unavailable).
pub fn peak_rss_bytes() -> Option<u64> {
    crate::system::process::peak_resident_bytes()
}

/// The machine's measured dense matmul rate for one dtype, device and thread count.
#[derive(Clone, Debug)]
pub struct Peak {
    pub flops_per_second: f64,
    pub n: i64,
    pub dtype: String,
    pub device: String,
    pub threads: i32,
}

impl Peak {
    pub fn json(&self) -> Value {
        json!({
            "matmul_peak_flops_per_second": self.flops_per_second, "matmul_n": self.n,
            "dtype": self.dtype, "device": self.device, "threads": self.threads,
        })
    }
}

/// The matmul peak for `kind` on `device` with `threads` libtorch threads, measured once per
/// process (after `idle` waits for a quiet machine) and printed as a JSON line: the best
/// rate of repeated n x n matmuls (n = 2048 on the CPU, 8192 on CUDA) over about a quarter
/// of a second. Sets the calling thread's libtorch thread count to `threads`.
pub fn matmul_peak(kind: Kind, device: Device, threads: i32, idle: &IdleWait) -> Peak {
    static CACHE: OnceLock<Mutex<HashMap<String, Peak>>> = OnceLock::new();
    let key = format!("{kind:?}/{device:?}/{threads}");
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(peak) = cache.lock().expect("peak cache").get(&key) {
        return peak.clone();
    }
    idle.wait();
    tch::set_num_threads(threads);
    let n = if device.is_cuda() { 8192 } else { 2048 };
    let peak = tch::no_grad(|| measure_matmul(kind, device, threads, n));
    println!("{}", json!({ "matmul_peak": peak.json() }));
    cache.lock().expect("peak cache").insert(key, peak.clone());
    peak
}

fn measure_matmul(kind: Kind, device: Device, threads: i32, n: i64) -> Peak {
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let run = || {
        sync();
        let start = Instant::now();
        let _ = a.matmul(&b);
        sync();
        start.elapsed().as_secs_f64()
    };
    run(); // warm-up
    let flops = 2.0 * (n as f64).powi(3);
    let budget = Instant::now();
    let mut best: f64 = 0.0;
    for i in 0..50 {
        best = best.max(flops / run());
        if i >= 2 && budget.elapsed() >= Duration::from_millis(250) {
            break;
        }
    }
    Peak {
        flops_per_second: best,
        n,
        dtype: format!("{kind:?}"),
        device: format!("{device:?}").to_lowercase(),
        threads,
    }
}

/// Achieved FLOP/s as a fraction of `peak`.
pub fn peak_fraction(flops_per_second: f64, peak: &Peak) -> f64 {
    flops_per_second / peak.flops_per_second
}

/// Share of the whole machine's CPU time between two samples that other processes used
/// (this process's own time, e.g. spinning thread pools, does not count).
pub fn others_busy(a: &CpuTimes, b: &CpuTimes) -> f64 {
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return 0.0;
    }
    let busy = total.saturating_sub(b.idle.saturating_sub(a.idle));
    let others = busy.saturating_sub(b.own.saturating_sub(a.own));
    others as f64 / total as f64
}

/// When to start a timed repeat: other processes below `threshold` of the machine's CPU
/// for `settle` in a row, waiting at most `cap` (zero: do not wait).
#[derive(Clone, Copy, Debug)]
pub struct IdleWait {
    pub cap: Duration,
    pub threshold: f64,
    pub settle: Duration,
}

/// What an idle wait saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleReport {
    pub waited_seconds: f64,
    /// Others' share of the CPU over the last sample interval.
    pub others_busy: f64,
    pub timed_out: bool,
}

impl IdleReport {
    pub fn json(&self) -> Value {
        json!({"idle_wait_seconds": self.waited_seconds, "others_busy": self.others_busy, "idle_timed_out": self.timed_out})
    }
}

impl IdleWait {
    /// Blocks until the machine is idle (or the cap is reached, with a warning on stderr).
    pub fn wait(&self) -> IdleReport {
        if self.cap.is_zero() {
            return IdleReport::default();
        }
        let interval = Duration::from_millis(250);
        let start = Instant::now();
        let Some(mut last) = cpu_times() else {
            eprintln!("warning: /proc/stat unreadable; not waiting for an idle machine");
            return IdleReport::default();
        };
        let mut quiet_since = Instant::now();
        loop {
            std::thread::sleep(interval);
            let Some(now) = cpu_times() else {
                return IdleReport::default();
            };
            let busy = others_busy(&last, &now);
            last = now;
            if busy >= self.threshold {
                quiet_since = Instant::now();
            }
            let waited = start.elapsed();
            if quiet_since.elapsed() >= self.settle {
                return IdleReport {
                    waited_seconds: waited.as_secs_f64(),
                    others_busy: busy,
                    timed_out: false,
                };
            }
            if waited >= self.cap {
                eprintln!(
                    "warning: the machine is still busy after {:.0} s (other processes use {:.0}% of the CPU); timing anyway",
                    waited.as_secs_f64(),
                    busy * 100.0
                );
                return IdleReport {
                    waited_seconds: waited.as_secs_f64(),
                    others_busy: busy,
                    timed_out: true,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_peak_rss_is_positive() {
        assert!(peak_rss_bytes().unwrap() > 0);
    }

    #[test]
    fn flops_match_hand_computed_values() {
        // The reference: 7.0M parameters, batch 16 x 192 tokens.
        assert_eq!(training_flops(7_000_000, 16 * 192), 6.0 * 7e6 * 3072.0);
        // Batch 2, prompt 3, 4 new tokens: 3 + 4 - 1 = 6 positions per row.
        assert_eq!(generation_flops(10, 2, 3, 4), 2.0 * 10.0 * 12.0);
        assert_eq!(forward_flops(10, 5), 100.0);
        // Policy 10, value 20, batch 2, prompt 3, 4 new tokens (7 positions), 2 epochs:
        // gen 2*10*12 = 240; ref 2*10*14 = 280; reward + old values 2 * 2*20*14 = 1120;
        // epochs 2 * (6*10*14 + 6*20*14) = 5040.
        let work = PpoWork {
            policy_params: 10,
            value_params: 20,
            batch: 2,
            prompt_len: 3,
            new_tokens: 4,
            ppo_epochs: 2,
        };
        assert_eq!(ppo_step_flops(&work), 240.0 + 280.0 + 1120.0 + 5040.0);
    }

    #[test]
    fn others_share_leaves_out_own_time() {
        let a = CpuTimes {
            total: 1000,
            idle: 500,
            own: 100,
        };
        // 200 ticks elapsed, 50 idle: 150 busy, of which 120 are ours.
        let b = CpuTimes {
            total: 1200,
            idle: 550,
            own: 220,
        };
        assert!((others_busy(&a, &b) - 30.0 / 200.0).abs() < 1e-12);
        assert_eq!(others_busy(&a, &a), 0.0);
    }

    #[test]
    fn zero_cap_does_not_wait() {
        let wait = IdleWait {
            cap: Duration::ZERO,
            threshold: 0.1,
            settle: Duration::from_secs(2),
        };
        let report = wait.wait();
        assert_eq!(report.waited_seconds, 0.0);
        assert!(!report.timed_out);
    }

    #[test]
    fn matmul_peak_is_cached_and_positive() {
        let idle = IdleWait {
            cap: Duration::ZERO,
            threshold: 0.1,
            settle: Duration::from_secs(2),
        };
        let first = matmul_peak(Kind::Float, Device::Cpu, 1, &idle);
        assert!(first.flops_per_second > 0.0 && first.n == 2048);
        let again = matmul_peak(Kind::Float, Device::Cpu, 1, &idle);
        assert_eq!(first.flops_per_second, again.flops_per_second);
    }
}
