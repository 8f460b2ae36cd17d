//! After a warm-up call per shape, `sgemm` allocates nothing: its packing scratch is thread-local
//! and reused; nor do the convolutions (direct and im2col paths, forward and backward). A counting global allocator watches repeated calls on every path (direct, packed,
//! batch-1) and every transpose combination, on one thread and split across the pool's worker
//! threads: the counter is global, so it sees the workers' allocations too. The two cases run in
//! one test, one after the other, so nothing else allocates meanwhile.

use model_runtime::kernels::activation::Activation;
use model_runtime::kernels::conv::{self, Window2d};
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
    // Convolutions: BENCH M3's second one at batch 8 (direct path, split across threads when 2 are
    // allowed) and a strided one whose input gradient takes im2col + GEMM.
    let convs =
        [(Window2d::new(32, 32, 16, [3, 3], [1, 1], [1, 1], true), 32, 8), (Window2d::new(9, 9, 4, [3, 3], [2, 2], [1, 1], true), 8, 4)];
    let mut bufs: Vec<_> = convs
        .iter()
        .map(|&(g, cout, batch)| {
            let col = batch * g.positions() * g.patch();
            let x: Vec<f32> = (0..batch * g.in_len()).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect();
            let w: Vec<f32> = (0..g.patch() * cout).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
            let y = vec![0.0f32; batch * g.positions() * cout];
            (
                x,
                w,
                vec![0.0f32; cout],
                y.clone(),
                y,
                vec![0.0f32; col],
                vec![0.0f32; col],
                vec![0.0f32; batch * g.in_len()],
                vec![0.0f32; g.patch() * cout],
                vec![0.0f32; cout],
            )
        })
        .collect();
    let mut run = || {
        for &(m, k, n) in &shapes {
            for &(ta, tb) in &combos {
                sgemm(m, k, n, 1.0, &a, ta, &b, tb, 0.5, &mut c);
            }
        }
        for (&(g, cout, batch), (x, w, bias, y, dy, col, dcol, dx, dw, db)) in convs.iter().zip(bufs.iter_mut()) {
            conv::forward(&g, x, w, Some(bias), Activation::Relu, None, col, y, batch, cout);
            dy.copy_from_slice(y);
            conv::backward(&g, x, w, None, y, dy, Activation::Relu, col, dcol, Some(dx), dw, Some(db), batch, cout);
        }
    };
    run();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..20 {
        run();
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}
