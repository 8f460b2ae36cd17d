//! What the GEMM is tuned to, and the rules that tune it: a description of this CPU ([`CpuDesc`]:
//! its vector extensions, cache sizes, and how much faster a 512-bit FMA runs than a 256-bit one)
//! turned into a [`Choice`] (the instruction set for wide products, the one for thin ones, and the
//! block sizes of each) by [`choose`], a pure function the tests drive with synthetic descriptions
//! of CPUs this machine is not.
//!
//! Flags alone cannot tell the AVX-512 machine kinds apart: Intel's server cores (Skylake-SP Gold 6
//! and Platinum, Ice Lake-SP, Sapphire Rapids) have two 512-bit FMA pipes, so AVX-512 doubles the
//! peak over AVX2, while AMD's Zen 4 splits every 512-bit FMA into two 256-bit halves and Intel's
//! client cores fuse their two 256-bit pipes into one 512-bit one, so it does not. The kernels of
//! the two instruction sets round differently (other tiles, other orders of the sums), so the
//! choice decides the bits a training run ends with, and it must not depend on the machine's load:
//! [`wide_fma_from_cpuid`] answers from the CPU's identity wherever that is known, and only an
//! unknown core is measured ([`probe_wide_ratio`]), which `MODELC_GEMM_ISA` makes unnecessary.

use super::driver::Tiles;
use super::Isa;

/// Cache sizes in bytes (per core for L1 and L2; the whole L3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Caches {
    pub l1d: usize,
    pub l2: usize,
    pub l3: usize,
}

impl Caches {
    /// Assumed when the CPU does not report its caches: the smallest of the machines measured
    /// (Zen 4: 32 KB L1d, 1 MB L2, 32 MB L3).
    pub const FALLBACK: Caches = Caches { l1d: 32 << 10, l2: 1 << 20, l3: 32 << 20 };
}

/// Everything [`choose`] decides from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct CpuDesc {
    /// AVX2 and FMA3.
    pub avx2_fma: bool,
    /// AVX-512F.
    pub avx512f: bool,
    /// Cache sizes.
    pub caches: Caches,
    /// How 512-bit FMAs compare with 256-bit ones, from the CPU's identity
    /// ([`wide_fma_from_cpuid`]); `None` on a core the rules do not know.
    pub wide_fma: Option<WideFma>,
    /// Throughput of 512-bit FMAs over that of 256-bit ones, in flops ([`probe_wide_ratio`]); `None`
    /// when not measured (no AVX-512, or `wide_fma` known).
    pub wide_ratio: Option<f32>,
}

/// Who made the core (CPUID leaf 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Vendor {
    Intel,
    Amd,
    Other,
}

/// The core's identity from CPUID: what [`wide_fma_from_cpuid`] decides from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Core {
    pub vendor: Vendor,
    /// Display family: the base family, plus the extended family when the base is 0xF (leaf 1).
    pub family: u32,
    /// Display model: the base model, plus the extended model × 16 for families 6 and 0xF and up.
    pub model: u32,
    /// The brand string (leaves 0x8000_0002..=0x8000_0004), trimmed.
    pub brand: String,
}

/// The flops of this core's 512-bit FMAs against its 256-bit ones, where its identity tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WideFma {
    /// The same per cycle: AMD Zen 4 runs each 512-bit FMA as two 256-bit halves; Intel's client
    /// cores and one-FMA Xeons fuse the two 256-bit pipes into one 512-bit one.
    Same,
    /// Twice: two 512-bit FMA pipes.
    Double,
}

/// What the core's identity says of its 512-bit FMAs (meaningful only with AVX-512F), or `None`
/// where it does not say, and only a measurement can. Conservative: a core is named only where its
/// FMA pipes are documented, for a whole model, or, for Skylake-SP (whose SKUs have one or two),
/// by the brand string's series as Intel's `vpu-count` (github.com/jeffhammond/vpu-count, which BLIS
/// and TBLIS use to choose their Skylake kernels) reads it:
///
/// - AMD family 0x19 (Zen 3 and Zen 4; only Zen 4 has AVX-512): [`WideFma::Same`] (AMD's
///   optimization guide for family 19h: 512-bit operations issue as two 256-bit halves). Family
///   0x1A (Zen 5) is measured: its desktop and server parts have a 512-bit data path, some mobile
///   ones do not.
/// - Intel family 6, model 0x55 (Skylake-SP, Cascade Lake, Cooper Lake): Platinum, Gold 6xxx and
///   Gold 5122, Core i7/i9 X-series, Xeon W-21xx above W-2104 and W-22xx/32xx: [`WideFma::Double`];
///   Gold 5xxx, Silver, Bronze, Xeon W-2102/2104 and Xeon D-21xx: [`WideFma::Same`]; others measured.
/// - Intel family 6, the server cores after it, model 0x6A (Ice Lake-SP), 0x8F (Sapphire Rapids),
///   0xCF (Emerald Rapids), 0xAD and 0xAE (Granite Rapids): Platinum, Gold and Silver:
///   [`WideFma::Double`]; other series (Bronze, W, D) measured.
/// - Intel family 6, the client cores with AVX-512, model 0x66 (Cannon Lake), 0x7D and 0x7E (Ice
///   Lake), 0x8C and 0x8D (Tiger Lake), 0xA7 (Rocket Lake): one 512-bit FMA pipe, [`WideFma::Same`].
pub(super) fn wide_fma_from_cpuid(core: &Core) -> Option<WideFma> {
    use WideFma::{Double, Same};
    // Emerald Rapids spells its brand in capitals.
    let brand = core.brand.to_ascii_lowercase();
    match (core.vendor, core.family, core.model) {
        (Vendor::Amd, 0x19, _) => Some(Same),
        (Vendor::Intel, 6, 0x55) => skylake_sp_fma(&brand),
        (Vendor::Intel, 6, 0x6A | 0x8F | 0xCF | 0xAD | 0xAE) => {
            ["platinum", "gold", "silver"].iter().any(|series| brand.contains(series)).then_some(Double)
        }
        (Vendor::Intel, 6, 0x66 | 0x7D | 0x7E | 0x8C | 0x8D | 0xA7) => Some(Same),
        _ => None,
    }
}

/// The FMA pipes of a Skylake-SP-class core (model 0x55) by its brand string's series and number
/// (`brand` in lower case).
fn skylake_sp_fma(brand: &str) -> Option<WideFma> {
    use WideFma::{Double, Same};
    // The number after a series name: "intel(r) xeon(r) gold 6148 cpu" → "6148".
    let number = |series: &str| -> Option<&str> {
        let rest = brand.split(series).nth(1)?.trim_start();
        Some(rest.split(|c: char| c.is_whitespace()).next().unwrap_or(""))
    };
    if brand.contains("platinum") {
        return Some(Double);
    }
    if let Some(n) = number("gold") {
        return match n.as_bytes().first() {
            Some(b'6') => Some(Double),
            Some(b'5') if n.starts_with("5122") => Some(Double),
            Some(b'5') => Some(Same),
            _ => None,
        };
    }
    if brand.contains("silver") || brand.contains("bronze") {
        return Some(Same);
    }
    if let Some(n) = number(" w-") {
        return match n {
            _ if n.starts_with("2102") || n.starts_with("2104") => Some(Same),
            _ if n.starts_with('2') || n.starts_with('3') => Some(Double),
            _ => None,
        };
    }
    if number(" d-").is_some_and(|n| n.starts_with("21")) {
        return Some(Same);
    }
    // Skylake-X and Cascade Lake-X desktop parts: "Intel(R) Core(TM) i9-7980XE CPU".
    if brand.contains("core(tm)") {
        return Some(Double);
    }
    None
}

/// The instruction sets and block sizes the GEMM runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Choice {
    /// For products whose C is at least [`WIDE_MIN_N`] columns wide.
    pub wide: Isa,
    /// For thinner ones (and the narrow dense-layer path).
    pub narrow: Isa,
    /// The caches the block sizes come from.
    pub caches: Caches,
}

/// On a core [`wide_fma_from_cpuid`] does not know, AVX-512 is chosen for wide products only when
/// its FMAs measured at least this many times the flops of AVX2's. Measured: on Zen 4 (this repository's AMD machines) the probe gives 0.95–1.05
/// and the FMA peak is 117 GFLOP/s either way, and the AVX-512 GEMM reached 83–85% of it against
/// 86–88% for AVX2 (BENCHMARKS.md, "Zen 4, December 2026"); on the Sapphire Rapids Xeon of issue
/// #23 the peak was 230 against 118 GFLOP/s (1.95) and the AVX-512 GEMM ran 150 GFLOP/s against
/// 95 at 256×784×512. 1.4 sits well clear of both. (Before the CPUID rules and the interleaved probe, a
/// probe run in an unoptimized build on two busy cores measured 1.5–1.7 on Zen 4 and flipped the
/// choice between runs: issue #21.)
pub(super) const WIDE_MIN_RATIO: f32 = 1.4;

/// Products with a C narrower than this stay on AVX2 even where AVX-512 is chosen: the AVX-512
/// tile is 32 columns (two 16-lane vectors) and a thinner C runs it masked. Measured on the
/// Sapphire Rapids Xeon (issue #23): 32×16×8 fell from 57 to 23 GFLOP/s on AVX-512 and M1's
/// inference (n ≤ 16) got 1.35–1.43× slower, while M4 (n = 512) gained even at batch 1 (92 → 81 µs).
pub(super) const WIDE_MIN_N: usize = 32;

/// The choice for `cpu`; `forced` (from `MODELC_GEMM_ISA`, when this CPU has it) overrides the
/// instruction set of every path.
pub(super) fn choose(cpu: &CpuDesc, forced: Option<Isa>) -> Choice {
    let caches = cpu.caches;
    if let Some(isa) = forced {
        return Choice { wide: isa, narrow: isa, caches };
    }
    #[cfg(target_arch = "x86_64")]
    if cpu.avx2_fma {
        let wide_pays = cpu.avx512f
            && match cpu.wide_fma {
                Some(known) => known == WideFma::Double,
                None => cpu.wide_ratio.is_some_and(|r| r >= WIDE_MIN_RATIO),
            };
        let wide = if wide_pays { Isa::Avx512 } else { Isa::Avx2 };
        return Choice { wide, narrow: Isa::Avx2, caches };
    }
    #[cfg(target_arch = "x86_64")]
    if cpu.avx512f {
        // AVX-512 without AVX2 exists only in theory (Knights Landing has both); take it for all.
        return Choice { wide: Isa::Avx512, narrow: Isa::Avx512, caches };
    }
    Choice { wide: Isa::Portable, narrow: Isa::Portable, caches }
}

impl Choice {
    /// The instruction set for a product with a C of `n` columns.
    #[inline]
    pub(super) fn for_n(&self, n: usize) -> Isa {
        if n >= WIDE_MIN_N {
            self.wide
        } else {
            self.narrow
        }
    }
}

/// The packed path's block sizes for an `mr`×`nr` register tile on these caches (BLIS's analytic
/// rules, with the fractions measured):
///
/// - **kc**: a packed A micro-panel (mr×kc) and B micro-panel (kc×nr) together fill at most 3/2 of
///   L1d, rounded down to 32, but at least 256 and at most 512. The B micro-panel may overflow L1d:
///   it streams from L2 again for each A micro-panel, 88 bytes per 6 cycles for AVX2's 6×16 tile,
///   well inside L2's bandwidth, while every k-block saved saves a pass over C (loaded, summed and
///   stored) and a microkernel call's fixed cost per tile. Measured on Zen 3 (32 KB L1d, 6×16 tile,
///   best of 8–16 interleaved rounds): kc = 512 against the 256 of the earlier 3/4 rule ran
///   256×784×512 at 92.8 against 91.8 GFLOP/s, 256×512×512 at 93.5 against 92.5, 1024³ at 94.1
///   against 92.4; mc from 30 to 96 measured alike at kc = 512. The floor is measured: on Zen 4
///   (32 KB L1d) kc = 128 lost 8–13% at all three sizes of `examples/peak` against 256 (AVX2: 78,
///   79, 65% of the peak against 86, 85, 75%), even for AVX-512's 12×32 tile, whose micro-panels at
///   256 overflow L1d (that tile stays at 256 on a 32 KB L1d).
/// - **mc**: a packed A block (mc×kc) fills at most 1/8 of L2, rounded down to mr and kept in
///   2·mr..=512. On Zen 4 (1 MB L2) that was 126 at kc 256, where 96 and 144 measured alike and 192
///   and 240 were 3–8% slower (the A block must leave L2 room for the B block's panels streaming
///   through); at kc 512 it is 60, the same bytes.
/// - **nc**: a packed B block (kc×nc) fills at most 1/8 of L3 (it is shared by the cores, and each
///   thread's part packs its own), rounded down to nr and kept in nr..=4096.
pub(super) fn tiles_for(mr: usize, nr: usize, caches: Caches) -> Tiles {
    let f32s = |bytes: usize| bytes / 4;
    let kc = (f32s(caches.l1d * 3 / 2) / (mr + nr) / 32 * 32).clamp(256, 512);
    let mc = (f32s(caches.l2 / 8) / kc / mr * mr).clamp(2 * mr, 512 / mr * mr);
    let nc = (f32s(caches.l3 / 8) / kc / nr * nr).clamp(nr, 4096 / nr * nr);
    Tiles { mr, nr, kc, mc, nc }
}

/// `KC,MC,NC` from `MODELC_GEMM_BLOCKS`, or `None` unless the value is three positive numbers.
pub(super) fn parse_blocks(v: &str) -> Option<[usize; 3]> {
    let mut it = v.split(',').map(|x| x.trim().parse::<usize>().ok().filter(|&x| x > 0));
    let blocks = [it.next()??, it.next()??, it.next()??];
    it.next().is_none().then_some(blocks)
}

/// `t` with the block sizes `[kc, mc, nc]`, mc and nc rounded up to whole tiles of `t`.
pub(super) fn with_blocks(t: Tiles, [kc, mc, nc]: [usize; 3]) -> Tiles {
    Tiles { kc, mc: mc.div_ceil(t.mr) * t.mr, nc: nc.div_ceil(t.nr) * t.nr, ..t }
}

/// This CPU's caches from `cpuid` (leaf 4 on Intel, 0x8000_001D on AMD: the same layout), or
/// [`Caches::FALLBACK`] where it does not say.
pub(super) fn detect_caches() -> Caches {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        let vendor = __cpuid_count(0, 0);
        let amd = vendor.ebx == u32::from_le_bytes(*b"Auth");
        let max_ext = __cpuid_count(0x8000_0000, 0).eax;
        let max_basic = vendor.eax;
        let leaf = match amd {
            true if max_ext >= 0x8000_001D => Some(0x8000_001D),
            false if max_basic >= 4 => Some(4),
            _ => None,
        };
        if let Some(leaf) = leaf {
            let mut c = Caches { l1d: 0, l2: 0, l3: 0 };
            for sub in 0..16 {
                let r = __cpuid_count(leaf, sub);
                let kind = r.eax & 0x1f;
                if kind == 0 {
                    break;
                }
                let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
                let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
                let line = (r.ebx & 0xfff) as usize + 1;
                let sets = r.ecx as usize + 1;
                let size = ways * parts * line * sets;
                match ((r.eax >> 5) & 7, kind) {
                    (1, 1) => c.l1d = size,
                    (2, 1 | 3) => c.l2 = size,
                    (3, 1 | 3) => c.l3 = size,
                    _ => {}
                }
            }
            if c.l1d > 0 && c.l2 > 0 {
                // No L3 (some client parts): the B block is then bounded by L2 rules only.
                c.l3 = if c.l3 > 0 { c.l3 } else { c.l2 };
                return c;
            }
        }
    }
    Caches::FALLBACK
}

/// The flops of 512-bit FMAs over those of 256-bit ones on this core, measured: 12 independent
/// chains of FMAs, 4,000 deep (about 10 µs a round at 3 GHz), written in assembly so that the
/// measurement is the same in an unoptimized build; one round of each width to wake the 512-bit
/// units, then [`PROBE_ROUNDS`] rounds of the two widths interleaved, so that both see the same load,
/// and the ratio of their fastest rounds ([`ratio_of_fastest`]), so that a round slowed by another
/// process does not count. About 1 on Zen 4, about 2 on cores with two 512-bit pipes. `None`
/// without AVX-512F and AVX2. Timing: on a busy machine two runs may still measure either side of
/// [`WIDE_MIN_RATIO`], which is why it runs only where [`wide_fma_from_cpuid`] does not know the
/// core, and why `MODELC_GEMM_ISA` pins the choice.
pub(super) fn probe_wide_ratio() -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        const STEPS: u32 = 4_000;
        let time = |f: unsafe fn(u32)| {
            let t = std::time::Instant::now();
            // SAFETY: both features were detected just above.
            unsafe { f(STEPS) };
            t.elapsed().as_secs_f64()
        };
        time(probe::fma256);
        time(probe::fma512);
        let mut rounds = [(0.0, 0.0); PROBE_ROUNDS];
        for round in &mut rounds {
            *round = (time(probe::fma256), time(probe::fma512));
        }
        return Some(ratio_of_fastest(&rounds));
    }
    None
}

/// Rounds of each width [`probe_wide_ratio`] times.
const PROBE_ROUNDS: usize = 9;

/// The flops of 512-bit FMAs over 256-bit ones from rounds of (256-bit, 512-bit) seconds of the same
/// number of instructions: twice the lanes per instruction, so 2 · fastest 256-bit / fastest 512-bit.
pub(super) fn ratio_of_fastest(rounds: &[(f64, f64)]) -> f32 {
    let t256 = rounds.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let t512 = rounds.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
    (2.0 * t256 / t512.max(1e-12)) as f32
}

/// The FMA chains [`probe_wide_ratio`] times, in assembly: 12 accumulators in registers, each
/// `acc += a·b` per step, so every step issues 12 independent FMAs whatever the optimization level.
#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// `steps` (at least 1) steps of 12 independent 256-bit FMAs.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(steps: u32) {
        let (a, b) = (_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-7));
        // SAFETY: registers only (no memory, no stack); the function enables AVX2 and FMA.
        unsafe {
            asm!(
                "vmovaps ymm0, {a}", "vmovaps ymm1, {a}", "vmovaps ymm2, {a}", "vmovaps ymm3, {a}",
                "vmovaps ymm4, {a}", "vmovaps ymm5, {a}", "vmovaps ymm6, {a}", "vmovaps ymm7, {a}",
                "vmovaps ymm8, {a}", "vmovaps ymm9, {a}", "vmovaps ymm10, {a}", "vmovaps ymm11, {a}",
                "2:",
                "vfmadd231ps ymm0, {a}, {b}", "vfmadd231ps ymm1, {a}, {b}", "vfmadd231ps ymm2, {a}, {b}",
                "vfmadd231ps ymm3, {a}, {b}", "vfmadd231ps ymm4, {a}, {b}", "vfmadd231ps ymm5, {a}, {b}",
                "vfmadd231ps ymm6, {a}, {b}", "vfmadd231ps ymm7, {a}, {b}", "vfmadd231ps ymm8, {a}, {b}",
                "vfmadd231ps ymm9, {a}, {b}", "vfmadd231ps ymm10, {a}, {b}", "vfmadd231ps ymm11, {a}, {b}",
                "dec {n:e}",
                "jnz 2b",
                a = in(ymm_reg) a,
                b = in(ymm_reg) b,
                n = inout(reg) steps.max(1) => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _, out("ymm5") _,
                out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                options(nomem, nostack),
            );
        }
    }

    /// `steps` (at least 1) steps of 12 independent 512-bit FMAs.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(steps: u32) {
        let (a, b) = (_mm512_set1_ps(0.999_9), _mm512_set1_ps(1e-7));
        // SAFETY: registers only (no memory, no stack); the function enables AVX-512F.
        unsafe {
            asm!(
                "vmovaps zmm0, {a}", "vmovaps zmm1, {a}", "vmovaps zmm2, {a}", "vmovaps zmm3, {a}",
                "vmovaps zmm4, {a}", "vmovaps zmm5, {a}", "vmovaps zmm6, {a}", "vmovaps zmm7, {a}",
                "vmovaps zmm8, {a}", "vmovaps zmm9, {a}", "vmovaps zmm10, {a}", "vmovaps zmm11, {a}",
                "2:",
                "vfmadd231ps zmm0, {a}, {b}", "vfmadd231ps zmm1, {a}, {b}", "vfmadd231ps zmm2, {a}, {b}",
                "vfmadd231ps zmm3, {a}, {b}", "vfmadd231ps zmm4, {a}, {b}", "vfmadd231ps zmm5, {a}, {b}",
                "vfmadd231ps zmm6, {a}, {b}", "vfmadd231ps zmm7, {a}, {b}", "vfmadd231ps zmm8, {a}, {b}",
                "vfmadd231ps zmm9, {a}, {b}", "vfmadd231ps zmm10, {a}, {b}", "vfmadd231ps zmm11, {a}, {b}",
                "dec {n:e}",
                "jnz 2b",
                a = in(zmm_reg) a,
                b = in(zmm_reg) b,
                n = inout(reg) steps.max(1) => _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _,
                out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                options(nomem, nostack),
            );
        }
    }
}

/// This core's identity from CPUID ([`Core`]).
pub(super) fn detect_core() -> Core {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        let leaf0 = __cpuid_count(0, 0);
        let vendor = match [leaf0.ebx, leaf0.edx, leaf0.ecx] {
            [b, d, c] if (b, d, c) == (word(b"Genu"), word(b"ineI"), word(b"ntel")) => Vendor::Intel,
            [b, d, c] if (b, d, c) == (word(b"Auth"), word(b"enti"), word(b"cAMD")) => Vendor::Amd,
            _ => Vendor::Other,
        };
        let (family, model) = if leaf0.eax >= 1 { family_model(__cpuid_count(1, 0).eax) } else { (0, 0) };
        let mut brand = Vec::with_capacity(48);
        if __cpuid_count(0x8000_0000, 0).eax >= 0x8000_0004 {
            for leaf in 0x8000_0002..=0x8000_0004 {
                let r = __cpuid_count(leaf, 0);
                for w in [r.eax, r.ebx, r.ecx, r.edx] {
                    brand.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
        let brand = String::from_utf8_lossy(&brand).trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
        Core { vendor, family, model, brand }
    }
    #[cfg(not(target_arch = "x86_64"))]
    Core { vendor: Vendor::Other, family: 0, model: 0, brand: String::new() }
}

/// Four ASCII bytes as CPUID returns them in a register.
#[cfg(target_arch = "x86_64")]
fn word(bytes: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*bytes)
}

/// The display family and model from CPUID leaf 1's EAX (Intel's and AMD's rule).
pub(super) fn family_model(eax: u32) -> (u32, u32) {
    let (base_family, base_model) = ((eax >> 8) & 0xf, (eax >> 4) & 0xf);
    let (ext_family, ext_model) = ((eax >> 20) & 0xff, (eax >> 16) & 0xf);
    let family = if base_family == 0xf { base_family + ext_family } else { base_family };
    let model = if base_family == 6 || base_family >= 0xf { base_model + (ext_model << 4) } else { base_model };
    (family, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4: Caches = Caches { l1d: 32 << 10, l2: 1 << 20, l3: 32 << 20 };
    const SAPPHIRE_RAPIDS: Caches = Caches { l1d: 48 << 10, l2: 2 << 20, l3: 105 << 20 };

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn choose_takes_avx512_for_wide_products_only_where_its_fmas_are_twice_as_fast() {
        let cpu = |avx512f, wide_ratio, caches| CpuDesc { avx2_fma: true, avx512f, caches, wide_fma: None, wide_ratio };
        // Sapphire Rapids: two 512-bit pipes.
        let spr = choose(&cpu(true, Some(1.93), SAPPHIRE_RAPIDS), None);
        assert_eq!((spr.wide, spr.narrow), (Isa::Avx512, Isa::Avx2));
        assert_eq!(spr.for_n(512), Isa::Avx512);
        assert_eq!(spr.for_n(WIDE_MIN_N), Isa::Avx512);
        assert_eq!(spr.for_n(16), Isa::Avx2);
        assert_eq!(spr.for_n(8), Isa::Avx2);
        // Zen 4: double-pumped, even when the probe is noisy.
        for r in [0.9, 1.0, 1.2] {
            let zen4 = choose(&cpu(true, Some(r), ZEN4), None);
            assert_eq!((zen4.wide, zen4.narrow), (Isa::Avx2, Isa::Avx2), "ratio {r}");
        }
        // AVX2 only (no probe), and a probe that did not run.
        assert_eq!(choose(&cpu(false, None, ZEN4), None).wide, Isa::Avx2);
        assert_eq!(choose(&cpu(true, None, ZEN4), None).wide, Isa::Avx2);
        // The environment variable overrides every path.
        let forced = choose(&cpu(true, Some(1.0), ZEN4), Some(Isa::Avx512));
        assert_eq!((forced.wide, forced.narrow), (Isa::Avx512, Isa::Avx512));
        let forced = choose(&cpu(true, Some(2.0), SAPPHIRE_RAPIDS), Some(Isa::Portable));
        assert_eq!((forced.for_n(512), forced.for_n(4)), (Isa::Portable, Isa::Portable));
        // Neither extension: portable.
        let old = CpuDesc { avx2_fma: false, avx512f: false, caches: Caches::FALLBACK, wide_fma: None, wide_ratio: None };
        assert_eq!(choose(&old, None).wide, Isa::Portable);
        // The caches pass through to the block sizes.
        assert_eq!(spr.caches, SAPPHIRE_RAPIDS);
    }

    fn core(vendor: Vendor, family: u32, model: u32, brand: &str) -> Core {
        Core { vendor, family, model, brand: brand.into() }
    }

    #[test]
    fn cpuid_names_the_fma_pipes_of_known_cores_and_leaves_the_others_to_the_probe() {
        use Vendor::{Amd, Intel, Other};
        use WideFma::{Double, Same};
        let cases = [
            // AMD Zen 4, server and desktop: double-pumped.
            (core(Amd, 0x19, 0x11, "AMD EPYC 9654 96-Core Processor"), Some(Same)),
            (core(Amd, 0x19, 0x61, "AMD Ryzen 9 7950X 16-Core Processor"), Some(Same)),
            (core(Amd, 0x19, 0x11, "AMD EPYC"), Some(Same)),
            // Zen 5: some parts have the 512-bit path, some do not.
            (core(Amd, 0x1A, 0x02, "AMD EPYC 9755 128-Core Processor"), None),
            // Intel server cores after Skylake: by series.
            (core(Intel, 6, 0x8F, "Intel(R) Xeon(R) Platinum 8480+"), Some(Double)),
            (core(Intel, 6, 0x8F, "Intel(R) Xeon(R) Gold 6448Y"), Some(Double)),
            (core(Intel, 6, 0x8F, "Intel(R) Xeon(R) Bronze 3408U"), None),
            (core(Intel, 6, 0x6A, "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz"), Some(Double)),
            (core(Intel, 6, 0xCF, "INTEL(R) XEON(R) PLATINUM 8592+"), Some(Double)),
            (core(Intel, 6, 0xAD, "Intel(R) Xeon(R) 6980P"), None),
            // Skylake-SP class: by series and number (Intel's vpu-count).
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) Platinum 8180 CPU @ 2.50GHz"), Some(Double)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"), Some(Double)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) Gold 5122 CPU @ 3.60GHz"), Some(Double)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) Gold 5120 CPU @ 2.20GHz"), Some(Same)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) Gold 5218R CPU @ 2.10GHz"), Some(Same)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) Silver 4114 CPU @ 2.20GHz"), Some(Same)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) Bronze 3106 CPU @ 1.70GHz"), Some(Same)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) W-2104 CPU @ 3.20GHz"), Some(Same)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) W-2123 CPU @ 3.60GHz"), Some(Double)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) W-3175X CPU @ 3.10GHz"), Some(Double)),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) D-2141I CPU @ 2.20GHz"), Some(Same)),
            (core(Intel, 6, 0x55, "Intel(R) Core(TM) i9-7980XE CPU @ 2.60GHz"), Some(Double)),
            (core(Intel, 6, 0x55, "Genuine Intel(R) CPU 0000%@"), None),
            (core(Intel, 6, 0x55, "Intel(R) Xeon(R) CPU"), None),
            // Client cores with AVX-512: one 512-bit pipe.
            (core(Intel, 6, 0x8C, "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz"), Some(Same)),
            (core(Intel, 6, 0x7E, "Intel(R) Core(TM) i7-1065G7 CPU @ 1.30GHz"), Some(Same)),
            (core(Intel, 6, 0xA7, "11th Gen Intel(R) Core(TM) i9-11900K @ 3.50GHz"), Some(Same)),
            // Unknown models and vendors, and a hypervisor's blank identity.
            (core(Intel, 6, 0x97, "12th Gen Intel(R) Core(TM) i9-12900K"), None),
            (core(Other, 7, 0x3B, "ZHAOXIN KaiXian KX-7000"), None),
            (core(Intel, 0, 0, ""), None),
        ];
        for (core, want) in cases {
            assert_eq!(wide_fma_from_cpuid(&core), want, "{core:?}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_core_cpuid_knows_is_decided_without_the_probe() {
        let desc = |wide_fma, wide_ratio| CpuDesc { avx2_fma: true, avx512f: true, caches: ZEN4, wide_fma, wide_ratio };
        // Zen 4 stays on AVX2 whatever a probe run on a busy machine measured (issue #21: 1.5–1.7).
        for ratio in [None, Some(1.0), Some(1.7), Some(3.0)] {
            assert_eq!(choose(&desc(Some(WideFma::Same), ratio), None).wide, Isa::Avx2, "{ratio:?}");
        }
        // Two 512-bit pipes take AVX-512 for wide products, thin ones stay on AVX2.
        let spr = choose(&desc(Some(WideFma::Double), None), None);
        assert_eq!((spr.wide, spr.narrow), (Isa::Avx512, Isa::Avx2));
        // Unknown: the measured ratio decides, against the threshold.
        assert_eq!(choose(&desc(None, Some(WIDE_MIN_RATIO + 0.01)), None).wide, Isa::Avx512);
        assert_eq!(choose(&desc(None, Some(WIDE_MIN_RATIO - 0.01)), None).wide, Isa::Avx2);
        assert_eq!(choose(&desc(None, None), None).wide, Isa::Avx2);
        // The environment variable still overrides.
        assert_eq!(choose(&desc(Some(WideFma::Same), None), Some(Isa::Avx512)).wide, Isa::Avx512);
    }

    #[test]
    fn family_and_model_follow_the_extended_fields() {
        // AMD EPYC 9654 (Zen 4): family 0xF + 0xA, model 1 + 0x10.
        assert_eq!(family_model(0x00A1_0F11), (0x19, 0x11));
        // Sapphire Rapids, Skylake-SP, Tiger Lake.
        assert_eq!(family_model(0x0008_06F8), (6, 0x8F));
        assert_eq!(family_model(0x0005_0654), (6, 0x55));
        assert_eq!(family_model(0x0008_06C1), (6, 0x8C));
        // A family below 6 ignores the extended model.
        assert_eq!(family_model(0x0001_0521), (5, 2));
    }

    #[test]
    fn the_probe_ratio_takes_the_fastest_round_of_each_width() {
        // The same flops per cycle, with a round of each width slowed by another process.
        let rounds = [(1.0, 2.0), (3.0, 2.0), (1.0, 6.0), (1.2, 2.1)];
        assert_eq!(ratio_of_fastest(&rounds), 1.0);
        // Twice the flops: the 512-bit rounds take as long for twice the lanes.
        assert_eq!(ratio_of_fastest(&[(1.0, 1.0), (1.5, 1.0)]), 2.0);
    }

    #[test]
    fn this_core_has_an_identity() {
        let core = detect_core();
        #[cfg(target_arch = "x86_64")]
        assert!(core.family >= 5, "{core:?}");
        // Whatever it is, the rules answer without panicking.
        let _ = wide_fma_from_cpuid(&core);
    }

    #[test]
    fn tiles_for_fits_the_blocks_to_the_caches() {
        // Zen 4, AVX2's 6×16 tile: kc at the ceiling (measured best on Zen 3, whose L1d is the
        // same), the A block in 1/8 of the 1 MB L2 (the same bytes as the 126×256 measured best).
        let t = tiles_for(6, 16, ZEN4);
        assert_eq!((t.kc, t.mc, t.nc), (512, 60, 2048));
        // Zen 4, AVX-512's 12×32 tile at the floor.
        let t = tiles_for(12, 32, ZEN4);
        assert_eq!(t.kc, 256);
        // Sapphire Rapids (48 KB L1d, 2 MB L2): AVX-512's 12×32 tile with a deeper kc and a larger
        // A block, AVX2's 6×16 at the kc ceiling.
        let t = tiles_for(12, 32, SAPPHIRE_RAPIDS);
        assert_eq!((t.kc, t.mc, t.nc), (416, 156, 4096));
        let t = tiles_for(6, 16, SAPPHIRE_RAPIDS);
        assert_eq!((t.kc, t.mc, t.nc), (512, 126, 4096));
        for (mr, nr) in [(4, 16), (6, 16), (12, 32)] {
            for caches in [ZEN4, SAPPHIRE_RAPIDS, Caches { l1d: 16 << 10, l2: 256 << 10, l3: 256 << 10 }] {
                let t = tiles_for(mr, nr, caches);
                assert_eq!((t.mr, t.nr), (mr, nr));
                assert!((256..=512).contains(&t.kc) && t.kc.is_multiple_of(32), "{t:?}");
                assert!(t.mc.is_multiple_of(mr) && t.mc >= 2 * mr && t.mc <= 512, "{t:?}");
                assert!(t.nc.is_multiple_of(nr) && t.nc >= nr && t.nc <= 4096, "{t:?}");
                // Above the floor, the micro-panels fit 3/2 of L1d.
                if t.kc > 256 {
                    assert!((mr + nr) * t.kc * 4 <= caches.l1d * 3 / 2, "{t:?}");
                }
            }
        }
    }

    #[test]
    fn blocks_from_the_environment_are_three_positive_numbers_rounded_to_tiles() {
        assert_eq!(parse_blocks("256,126,4096"), Some([256, 126, 4096]));
        assert_eq!(parse_blocks(" 512, 96 ,1024"), Some([512, 96, 1024]));
        for bad in ["", "256", "256,126", "256,126,4096,1", "0,126,4096", "a,b,c", "256,-1,4096"] {
            assert_eq!(parse_blocks(bad), None, "{bad:?}");
        }
        let t = with_blocks(tiles_for(6, 16, ZEN4), [320, 100, 1000]);
        assert_eq!((t.mr, t.nr, t.kc, t.mc, t.nc), (6, 16, 320, 102, 1008));
    }

    #[test]
    fn detected_caches_are_plausible() {
        let c = detect_caches();
        assert!(c.l1d >= 8 << 10 && c.l1d <= 1 << 20, "{c:?}");
        assert!(c.l2 >= c.l1d && c.l3 >= c.l2, "{c:?}");
    }

    #[test]
    fn the_probe_measures_a_ratio_only_with_avx512() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // A measured ratio, finite and positive. Its value (about 1 on Zen 4, about 2 with two
            // 512-bit pipes) is timing, which another process's load can push anywhere (a CI run
            // under load measured 3): a unit test checks that it is measured, the benches its value.
            let r = probe_wide_ratio().expect("measured");
            assert!(r.is_finite() && r > 0.0, "ratio {r}");
            return;
        }
        assert_eq!(probe_wide_ratio(), None);
    }
}
