//! `keep_freed_memory` must hold for actor threads, not just `main`: large tensors
//! allocated on a thread started afterwards come from the heap, not from `mmap`. Its own
//! test binary without the libtest harness, so that `main` runs first, as in `rlhf`.

fn mmapped_bytes() -> usize {
    // SAFETY: mallinfo2 only reads allocator statistics.
    unsafe { libc::mallinfo2() }.hblkhd
}

fn main() {
    rlhf_actors::allocator::keep_freed_memory();
    let before = mmapped_bytes();
    let after = std::thread::spawn(|| {
        // 128 MiB: far above glibc's default mmap threshold and a thread arena's heap.
        let big = tch::Tensor::zeros([32 << 20], (tch::Kind::Float, tch::Device::Cpu));
        let after = mmapped_bytes();
        drop(big);
        after
    })
    .join()
    .expect("the allocating thread finished");
    assert!(
        after <= before,
        "a 128 MiB tensor on an actor thread was mmapped: {before} -> {after} mmapped bytes"
    );
    println!("test large_tensors_on_threads_come_from_the_heap ... ok ({before} -> {after} mmapped bytes)");
}
