//! The `mixed_bfloat16` dtype policy against f32 on this CPU, 1 thread:
//! `cargo run --release --example bf16_bench [-- ROUNDS]`.
//!
//! `cargo run --release --example bf16_bench -- --grid [ROUNDS]` instead times f32 against bf16 over
//! a grid of GEMM sizes (m×k×n), the measurement behind the dtype policy's size threshold
//! (`modelc::kernels::gemm::bf16_pays`): bf16 always ([`sgemm_bf16`]), whatever the threshold.
//!
//! - the `vdpbf16ps` peak: 24 independent chains in registers (where the CPU has AVX512_BF16);
//! - The GEMM (C = A·B) at 256×784×512 and 1024³, f32 (the default instruction set, or
//!   `MODELC_GEMM_ISA`) against bf16 (AVX512_BF16 where the CPU has it, else the emulation);
//! - BENCH M4 (784 → 512 → 512 → 10 with a residual Add) at batch 256: inference and a training
//!   step, under `float32` and `mixed_bfloat16`.
//!
//! Every figure is the best of ROUNDS (default 7) rounds over the thread's CPU time (Linux), which
//! on a machine shared with other work still shows what the CPU does while it runs this code.

use modelc::kernels::gemm::{avx512_bf16_available, set_num_threads, sgemm, sgemm_bf16, Bf16Kernel, Bf16Scope};
use modelc::ndarray::Array2;
use modelc::prelude::*;
use modelc::Bf16Mode;
use std::hint::black_box;

#[path = "../../benches/support/cputime.rs"]
mod cputime;

model! {
    /// BENCH M4 (as in benches/bench_models).
    pub struct WideMlp {
        input x: [784];
        let h1 = Dense(512, activation = relu)(x);
        let h2 = Dense(512, activation = relu)(h1);
        output probs = Dense(10, activation = softmax)(Add()([h1, h2]));
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let grid_mode = args.iter().any(|a| a == "--grid");
    args.retain(|a| a != "--grid");
    let rounds: usize = args.first().and_then(|r| r.parse().ok()).unwrap_or(7).max(1);
    set_num_threads(1);
    let kernel = if avx512_bf16_available() { Bf16Kernel::Avx512Bf16 } else { Bf16Kernel::Emulated };
    if grid_mode {
        grid(kernel, rounds);
        return conv_grid(kernel, rounds);
    }
    println!("bf16 kernel: {kernel:?}; 1 thread; best of {rounds} rounds over thread CPU time");
    #[cfg(target_arch = "x86_64")]
    if kernel == Bf16Kernel::Avx512Bf16 {
        let iters = 2_000_000;
        // SAFETY: the CPU has AVX512_BF16 (checked above).
        let secs = best(rounds, || {
            black_box(unsafe { dpbf16_chains(iters) });
        });
        // Each vdpbf16ps: 16 lanes × 2 multiply-adds = 64 flops.
        println!("vdpbf16ps peak: {:.1} GFLOP/s", (24 * 64 * iters) as f64 / secs / 1e9);
    }
    println!();
    println!("| GEMM m×k×n | f32 GFLOP/s | bf16 GFLOP/s | bf16 / f32 |");
    println!("|---|---|---|---|");
    for (m, k, n) in [(256usize, 784usize, 512usize), (1024, 1024, 1024)] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut c = vec![0.0f32; m * n];
        let mut run = |bf16: Option<Bf16Kernel>| {
            let _scope = Bf16Scope::new(bf16);
            let reps = (2e8 / (m * k * n) as f64).ceil() as usize;
            let secs = best(rounds, || {
                for _ in 0..reps {
                    sgemm(m, k, n, 1.0, black_box(&a), false, black_box(&b), false, 0.0, &mut c);
                }
            });
            2.0 * (m * k * n * reps) as f64 / secs / 1e9
        };
        let (f, h) = (run(None), run(Some(kernel)));
        println!("| {m}×{k}×{n} | {f:.1} | {h:.1} | {:.2}× |", h / f);
    }
    println!();
    println!("| M4, batch 256 | float32 µs | mixed_bfloat16 µs | speed-up |");
    println!("|---|---|---|---|");
    let x = Array2::from_shape_fn((256, 784), |(i, j)| ((i * 31 + j * 17) % 97) as f32 / 97.0);
    let y = Array2::from_shape_fn((256, 10), |(i, j)| f32::from(u8::from(i % 10 == j)));
    let inputs = WideMlpInputs { x: x.view() };
    let targets = WideMlpTargets { probs: y.view() };
    let mode = if kernel == Bf16Kernel::Avx512Bf16 { Bf16Mode::Auto } else { Bf16Mode::Emulate };
    let model = |bf16: bool| {
        let mut model = WideMlp::new(0);
        if bf16 {
            modelc::precision::set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, mode);
        }
        model
    };
    let infer = |mut model: WideMlp| {
        let mut out = model.predict(&inputs).unwrap();
        best(rounds, || model.predict_into(black_box(&inputs), &mut out).unwrap()) * 1e6
    };
    let (f, h) = (infer(model(false)), infer(model(true)));
    println!("| inference | {f:.0} | {h:.0} | {:.2}× |", f / h);
    let step = |mut model: WideMlp| {
        let mut trainer = model.compile(Adam::default(), WideMlpLosses { probs: Loss::CategoricalCrossentropy }, &[]);
        best(rounds, || {
            trainer.train_step(black_box(&inputs), black_box(&targets)).unwrap();
        }) * 1e6
    };
    let (f, h) = (step(model(false)), step(model(true)));
    println!("| training step | {f:.0} | {h:.0} | {:.2}× |", f / h);
}

/// f32 against bf16 (always, [`sgemm_bf16`]) over a grid of m×k×n, 1 thread: µs per call, the best
/// of `rounds` rounds, the two taken in turn in every round so that both see the same load.
fn grid(kernel: Bf16Kernel, rounds: usize) {
    println!("bf16 kernel: {kernel:?}; 1 thread; best of {rounds} alternating rounds over thread CPU time");
    println!("| m | k | n | m·k·n | f32 µs | bf16 µs | f32 / bf16 |");
    println!("|---|---|---|---|---|---|---|");
    for m in [1usize, 4, 8, 32, 128, 512, 2048] {
        for k in [9usize, 16, 32, 128, 512, 1024] {
            for n in [10usize, 16, 32, 128, 512] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
                let mut c = vec![0.0f32; m * n];
                let reps = (2e7 / (m * k * n) as f64).ceil() as usize;
                let (mut f, mut h) = (f64::INFINITY, f64::INFINITY);
                for round in 0..=rounds {
                    let t = thread_cpu_seconds();
                    for _ in 0..reps {
                        sgemm(m, k, n, 1.0, black_box(&a), false, black_box(&b), false, 0.0, &mut c);
                    }
                    let t1 = thread_cpu_seconds();
                    for _ in 0..reps {
                        sgemm_bf16(kernel, m, k, n, 1.0, black_box(&a), false, black_box(&b), false, 0.0, &mut c);
                    }
                    let t2 = thread_cpu_seconds();
                    // Round 0 warms the caches and the scratch.
                    if round > 0 {
                        f = f.min(t1 - t);
                        h = h.min(t2 - t1);
                    }
                }
                let (f, h) = (f * 1e6 / reps as f64, h * 1e6 / reps as f64);
                println!("| {m} | {k} | {n} | {} | {f:.2} | {h:.2} | {:.2} |", m * k * n, f / h);
            }
        }
    }
}

/// A 3×3 'same' convolution's forward and backward (dx included) at batch 32, f32 (the direct path
/// where it applies) against bf16 (im2col + the bf16 GEMM), 1 thread: µs per forward + backward,
/// the best of `rounds` alternating rounds. Run with `MODELC_BF16_THRESHOLD=off`, so that the bf16
/// side takes im2col whatever the size.
fn conv_grid(kernel: Bf16Kernel, rounds: usize) {
    use modelc::kernels::activation::Activation;
    use modelc::kernels::conv::{backward, forward, Window2d};
    println!();
    println!("| conv 3×3 same, batch 32: h×w×cin → cout | m×k×n of its GEMM | f32 µs | bf16 µs | f32 / bf16 |");
    println!("|---|---|---|---|---|");
    let batch = 32;
    for (h, cin, cout) in [(8usize, 1usize, 32usize), (8, 32, 32), (8, 64, 64), (16, 16, 32), (16, 32, 64), (32, 3, 16), (32, 16, 32)] {
        let g = Window2d::new(h, h, cin, [3, 3], [1, 1], [1, 1], true);
        let (rows, patch) = (batch * g.positions(), g.patch());
        let x: Vec<f32> = (0..batch * g.in_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let w: Vec<f32> = (0..patch * cout).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let (mut y, mut dy) = (vec![0.0f32; rows * cout], vec![0.0f32; rows * cout]);
        let (mut col, mut dcol) = (vec![0.0f32; rows * patch], vec![0.0f32; rows * patch]);
        let (mut dx, mut dw) = (vec![0.0f32; x.len()], vec![0.0f32; w.len()]);
        let mut step = |bf16: Option<Bf16Kernel>| {
            let _scope = Bf16Scope::new(bf16);
            forward(&g, &x, &w, None, Activation::Linear, None, &mut col, &mut y, batch, cout);
            dy.copy_from_slice(&y);
            backward(&g, &x, &w, None, &y, &mut dy, Activation::Linear, &mut col, &mut dcol, Some(&mut dx), &mut dw, None, batch, cout);
        };
        let (mut f, mut b) = (f64::INFINITY, f64::INFINITY);
        for round in 0..=rounds {
            let t = thread_cpu_seconds();
            for _ in 0..5 {
                step(None);
            }
            let t1 = thread_cpu_seconds();
            for _ in 0..5 {
                step(Some(kernel));
            }
            let t2 = thread_cpu_seconds();
            if round > 0 {
                f = f.min(t1 - t);
                b = b.min(t2 - t1);
            }
        }
        let (f, b) = (f * 1e6 / 5.0, b * 1e6 / 5.0);
        println!("| {h}×{h}×{cin} → {cout} | {rows}×{patch}×{cout} | {f:.0} | {b:.0} | {:.2} |", f / b);
    }
}

/// `iters` rounds of 24 independent `vdpbf16ps` chains; returns a value to keep.
///
/// # Safety
/// The CPU must support AVX-512F and AVX512_BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dpbf16_chains(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(0x3F80_3F80)));
    let b: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(0x3C00_3C00)));
    let mut acc = [_mm512_setzero_ps(); 24];
    for _ in 0..black_box(iters) {
        for v in acc.iter_mut() {
            *v = _mm512_dpbf16_ps(*v, a, b);
        }
    }
    acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

/// The least thread CPU time, in seconds, of `rounds` calls of `f` (after one warm-up call).
fn best(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..rounds)
        .map(|_| {
            let t = thread_cpu_seconds();
            f();
            thread_cpu_seconds() - t
        })
        .fold(f64::INFINITY, f64::min)
        .max(1e-9)
}

/// This thread's CPU time (Linux; elsewhere wall-clock time).
fn thread_cpu_seconds() -> f64 {
    cputime::seconds(cputime::THREAD)
}
