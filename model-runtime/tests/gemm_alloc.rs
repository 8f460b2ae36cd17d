//! After a warm-up call per shape, `sgemm` allocates nothing: its packing scratch is thread-local
//! and reused. A counting global allocator watches repeated calls on every path (direct, packed,
//! batch-1) and every transpose combination, on one thread and split across the pool's worker
//! threads: the counter is global, so it sees the workers' allocations too. The two cases run in
//! one test, one after the other, so nothing else allocates meanwhile.

use model_runtime::kernels::gemm::{set_num_threads, sgemm};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn repeated_sgemm_calls_allocate_nothing_after_warm_up_on_one_and_two_threads() {
    for threads in [1, 2] {
        set_num_threads(threads);
        let n = steady_state_allocations();
        assert_eq!(n, 0, "{n} allocations in steady-state sgemm calls on {threads} threads");
    }
}

/// Allocations during 20 rounds of every shape and transpose, after one warm-up round.
fn steady_state_allocations() -> usize {
    // Small (direct), skinny, batch-1 (in place and dot rows) and large (packed) products; the
    // last three are split when 2 threads are allowed (by columns, by rows, and a wide batch-32).
    let shapes = [
        (32, 8, 16),
        (32, 16, 8),
        (32, 12, 1),
        (1, 8, 16),
        (3, 40, 50),
        (1, 784, 512),
        (32, 128, 128),
        (200, 300, 150),
        (256, 784, 512),
        (784, 64, 512),
        (32, 784, 512),
    ];
    let max = shapes.iter().map(|&(m, k, n)| (m * k).max(k * n).max(m * n)).max().unwrap_or(0);
    let a: Vec<f32> = (0..max).map(|i| (i % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..max).map(|i| (i % 7) as f32 * 0.2).collect();
    let mut c = vec![0.0f32; max];
    let combos = [(false, false), (true, false), (false, true), (true, true)];
    let mut run = || {
        for &(m, k, n) in &shapes {
            for &(ta, tb) in &combos {
                sgemm(m, k, n, 1.0, &a, ta, &b, tb, 0.5, &mut c);
            }
        }
    };
    run();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..20 {
        run();
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}
