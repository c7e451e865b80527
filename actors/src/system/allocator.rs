//! Process-wide tuning of glibc's allocator, which libtorch allocates through.
//!
//! By default glibc serves blocks above 128 KiB-32 MiB with `mmap` and returns them with
//! `munmap` when freed. A training step frees and re-allocates the same large activations
//! (a 16 x 192 x 8192 logits tensor is 100 MB) every step, so each step paid for fresh
//! pages the kernel must fault in and zero: measured at 15-50% of a training step on this
//! project's reference machine. Serving every block from the heap and never trimming it
//! keeps those pages mapped for reuse, trading memory returned to the OS (which a trainer
//! does not need back) for speed. One arena for all threads: a thread's own arena lives in
//! 64 MiB heaps and falls back to `mmap` for anything larger, whatever the settings say.

/// Keep freed memory in the process for reuse. Call once, first thing in `main`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any threads
    // are started, and both values are in range for these parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
