//! What the GEMM is tuned to, and the rules that tune it: a description of this CPU ([`CpuDesc`]:
//! its vector extensions, cache sizes, and how much faster a 512-bit FMA runs than a 256-bit one,
//! measured at first use) turned into a [`Choice`] (the instruction set for wide products, the one
//! for thin ones, and the block sizes of each) by [`choose`], a pure function the tests drive with
//! synthetic descriptions of CPUs this machine is not.
//!
//! Flags alone cannot tell the two AVX-512 machine kinds apart: Intel's server cores (Sapphire
//! Rapids class) have two 512-bit FMA pipes, so AVX-512 doubles the peak over AVX2, while AMD's Zen 4
//! splits every 512-bit FMA into two 256-bit halves, so it does not. [`probe_wide_ratio`] measures
//! it, in well under a millisecond per round.

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
    /// Throughput of 512-bit FMAs over that of 256-bit ones, in flops ([`probe_wide_ratio`]); `None`
    /// when not measured (no AVX-512).
    pub wide_ratio: Option<f32>,
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

/// AVX-512 is chosen for wide products only when its FMAs deliver at least this many times the
/// flops of AVX2's. Measured: on Zen 4 (this repository's AMD machines) the probe gives 0.95–1.05
/// and the FMA peak is 117 GFLOP/s either way, and the AVX-512 GEMM reached 83–85% of it against
/// 86–88% for AVX2 (BENCHMARKS.md, "Zen 4, December 2026"); on the Sapphire Rapids Xeon of issue
/// #23 the peak was 230 against 118 GFLOP/s (1.95) and the AVX-512 GEMM ran 150 GFLOP/s against
/// 95 at 256×784×512. 1.4 sits well clear of both, so a noisy probe does not flip the choice.
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
        let wide_pays = cpu.avx512f && cpu.wide_ratio.is_some_and(|r| r >= WIDE_MIN_RATIO);
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
/// - **kc**: a packed A micro-panel (mr×kc) and B micro-panel (kc×nr) together fill at most 3/4 of
///   L1d, rounded down to 32, but at least 256 and at most 512. The floor is measured: on Zen 4
///   (32 KB L1d) kc = 128 lost 8–13% at all three sizes of `examples/peak` against 256 (AVX2: 78,
///   79, 65% of the peak against 86, 85, 75%), even for AVX-512's 12×32 tile, whose micro-panels at
///   256 overflow L1d; 384 and 512 measured the same as 256 within noise (busy machine).
/// - **mc**: a packed A block (mc×kc) fills at most 1/8 of L2, rounded down to mr and kept in
///   2·mr..=512. On Zen 4 (1 MB L2) that is 126; 96 and 144 measured alike, 192 and 240 were 3–8%
///   slower (the A block must leave L2 room for the B block's panels streaming through).
/// - **nc**: a packed B block (kc×nc) fills at most 1/8 of L3 (it is shared by the cores, and each
///   thread's part packs its own), rounded down to nr and kept in nr..=4096.
pub(super) fn tiles_for(mr: usize, nr: usize, caches: Caches) -> Tiles {
    let f32s = |bytes: usize| bytes / 4;
    let kc = (f32s(caches.l1d * 3 / 4) / (mr + nr) / 32 * 32).clamp(256, 512);
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

/// The flops of 512-bit FMAs over those of 256-bit ones on this core: the best of 5 rounds of each
/// (12 independent chains, 2,000 steps: about 0.1 ms per round on a 3 GHz core, under 2 ms in all),
/// so a round slowed by another process does not count. About 1 on Zen 4 (double-pumped), about 2
/// on cores with two 512-bit pipes. `None` without AVX-512F and AVX2.
pub(super) fn probe_wide_ratio() -> Option<f32> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        const STEPS: u32 = 2_000;
        let best = |f: &dyn Fn() -> f32| {
            (0..5)
                .map(|_| {
                    let t = std::time::Instant::now();
                    std::hint::black_box(f());
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        // SAFETY: both features were detected just above.
        let t256 = best(&|| unsafe { probe::fma256(STEPS) });
        // SAFETY: as above.
        let t512 = best(&|| unsafe { probe::fma512(STEPS) });
        // Twice the lanes per instruction: the ratio of flops is 2·t256/t512.
        return Some((2.0 * t256 / t512.max(1e-12)) as f32);
    }
    None
}

/// The FMA chains [`probe_wide_ratio`] times.
#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::x86_64::*;

    /// 12 independent chains of 256-bit FMAs, `steps` deep; returns a lane of their sum.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(steps: u32) -> f32 {
        let a = _mm256_set1_ps(0.999_9);
        let b = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..steps {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let s = acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        _mm256_cvtss_f32(s)
    }

    /// 12 independent chains of 512-bit FMAs, `steps` deep; returns a lane of their sum.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(steps: u32) -> f32 {
        let a = _mm512_set1_ps(0.999_9);
        let b = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..steps {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let s = acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4: Caches = Caches { l1d: 32 << 10, l2: 1 << 20, l3: 32 << 20 };
    const SAPPHIRE_RAPIDS: Caches = Caches { l1d: 48 << 10, l2: 2 << 20, l3: 105 << 20 };

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn choose_takes_avx512_for_wide_products_only_where_its_fmas_are_twice_as_fast() {
        let cpu = |avx512f, wide_ratio, caches| CpuDesc { avx2_fma: true, avx512f, caches, wide_ratio };
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
        let old = CpuDesc { avx2_fma: false, avx512f: false, caches: Caches::FALLBACK, wide_ratio: None };
        assert_eq!(choose(&old, None).wide, Isa::Portable);
        // The caches pass through to the block sizes.
        assert_eq!(spr.caches, SAPPHIRE_RAPIDS);
    }

    #[test]
    fn tiles_for_fits_the_blocks_to_the_caches() {
        // Zen 4, AVX2's 6×16 tile: the sizes measured best.
        let t = tiles_for(6, 16, ZEN4);
        assert_eq!((t.kc, t.mc, t.nc), (256, 126, 4096));
        // Sapphire Rapids: AVX-512's 12×32 tile at the kc floor with a larger A block (2 MB L2),
        // AVX2's 6×16 with a deeper kc (48 KB L1d).
        let t = tiles_for(12, 32, SAPPHIRE_RAPIDS);
        assert_eq!((t.kc, t.mc, t.nc), (256, 252, 4096));
        let t = tiles_for(6, 16, SAPPHIRE_RAPIDS);
        assert_eq!((t.kc, t.mc, t.nc), (416, 156, 4096));
        for (mr, nr) in [(4, 16), (6, 16), (12, 32)] {
            for caches in [ZEN4, SAPPHIRE_RAPIDS, Caches { l1d: 16 << 10, l2: 256 << 10, l3: 256 << 10 }] {
                let t = tiles_for(mr, nr, caches);
                assert_eq!((t.mr, t.nr), (mr, nr));
                assert!((256..=512).contains(&t.kc) && t.kc.is_multiple_of(32), "{t:?}");
                assert!(t.mc.is_multiple_of(mr) && t.mc >= 2 * mr && t.mc <= 512, "{t:?}");
                assert!(t.nc.is_multiple_of(nr) && t.nc >= nr && t.nc <= 4096, "{t:?}");
                // Above the floor, the micro-panels fit L1d.
                if t.kc > 256 {
                    assert!((mr + nr) * t.kc * 4 <= caches.l1d * 3 / 4, "{t:?}");
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
