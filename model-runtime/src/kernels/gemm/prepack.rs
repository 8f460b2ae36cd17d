//! Products whose B is constant across calls (a layer's weights in the inference forward): B is
//! packed once into the column panels the kernels read, kept in a [`PackCache`] (the inference
//! workspace's), and packed again only when the weights may have changed, which the cache learns
//! from a generation number (`State::params_generation`, bumped by every mutable access to the
//! parameters). Every call copied B (784×512 floats for M4's first layer) into panels before; that
//! copy was a quarter of a 32×784×512 product's time.

use super::driver::{self, Problem, Tiles};
use super::scratch::Aligned;
use super::{bf16, blocks_on, num_threads, scratch, sgemm_blocks, simd, split_on, tuned, Epilogue, Isa, Par, NARROW_MAX_N};

/// One B packed into k×NR column panels, and what it was packed from: the slice (its address and
/// length identify the weights within one model's parameters), the generation of the parameters
/// then, and the instruction set whose panel width it has.
#[derive(Clone, Debug, Default)]
pub struct PackedB {
    key: (usize, usize),
    generation: Option<u64>,
    isa: u8,
    k: usize,
    n: usize,
    panels: Aligned,
    packs: u64,
}

impl PackedB {
    /// How many times B was packed into this entry (for tests: a second call on unchanged weights
    /// does not pack again).
    pub fn packs(&self) -> u64 {
        self.packs
    }

    /// Whether this entry holds `b` (k×n) as of `generation`, packed for `isa`.
    fn is_current(&self, b: &[f32], k: usize, n: usize, generation: u64, isa: Isa) -> bool {
        self.generation == Some(generation) && self.key == key_of(b) && (self.k, self.n) == (k, n) && self.isa == isa.code()
    }
}

/// The slice's identity: where it starts and how long it is.
fn key_of(b: &[f32]) -> (usize, usize) {
    (b.as_ptr() as usize, b.len())
}

/// The packed B of every product with a constant B in one forward pass, found by the address of B,
/// valid for one generation of the parameters: the inference workspace keeps one, so its panels
/// live as long as the model's inference buffers. Packing reuses an entry's buffer, so once every
/// entry exists (the first call) a repack after a weight change allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct PackCache {
    generation: u64,
    entries: Vec<PackedB>,
}

impl PackCache {
    /// Says which generation of the parameters the next products read (the runtime calls this
    /// before each inference forward); entries packed at another generation are packed again
    /// when next used.
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// The entries, in the order the products first used them.
    pub fn entries(&self) -> &[PackedB] {
        &self.entries
    }

    /// The entry for `b`: the one made for its slice, else one packed at another generation (whose
    /// slice may be gone: a `load` replaces the parameters' buffer), else a new one. So the entries
    /// stay as many as the products, and their buffers are reused.
    fn entry(&mut self, b: &[f32]) -> &mut PackedB {
        let key = key_of(b);
        let generation = Some(self.generation);
        let found = self.entries.iter().position(|e| e.key == key).or_else(|| self.entries.iter().position(|e| e.generation != generation));
        match found {
            Some(i) => &mut self.entries[i],
            None => {
                self.entries.push(PackedB { key, ..PackedB::default() });
                let last = self.entries.len() - 1;
                &mut self.entries[last]
            }
        }
    }
}

/// C (m×n, row-major) = epi(A·B) for A m×k and B k×n, both row-major, where B is the same values
/// from call to call while `cache`'s generation stays the same (a layer's weights in inference):
/// B is packed into `cache` on the first call and after a change of generation, and read there
/// by every other call. The results are the bits [`sgemm_blocks`] (one block) gives. Products
/// that do not pack B (one row, narrow ones) and the `mixed_bfloat16` policy take that path.
///
/// # Panics
/// When a slice is shorter than its matrix, or the bias than n.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_prepacked(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32], epi: Epilogue<'_>, cache: &mut PackCache) {
    if bf16::active().is_some() {
        return sgemm_blocks(m, n, &[a], &[k], b, c, epi);
    }
    let isa = tuned().choice.for_n(n);
    let par = Par { threads: num_threads(), min_work: driver::PAR_MIN_WORK };
    prepacked_on(isa, isa.tiles(), par, m, k, n, a, b, c, epi, cache);
}

/// [`sgemm_prepacked`] on a given instruction set with given tiles (those of `isa`, blocks as the
/// tests like), split at most as `par` allows; returns whether it was split.
#[allow(clippy::too_many_arguments)]
fn prepacked_on(
    isa: Isa,
    tiles: Tiles,
    par: Par,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    epi: Epilogue<'_>,
    cache: &mut PackCache,
) -> bool {
    let narrow = n <= NARROW_MAX_N && k.saturating_mul(n) <= 4096;
    if m < tiles.mr || k == 0 || n == 0 || narrow {
        blocks_on(isa, par, m, n, &[a], &[k], b, c, epi);
        return false;
    }
    assert!(a.len() >= m * k, "sgemm_prepacked: a has {} elements, needs {}", a.len(), m * k);
    assert!(b.len() >= k * n, "sgemm_prepacked: b has {} elements, needs {}", b.len(), k * n);
    assert!(c.len() >= m * n, "sgemm_prepacked: c has {} elements, needs {}", c.len(), m * n);
    let bias = epi.bias.map(|v| {
        assert!(v.len() >= n, "sgemm_prepacked: bias has {} elements, needs {}", v.len(), n);
        v.as_ptr()
    });
    let b = &b[..k * n];
    let generation = cache.generation;
    let entry = cache.entry(b);
    if !entry.is_current(b, k, n, generation, isa) {
        pack(isa, tiles, b, k, n, entry);
        entry.generation = Some(generation);
    }
    let p = Problem {
        m,
        k,
        n,
        alpha: 1.0,
        beta: 0.0,
        a: a.as_ptr(),
        rsa: k,
        csa: 1,
        b: entry.panels.as_ptr(),
        // The panel of column j (a multiple of NR) starts at j·k: `driver::part` cuts bands of
        // columns of a pre-packed B with this stride.
        rsb: tiles.nr,
        csb: k,
        c: c.as_mut_ptr(),
        ldc: n,
        bias: bias.unwrap_or(std::ptr::null()),
        relu: epi.relu,
    };
    let (split, parts) = driver::split_plan(&p, tiles, par.threads, par.min_work);
    let path = driver::plan(&p, tiles).0;
    // SAFETY: the asserts bound A, C and the bias; the panels were packed for `isa`'s NR from
    // k×n values of B; `c` is uniquely borrowed and the parts' bands of C are disjoint; `isa` is
    // supported (`tuned()`); `split_on` gives every run at least `plan_prepacked` of its problem.
    unsafe {
        if parts > 1 {
            let need = |q: &Problem| driver::plan_prepacked(q, path, tiles);
            split_on(&p, tiles, par.threads, split, parts, need, |q, len| run_one(isa, tiles, q, path, len))
        } else {
            run_one(isa, tiles, &p, path, driver::plan_prepacked(&p, path, tiles));
            false
        }
    }
}

/// Packs B (k×n, row-major) into `entry`'s panels for `isa`, growing its buffer only when it is
/// too small.
fn pack(isa: Isa, tiles: Tiles, b: &[f32], k: usize, n: usize, entry: &mut PackedB) {
    let len = n.div_ceil(tiles.nr) * tiles.nr * k;
    let p = Problem {
        m: 0,
        k,
        n,
        alpha: 1.0,
        beta: 0.0,
        a: std::ptr::null(),
        rsa: 0,
        csa: 0,
        b: b.as_ptr(),
        rsb: n,
        csb: 1,
        c: std::ptr::null_mut(),
        ldc: 0,
        bias: std::ptr::null(),
        relu: false,
    };
    let buf = entry.panels.grown(len);
    // SAFETY: `b` holds k×n values (the caller sliced it so); `buf` the panels' `len`; `isa` is
    // supported.
    unsafe {
        match isa {
            Isa::Portable => driver::pack_all_b::<simd::Portable, 2>(&p, buf),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => pack_avx2(&p, buf),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => pack_avx512(&p, buf),
        }
    }
    (entry.key, entry.k, entry.n, entry.isa) = (key_of(b), k, n, isa.code());
    entry.packs += 1;
}

/// Runs the pre-packed product `p` on `path` (the whole product's, when `p` is a part of it) with
/// `len` floats of this thread's scratch.
///
/// # Safety
/// As [`driver::run_prepacked`]; the CPU must support `isa`, whose tiles `tiles` are, and `len`
/// must be at least [`driver::plan_prepacked`] of `p` on `path`.
unsafe fn run_one(isa: Isa, tiles: Tiles, p: &Problem, path: driver::Path, len: usize) {
    // SAFETY: forwarded; `buf` has at least the length `plan_prepacked` asks for.
    scratch::with(len, |buf| unsafe {
        match isa {
            Isa::Portable => driver::run_prepacked::<simd::Portable, 4, 2>(p, path, tiles, buf),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => run_avx2(p, path, tiles, buf),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => run_avx512(p, path, tiles, buf),
        }
    });
}

/// [`driver::pack_all_b`] for AVX2. Safety: as that function, on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_avx2(p: &Problem, buf: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::pack_all_b::<simd::Avx2, 2>(p, buf) }
}

/// [`driver::pack_all_b`] for AVX-512. Safety: as that function, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_avx512(p: &Problem, buf: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::pack_all_b::<simd::Avx512, 2>(p, buf) }
}

/// [`driver::run_prepacked`] for AVX2. Safety: as that function, on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(p: &Problem, path: driver::Path, t: Tiles, buf: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::run_prepacked::<simd::Avx2, 6, 2>(p, path, t, buf) }
}

/// [`driver::run_prepacked`] for AVX-512. Safety: as that function, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(p: &Problem, path: driver::Path, t: Tiles, buf: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::run_prepacked::<simd::Avx512, { super::AVX512_MR }, 2>(p, path, t, buf) }
}

#[cfg(test)]
mod tests {
    use super::super::sgemm_tiled;
    use super::*;
    use crate::init::Rng;

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    /// Shapes of the direct path (≤ 32 rows: 6-row tiles then 4-row ones on AVX2 for 32 and 28, a
    /// last 6-row tile with repeated rows for 31; n ≤ one vector), of the
    /// packed one (several k-, m- and n-blocks with the tiny tiles), ragged in every dimension, and
    /// the ones that fall back to the plain GEMM (fewer rows than a tile, narrow).
    const SHAPES: [(usize, usize, usize); 12] = [
        (32, 784, 130),
        (28, 40, 33),
        (31, 40, 33),
        (7, 50, 8),
        (30, 600, 8),
        (30, 33, 47),
        (12, 64, 16),
        (97, 300, 130),
        (200, 513, 77),
        (300, 70, 210),
        (1, 784, 512),
        (40, 64, 10),
    ];

    #[test]
    fn prepacked_products_are_the_bits_of_the_plain_gemm_on_every_isa_and_blocking() {
        let mut rng = Rng::new(29);
        for isa in Isa::available() {
            let (mr, nr) = isa.micro();
            for tiles in [Tiles { mr, nr, kc: 16, mc: 2 * mr, nc: nr }, Tiles { mr, nr, kc: 33, mc: 3 * mr, nc: 2 * nr }, isa.tiles()] {
                for &(m, k, n) in &SHAPES {
                    let (a, b, bias) = (random(&mut rng, m * k), random(&mut rng, k * n), random(&mut rng, n));
                    for epi in [Epilogue::NONE, Epilogue { bias: Some(&bias), relu: true }] {
                        let mut want = vec![f32::NAN; m * n + 1];
                        want[m * n] = -7.0;
                        let mut got = want.clone();
                        let packing = m >= mr && !(n <= NARROW_MAX_N && k * n <= 4096);
                        if packing {
                            sgemm_tiled(isa, tiles, Par::SERIAL, m, k, n, 1.0, &a, false, &b, false, 0.0, &mut want, epi);
                        } else {
                            blocks_on(isa, Par::SERIAL, m, n, &[&a], &[k], &b, &mut want, epi);
                        }
                        let mut cache = PackCache::default();
                        // Twice: packing, then reading the packed panels.
                        for round in 0..2 {
                            got[..m * n].fill(f32::NAN);
                            prepacked_on(isa, tiles, Par::SERIAL, m, k, n, &a, &b, &mut got, epi, &mut cache);
                            let same = got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits());
                            assert!(same, "{isa:?} {tiles:?} {m}×{k}×{n} round {round}: not the plain GEMM's bits");
                        }
                        let packs: u64 = cache.entries().iter().map(PackedB::packs).sum();
                        assert_eq!(packs, u64::from(packing), "{isa:?} {m}×{k}×{n}: packed {packs} times");
                    }
                }
            }
        }
    }

    #[test]
    fn b_is_packed_again_only_after_the_generation_changes_and_then_read_as_it_is() {
        let mut rng = Rng::new(31);
        let (m, k, n) = (32, 100, 40);
        let (a, mut b) = (random(&mut rng, m * k), random(&mut rng, k * n));
        let isa = tuned().choice.for_n(n);
        let tiles = isa.tiles();
        let mut cache = PackCache::default();
        let run = |b: &[f32], cache: &mut PackCache| {
            let mut c = vec![0.0; m * n];
            prepacked_on(isa, tiles, Par::SERIAL, m, k, n, &a, b, &mut c, Epilogue::NONE, cache);
            c
        };
        let plain = |b: &[f32]| {
            let mut c = vec![0.0; m * n];
            sgemm_tiled(isa, tiles, Par::SERIAL, m, k, n, 1.0, &a, false, b, false, 0.0, &mut c, Epilogue::NONE);
            c
        };
        cache.set_generation(4);
        let first = run(&b, &mut cache);
        assert_eq!(first, plain(&b));
        assert_eq!(run(&b, &mut cache), first);
        assert_eq!(cache.entries()[0].packs(), 1, "the second call packed B again");
        // The weights change in place (same slice) and the generation moves: the new values are read.
        b.iter_mut().for_each(|v| *v *= -2.0);
        cache.set_generation(5);
        let after = run(&b, &mut cache);
        assert_eq!(after, plain(&b));
        assert_ne!(after, first);
        assert_eq!(cache.entries()[0].packs(), 2);
        assert_eq!(cache.entries().len(), 1);
        // Another B (another slice) gets its own entry.
        let b2 = random(&mut rng, k * n);
        assert_eq!(run(&b2, &mut cache), plain(&b2));
        assert_eq!(cache.entries().len(), 2);
    }

    #[test]
    fn prepacked_products_split_across_threads_equal_the_plain_gemm() {
        let mut rng = Rng::new(37);
        // Splits of rows (m > n) and of columns (n ≥ m), on the direct and on the packed path, with a
        // minimum per part small enough that every product here is cut into several.
        for &(m, k, n) in &[(32, 200, 96), (200, 300, 48), (96, 130, 160)] {
            let (a, b, bias) = (random(&mut rng, m * k), random(&mut rng, k * n), random(&mut rng, n));
            let epi = Epilogue { bias: Some(&bias), relu: true };
            let isa = tuned().choice.for_n(n);
            let par = Par { threads: 2, min_work: 4096 };
            let mut want = vec![0.0; m * n];
            sgemm_tiled(isa, isa.tiles(), Par::SERIAL, m, k, n, 1.0, &a, false, &b, false, 0.0, &mut want, epi);
            let mut cache = PackCache::default();
            for round in 0..3 {
                let mut got = vec![f32::NAN; m * n];
                prepacked_on(isa, isa.tiles(), par, m, k, n, &a, &b, &mut got, epi, &mut cache);
                // Against the plain GEMM (whose B is read in place): equal up to f32 rounding.
                let close = got.iter().zip(&want).all(|(x, y)| (x - y).abs() <= 1e-5 * k as f32 * (1.0 + y.abs()));
                assert!(close, "{m}×{k}×{n} round {round}");
            }
            assert_eq!(cache.entries()[0].packs(), 1);
        }
    }

    #[test]
    fn a_repack_after_a_weight_change_reuses_the_aligned_panels_buffer() {
        let (m, k, n) = (32, 64, 48);
        let (a, b) = (vec![0.5; m * k], vec![0.25; k * n]);
        let isa = tuned().choice.for_n(n);
        let mut cache = PackCache::default();
        let mut c = vec![0.0; m * n];
        prepacked_on(isa, isa.tiles(), Par::SERIAL, m, k, n, &a, &b, &mut c, Epilogue::NONE, &mut cache);
        let before = cache.entries()[0].panels.as_ptr();
        // On a cache line, so that no panel load straddles two (every one would, for AVX-512's
        // 64-byte loads, in a buffer the allocator aligned to 16 bytes).
        assert_eq!(before as usize % 64, 0, "the panels do not start on a cache line");
        cache.set_generation(1);
        prepacked_on(isa, isa.tiles(), Par::SERIAL, m, k, n, &a, &b, &mut c, Epilogue::NONE, &mut cache);
        assert_eq!(cache.entries()[0].packs(), 2);
        assert_eq!(cache.entries()[0].panels.as_ptr(), before, "the repack allocated new panels");
    }

    #[test]
    fn a_split_prepacked_product_gives_the_bits_of_the_unsplit_one() {
        // Whether a product is split is timed (`pool`): its parts must sum as the whole does, also
        // where a band alone would take another path (a column band of 64×600×128 the direct path,
        // k in one pass, against the whole's packed path, k in blocks of kc).
        let mut rng = Rng::new(43);
        let mut split = 0;
        for &(m, k, n) in &[(64, 600, 128), (60, 3000, 50), (130, 300, 45), (32, 784, 512)] {
            let (a, b, bias) = (random(&mut rng, m * k), random(&mut rng, k * n), random(&mut rng, n));
            let epi = Epilogue { bias: Some(&bias), relu: false };
            for isa in Isa::available() {
                let mut whole = vec![0.0; m * n];
                prepacked_on(isa, isa.tiles(), Par::SERIAL, m, k, n, &a, &b, &mut whole, epi, &mut PackCache::default());
                for threads in [2, 3, 4] {
                    let mut cache = PackCache::default();
                    // The pool runs a product unsplit now and then: try until it splits.
                    for _ in 0..40 {
                        let mut c = vec![f32::NAN; m * n];
                        if prepacked_on(isa, isa.tiles(), Par { threads, min_work: 1 }, m, k, n, &a, &b, &mut c, epi, &mut cache) {
                            let differ = c.iter().zip(&whole).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
                            assert_eq!(differ, 0, "{isa:?} {m}×{k}×{n} in {threads} parts");
                            split += 1;
                            break;
                        }
                    }
                }
            }
        }
        assert!(split > 0, "no product was split");
    }
}
