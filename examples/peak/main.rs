//! Measures this machine's f32 FMA peak and modelc's GEMM ceiling against it, so that benchmark figures
//! can be given as a percentage of the peak of the machine they ran on:
//! `cargo run --release --example peak [-- ROUNDS]`.
//!
//! - The FMA peak: independent chains of fused multiply-adds in registers (12 chains of AVX2, 16 of
//!   AVX-512, more than the latency × pipes any current core needs), on 1 thread and on as many
//!   threads at once as the machine has CPUs, up to 2.
//! - The GEMM ceiling: `sgemm` (C = A·B, no transposes) at 256×784×512, 256×512×512 and 1024³, on 1
//!   and 2 threads, as GFLOP/s and as a percentage of the best FMA peak on as many threads.
//!
//! Every figure is the best of ROUNDS (default 7) timed rounds, given twice: over wall-clock time, and
//! over CPU time (Linux: the thread's, or the process's divided by the threads for a split GEMM,
//! spinning included), which on a machine shared with other work still shows what a CPU does while
//! it runs this code. `MODELC_GEMM_ISA` picks the GEMM's instruction set as in the runtime; the
//! first lines say what the GEMM chose on this CPU and why (`tuning_report`).
//!
//! On a machine shared with other work, count cycles instead: two single-workload modes run one
//! thing for a while on one thread and print the flops done, so that `perf stat -e cycles:u` gives
//! flops per cycle, which other processes' load does not change, and the GEMM's share of the FMA
//! peak is the ratio of the two (`scripts/gemm_per_cycle.sh` runs both):
//!
//! - `peak -- fma avx2|avx512 SECONDS`: the FMA chains alone;
//! - `peak -- sgemm M K N SECONDS [THREADS [OPS]]`: `sgemm` (beta = 0) at one size; OPS is `nn` (the
//!   default), `tn` (C = Aᵀ·B, A stored k×m: a kernel gradient Xᵀ·dY) or `nt` (C = A·Bᵀ, B stored
//!   n×k: an input gradient dY·Wᵀ).

use modelc::kernels::gemm::{set_num_threads, sgemm, tuning_report};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fma") => return fma_alone(&args[1..]),
        Some("sgemm") => return sgemm_alone(&args[1..]),
        _ => {}
    }
    let rounds: usize = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(7).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("CPU: {}", cpu_model());
    println!("features: {}", features());
    println!("CPUs available: {cpus}; best of {rounds} rounds per figure");
    println!("GEMM choice: {}", tuning_report());
    println!();

    let two = cpus.min(2);
    println!("| FMA peak, f32 | 1 thread, GFLOP/s (wall / CPU time) | {two} threads, GFLOP/s (wall / CPU time) |");
    println!("|---|---|---|");
    // The best peak per thread count, over wall and over CPU time.
    let mut peak = [Rates::default(); 2];
    for kernel in fma_kernels() {
        let one = best(rounds, || on_threads(1, kernel.run));
        let more = best(rounds, || on_threads(two, kernel.run));
        peak[0] = peak[0].max(one);
        peak[1] = peak[1].max(more);
        println!("| {} | {:.1} / {:.1} | {:.1} / {:.1} |", kernel.name, one.wall, one.cpu, more.wall, more.cpu);
    }
    println!();

    let isa = std::env::var("MODELC_GEMM_ISA").unwrap_or_else(|_| "default".into());
    println!("| modelc sgemm (ISA: {isa}), m×k×n | threads | GFLOP/s (wall / CPU time) | % of FMA peak (wall / CPU time) |");
    println!("|---|---|---|---|");
    for (m, k, n) in [(256usize, 784usize, 512usize), (256, 512, 512), (1024, 1024, 1024)] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
        for threads in [1usize, 2] {
            let mut c = vec![0.0f32; m * n];
            set_num_threads(threads);
            let flops = 2.0 * (m * k * n) as f64;
            let r = best(rounds, || {
                let (calls, secs) = timed(Duration::from_millis(150), threads, || {
                    sgemm(m, k, n, 1.0, black_box(&a), false, black_box(&b), false, 0.0, black_box(&mut c))
                });
                secs.per_second(flops * calls as f64 / 1e9)
            });
            let of = peak[threads.min(two) - 1];
            println!(
                "| {m}×{k}×{n} | {threads} | {:.1} / {:.1} | {:.0}% / {:.0}% |",
                r.wall,
                r.cpu,
                100.0 * r.wall / of.wall,
                100.0 * r.cpu / of.cpu
            );
        }
    }
    set_num_threads(1);
}

/// `fma avx2|avx512 SECONDS`: runs one FMA kernel on this thread for about SECONDS and prints the
/// flops it did (for `perf stat`).
fn fma_alone(args: &[String]) {
    let name = args.first().map_or("avx2", String::as_str);
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let kernel = fma_kernels().into_iter().find(|k| k.name.to_lowercase().replace('-', "").starts_with(name));
    let Some(kernel) = kernel else {
        eprintln!("no FMA kernel {name} on this CPU (avx2, avx512)");
        std::process::exit(2);
    };
    let (start, cpu_start) = (Instant::now(), cputime::seconds(cputime::THREAD));
    let mut flops = 0.0;
    while start.elapsed().as_secs_f64() < secs {
        let (f, sink) = (kernel.run)(2_000_000);
        black_box(sink);
        flops += f;
    }
    let cpu = cputime::seconds(cputime::THREAD) - cpu_start;
    println!("fma {} flops {flops:.0} GFLOP/s (thread CPU time) {:.1}", kernel.name, flops / cpu / 1e9);
}

/// `sgemm M K N SECONDS [THREADS [OPS]]`: runs `sgemm` (beta = 0, OPS `nn`, `tn` or `nt` as in the
/// module's doc) at one size for about SECONDS and prints the calls and flops (for `perf stat`; the setup is a few ms against seconds of products).
fn sgemm_alone(args: &[String]) {
    let num = |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (m, k, n) = (num(0, 1024), num(1, 1024), num(2, 1024));
    let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads = num(4, 1);
    let ops = args.get(5).map_or("nn", String::as_str);
    let (ta, tb) = (ops.starts_with('t'), ops.ends_with('t'));
    set_num_threads(threads);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut c = vec![0.0f32; m * n];
    let (calls, t) =
        timed(Duration::from_secs_f64(secs), threads, || sgemm(m, k, n, 1.0, black_box(&a), ta, black_box(&b), tb, 0.0, black_box(&mut c)));
    // `timed` makes one untimed call first: the flops count it (perf counts it), the rates do not.
    let per_call = 2.0 * (m * k * n) as f64;
    println!(
        "sgemm {ops} {m}x{k}x{n} threads {threads} calls {} flops {:.0} GFLOP/s (wall / CPU time) {:.1} / {:.1}; {}",
        calls + 1,
        per_call * (calls + 1) as f64,
        per_call * calls as f64 / t.wall / 1e9,
        per_call * calls as f64 / t.cpu / 1e9,
        tuning_report()
    );
}

/// A rate over wall-clock time and over CPU time.
#[derive(Clone, Copy, Default)]
struct Rates {
    wall: f64,
    cpu: f64,
}

impl Rates {
    fn max(self, o: Rates) -> Rates {
        Rates { wall: self.wall.max(o.wall), cpu: self.cpu.max(o.cpu) }
    }
}

/// Seconds of wall-clock time and of CPU time.
#[derive(Clone, Copy)]
struct Secs {
    wall: f64,
    cpu: f64,
}

impl Secs {
    fn per_second(self, amount: f64) -> Rates {
        Rates { wall: amount / self.wall, cpu: amount / self.cpu.max(1e-9) }
    }
}

/// The best of `rounds` calls of `f`, for each clock.
fn best(rounds: usize, mut f: impl FnMut() -> Rates) -> Rates {
    (0..rounds).map(|_| f()).fold(Rates::default(), Rates::max)
}

/// Calls `f`, which keeps `threads` threads busy, until `at_least` has passed; returns the number of
/// calls and the time they took (CPU time: this thread's on 1 thread, else the process's per thread).
fn timed(at_least: Duration, threads: usize, mut f: impl FnMut()) -> (u64, Secs) {
    let clock = if threads == 1 { cputime::THREAD } else { cputime::PROCESS };
    f();
    let (start, cpu_start) = (Instant::now(), cputime::seconds(clock));
    let mut calls = 0u64;
    while start.elapsed() < at_least {
        f();
        calls += 1;
    }
    let cpu = (cputime::seconds(clock) - cpu_start) / threads as f64;
    (calls, Secs { wall: start.elapsed().as_secs_f64(), cpu })
}

/// Runs `kernel` on `threads` threads at once; returns their summed rates in GFLOP/s (over wall
/// time: each thread's flops over the slowest thread's time; over CPU time: the sum of each thread's
/// flops over its own CPU time).
fn on_threads(threads: usize, kernel: fn(u64) -> (f64, f32)) -> Rates {
    const ITERS: u64 = 20_000_000;
    let barrier = std::sync::Barrier::new(threads);
    let results: Vec<(f64, f64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let (start, cpu) = (Instant::now(), cputime::seconds(cputime::THREAD));
                    let (flops, sink) = kernel(ITERS);
                    black_box(sink);
                    (flops, start.elapsed().as_secs_f64(), cputime::seconds(cputime::THREAD) - cpu)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let slowest = results.iter().map(|r| r.1).fold(0.0, f64::max);
    Rates {
        wall: results.iter().map(|r| r.0).sum::<f64>() / slowest / 1e9,
        cpu: results.iter().map(|r| r.0 / r.2.max(1e-9)).sum::<f64>() / 1e9,
    }
}

#[path = "../../benches/support/cputime.rs"]
mod cputime;

/// One FMA-peak kernel: `run(iters)` returns the flops it did and a value to keep.
struct FmaKernel {
    name: &'static str,
    run: fn(u64) -> (f64, f32),
}

/// The FMA kernels this CPU can run.
fn fma_kernels() -> Vec<FmaKernel> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(FmaKernel { name: "AVX2 (FMA3, 8 lanes, 12 chains)", run: x86::avx2 });
        }
        if is_x86_feature_detected!("avx512f") {
            v.push(FmaKernel { name: "AVX-512 (16 lanes, 16 chains)", run: x86::avx512 });
        }
    }
    if v.is_empty() {
        v.push(FmaKernel { name: "scalar mul_add (8 chains; no x86 SIMD measured here)", run: scalar });
    }
    v
}

/// Eight chains of scalar `mul_add`, where no SIMD kernel applies.
fn scalar(iters: u64) -> (f64, f32) {
    let (a, b) = (black_box(0.999_999_9f32), black_box(1e-7f32));
    let mut acc = [1.0f32; 8];
    for _ in 0..iters {
        for x in &mut acc {
            *x = x.mul_add(a, b);
        }
    }
    (2.0 * 8.0 * iters as f64, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// 12 independent chains `acc = acc·a + b` of 8-lane FMAs (the values stay near 1: no
    /// subnormals, no infinities).
    pub fn avx2(iters: u64) -> (f64, f32) {
        // SAFETY: only listed when the CPU has AVX2 and FMA.
        let sink = unsafe { avx2_chains(iters) };
        (2.0 * 8.0 * 12.0 * iters as f64, sink)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_chains(iters: u64) -> f32 {
        let a = _mm256_set1_ps(black_box(0.999_999_9));
        let b = _mm256_set1_ps(black_box(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut total = _mm256_setzero_ps();
        for x in acc {
            total = _mm256_add_ps(total, x);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), total);
        lanes.iter().sum()
    }

    /// 16 independent chains of 16-lane FMAs.
    pub fn avx512(iters: u64) -> (f64, f32) {
        // SAFETY: only listed when the CPU has AVX-512F.
        let sink = unsafe { avx512_chains(iters) };
        (2.0 * 16.0 * 16.0 * iters as f64, sink)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_chains(iters: u64) -> f32 {
        let a = _mm512_set1_ps(black_box(0.999_999_9));
        let b = _mm512_set1_ps(black_box(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 16];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let mut total = _mm512_setzero_ps();
        for x in acc {
            total = _mm512_add_ps(total, x);
        }
        _mm512_reduce_add_ps(total)
    }
}

/// The CPU's model name: `/proc/cpuinfo` on Linux, else the CPUID brand string on x86_64.
fn cpu_model() -> String {
    let from_proc = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    from_proc.or_else(brand_string).unwrap_or_else(|| "unknown".into())
}

#[cfg(target_arch = "x86_64")]
fn brand_string() -> Option<String> {
    use std::arch::x86_64::__cpuid;
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 CPU; leaf 0x8000_0000 says which leaves exist.
    let max = unsafe { __cpuid(0x8000_0000) }.eax;
    if max < 0x8000_0004 {
        return None;
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002u32..=0x8000_0004 {
        #[allow(unused_unsafe)]
        // SAFETY: as above; the leaf exists.
        let r = unsafe { __cpuid(leaf) };
        for w in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
    }
    let s = String::from_utf8_lossy(&bytes).trim_matches(char::from(0)).trim().to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(not(target_arch = "x86_64"))]
fn brand_string() -> Option<String> {
    None
}

/// The vector and matrix features that decide the peak.
fn features() -> String {
    #[allow(unused_mut)]
    let mut have: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let all = [
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512bf16", is_x86_feature_detected!("avx512bf16")),
        ];
        have.extend(all.iter().filter(|f| f.1).map(|f| f.0));
        // AMX detection is unstable in `is_x86_feature_detected!`; Linux lists it in /proc/cpuinfo.
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags = flags.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
        have.extend(["amx_tile", "amx_bf16"].into_iter().filter(|f| flags.split_whitespace().any(|w| w == *f)));
    }
    #[cfg(target_arch = "aarch64")]
    {
        have.push("neon");
    }
    if have.is_empty() {
        "none detected".into()
    } else {
        have.join(" ")
    }
}
