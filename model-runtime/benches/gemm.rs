//! Our `sgemm` against `matrixmultiply::sgemm` on the shapes the example models and typical dense
//! layers produce, each shape in the three transpose combinations `dense.rs` uses:
//! NN (forward x·W), TN (dW += xᵀ·dz) and NT (dx += dz·Wᵀ). Both run in the same group, so one run
//! gives the ratio; throughput is 2·m·k·n flops per call (criterion prints it as elements/s, i.e.
//! flop/s).
//!
//! Each group also runs ours on 2 threads (`ours-2t`; matrixmultiply is built without its
//! threading feature, so it stays on 1). The `threads/` groups put 1 and 2 threads side by side on
//! the small-to-medium shapes that decide the size above which a product is split.
//!
//! `cargo bench -p model-runtime --bench gemm [-- FILTER]`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use model_runtime::kernels::gemm::{set_num_threads, sgemm};
use std::hint::black_box;
use std::time::Duration;

/// (m, k, n) as passed to `sgemm`.
const SHAPES: [(usize, usize, usize); 8] =
    [(32, 8, 16), (32, 16, 8), (32, 64, 128), (32, 128, 128), (256, 784, 512), (1, 784, 512), (256, 512, 512), (1024, 1024, 1024)];

/// `matrixmultiply` with the same stride convention `sgemm` uses for its transposes.
#[allow(clippy::too_many_arguments)]
fn mm(m: usize, k: usize, n: usize, a: &[f32], ta: bool, b: &[f32], tb: bool, beta: f32, c: &mut [f32]) {
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    // SAFETY: the assert covers every element the strides address; `c` is uniquely borrowed.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

fn bench(cr: &mut Criterion) {
    for &(m, k, n) in &SHAPES {
        let flops = 2 * m * k * n;
        for (name, ta, tb) in [("NN", false, false), ("TN", true, false), ("NT", false, true)] {
            let mut g = cr.benchmark_group(format!("sgemm/{m}x{k}x{n}/{name}"));
            g.throughput(Throughput::Elements(flops as u64));
            g.warm_up_time(Duration::from_millis(500));
            g.measurement_time(Duration::from_millis(if flops > 100_000_000 { 2500 } else { 1500 }));
            if flops > 100_000_000 {
                g.sample_size(20);
            }
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
            // beta = 1 as in the backward accumulations; beta = 0 differs only in one C pass. Each
            // cell accumulates into its own zeroed C, so none starts from another's sums.
            for (id, threads) in [("ours", 1), ("ours-2t", 2)] {
                let mut c = vec![0.0f32; m * n];
                set_num_threads(threads);
                g.bench_function(BenchmarkId::new(id, ""), |bch| {
                    bch.iter(|| sgemm(m, k, n, 1.0, black_box(&a), ta, black_box(&b), tb, 1.0, black_box(&mut c)))
                });
            }
            set_num_threads(1);
            let mut c = vec![0.0f32; m * n];
            g.bench_function(BenchmarkId::new("matrixmultiply", ""), |bch| {
                bch.iter(|| mm(m, k, n, black_box(&a), ta, black_box(&b), tb, 1.0, black_box(&mut c)))
            });
            g.finish();
        }
    }
}

/// Shapes around the split threshold, 1 against 2 threads (NN, and TN for the weight gradient).
const THRESHOLD_SHAPES: [(usize, usize, usize, bool); 9] = [
    (32, 64, 128, false),
    (32, 128, 128, false),
    (64, 128, 128, false),
    (32, 256, 256, false),
    (128, 128, 256, false),
    (32, 512, 512, false),
    (32, 784, 512, false),
    (784, 32, 512, true),
    (512, 32, 512, true),
];

fn threads(cr: &mut Criterion) {
    for &(m, k, n, ta) in &THRESHOLD_SHAPES {
        let flops = 2 * m * k * n;
        let mut g = cr.benchmark_group(format!("threads/{m}x{k}x{n}/{}", if ta { "TN" } else { "NN" }));
        g.throughput(Throughput::Elements(flops as u64));
        g.warm_up_time(Duration::from_millis(300));
        g.measurement_time(Duration::from_millis(1000));
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
        for threads in [1, 2] {
            let mut c = vec![0.0f32; m * n];
            set_num_threads(threads);
            g.bench_function(BenchmarkId::new("ours", format!("{threads}t")), |bch| {
                bch.iter(|| sgemm(m, k, n, 1.0, black_box(&a), ta, black_box(&b), false, 1.0, black_box(&mut c)))
            });
        }
        set_num_threads(1);
        g.finish();
    }
}

criterion_group!(benches, bench, threads);
criterion_main!(benches);
