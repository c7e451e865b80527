//! This process's resource figures, read from /proc through the `procfs` crate (Linux;
//! elsewhere every figure is None).

use procfs::process::Process;
use procfs::{CurrentSI, KernelStats};

/// Resident memory now, in bytes.
pub fn resident_bytes() -> Option<u64> {
    Some(Process::myself().ok()?.status().ok()?.vmrss? * 1024)
}

/// Peak resident memory so far (the high-water mark), in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    Some(Process::myself().ok()?.status().ok()?.vmhwm? * 1024)
}

/// Whole-machine and own CPU time in clock ticks at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuTimes {
    pub total: u64,
    /// Idle and waiting for I/O.
    pub idle: u64,
    /// This process's user and system time.
    pub own: u64,
}

/// The machine's and this process's CPU time now.
pub fn cpu_times() -> Option<CpuTimes> {
    let t = KernelStats::current().ok()?.total;
    let opt = |x: Option<u64>| x.unwrap_or(0);
    // Guest time is already counted in user and nice.
    let total = t.user
        + t.nice
        + t.system
        + t.idle
        + opt(t.iowait)
        + opt(t.irq)
        + opt(t.softirq)
        + opt(t.steal);
    let stat = Process::myself().ok()?.stat().ok()?;
    Some(CpuTimes {
        total,
        idle: t.idle + opt(t.iowait),
        own: stat.utime + stat.stime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_figures_are_read_in_bytes() {
        let (now, peak) = (resident_bytes().unwrap(), peak_resident_bytes().unwrap());
        // More than a megabyte (the test binary itself), and the peak is at least today's.
        assert!(now > 1 << 20, "{now}");
        assert!(peak >= now, "{peak} < {now}");
    }

    #[test]
    fn cpu_times_count_up_and_own_time_is_part_of_the_total() {
        let a = cpu_times().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = cpu_times().unwrap();
        assert!(b.total >= a.total && b.idle >= a.idle && b.own >= a.own);
        assert!(b.own <= b.total);
    }
}
