//! Deterministic parameter initialization: a seeded PRNG, Keras' default initializers, and a
//! stateless hash for dropout masks. `(seed, parameter specs) -> flat parameter values`.

use crate::spec::{Distribution, FanMode, Init, ParamSpec};

/// Golden-ratio increment of SplitMix64.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps the top 24 bits of a 64-bit value to an `f32` in [0, 1) (every value exactly representable).
fn unit_f32(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// A small, fast, deterministic PRNG: xoshiro256** seeded through SplitMix64.
///
/// The same seed gives the same sequence on every platform and every release.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole state is derived from `seed` (any value, including 0, is fine).
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(GOLDEN_GAMMA);
            mix64(sm)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Shuffles `items` in place (Fisher-Yates, unbiased: indices drawn by multiply-shift).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = ((u128::from(self.next_u64()) * (i as u128 + 1)) >> 64) as usize;
            items.swap(i, j);
        }
    }

    /// A uniform `f32` in [0, 1), with 24 bits of randomness.
    pub fn next_f32(&mut self) -> f32 {
        unit_f32(self.next_u64())
    }

    /// A uniform `f32` in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// A standard normal sample (mean 0, variance 1), by the Box–Muller transform.
    pub fn normal(&mut self) -> f32 {
        // u1 in (0, 1] so the logarithm is finite.
        let u1 = 1.0 - (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let u2 = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

/// Fills `out` with values drawn by `init` from `rng`, with Keras' distributions and fan rules
/// (the same distributions as Keras, not the same random numbers).
///
/// `GlorotUniform` draws from U(-l, l) with l = sqrt(6 / (fan_in + fan_out)) (Keras' default
/// kernel initializer); `Uniform { limit }` from U(-limit, limit); `Zeros`, `Ones` and `Constant` are
/// constant; the others are documented on [`Init`].
pub fn fill(init: Init, rng: &mut Rng, out: &mut [f32]) {
    match init {
        Init::GlorotUniform { fan_in, fan_out } => {
            let fans = (fan_in + fan_out).max(1) as f32;
            let limit = (6.0 / fans).sqrt();
            out.iter_mut().for_each(|v| *v = rng.uniform(-limit, limit));
        }
        Init::Uniform { limit } => out.iter_mut().for_each(|v| *v = rng.uniform(-limit, limit)),
        Init::Zeros => out.fill(0.0),
        Init::Ones => out.fill(1.0),
        Init::Constant { value } => out.fill(value),
        Init::RandomNormal { mean, stddev, .. } => out.iter_mut().for_each(|v| *v = mean + stddev * rng.normal()),
        Init::RandomUniform { minval, maxval, .. } => out.iter_mut().for_each(|v| *v = rng.uniform(minval, maxval)),
        Init::TruncatedNormal { mean, stddev, .. } => out.iter_mut().for_each(|v| *v = mean + stddev * truncated_normal(rng)),
        Init::VarianceScaling { scale, mode, distribution, fan_in, fan_out, .. } => {
            variance_scaling(scale, mode, distribution, (fan_in, fan_out), rng, out)
        }
        Init::Orthogonal { gain, rows, cols, .. } => orthogonal(gain, rows, cols, rng, out),
        Init::Identity { gain, rows, cols } => {
            out.fill(0.0);
            for i in 0..rows.min(cols) {
                if let Some(v) = out.get_mut(i * cols + i) {
                    *v = gain;
                }
            }
        }
        Init::ForgetBias { units } => {
            out.fill(0.0);
            out.iter_mut().skip(units).take(units).for_each(|v| *v = 1.0);
        }
    }
}

/// A standard normal sample redrawn until it lies within two standard deviations (Keras' and JAX's
/// `truncated_normal`).
fn truncated_normal(rng: &mut Rng) -> f32 {
    loop {
        let x = rng.normal();
        if x.abs() <= 2.0 {
            return x;
        }
    }
}

/// The standard deviation of the unit normal truncated to [-2, 2] (Keras' correction constant).
const TRUNCATED_STDDEV: f32 = 0.879_625_7;

/// Keras' `VarianceScaling`: scale / max(1, n), n the fan `mode` names, then a truncated normal of
/// standard deviation sqrt(s) / 0.8796, a normal of standard deviation sqrt(s), or U(-l, l) with
/// l = sqrt(3 s).
fn variance_scaling(
    scale: f32,
    mode: FanMode,
    distribution: Distribution,
    (fan_in, fan_out): (usize, usize),
    rng: &mut Rng,
    out: &mut [f32],
) {
    let n = match mode {
        FanMode::FanIn => fan_in as f32,
        FanMode::FanOut => fan_out as f32,
        FanMode::FanAvg => (fan_in + fan_out) as f32 / 2.0,
    };
    let s = scale / n.max(1.0);
    match distribution {
        Distribution::TruncatedNormal => {
            let stddev = s.sqrt() / TRUNCATED_STDDEV;
            out.iter_mut().for_each(|v| *v = stddev * truncated_normal(rng));
        }
        Distribution::UntruncatedNormal => {
            let stddev = s.sqrt();
            out.iter_mut().for_each(|v| *v = stddev * rng.normal());
        }
        Distribution::Uniform => {
            let limit = (3.0 * s).sqrt();
            out.iter_mut().for_each(|v| *v = rng.uniform(-limit, limit));
        }
    }
}

/// Keras' `Orthogonal`: the Q factor (signs fixed so that R has a positive diagonal) of a normal
/// matrix of `max(rows, cols) × min(rows, cols)`, transposed when `rows < cols`, times `gain`.
/// Modified Gram–Schmidt in `f64` gives exactly that factor.
fn orthogonal(gain: f32, rows: usize, cols: usize, rng: &mut Rng, out: &mut [f32]) {
    let (tall, narrow) = (rows.max(cols), rows.min(cols));
    // Column-major: column j is a[j * tall..(j + 1) * tall].
    let mut a: Vec<f64> = (0..tall * narrow).map(|_| f64::from(rng.normal())).collect();
    for j in 0..narrow {
        let (done, rest) = a.split_at_mut(j * tall);
        let col = &mut rest[..tall];
        for k in 0..j {
            let q = &done[k * tall..(k + 1) * tall];
            let dot: f64 = q.iter().zip(col.iter()).map(|(x, y)| x * y).sum();
            col.iter_mut().zip(q).for_each(|(c, x)| *c -= dot * x);
        }
        let norm = col.iter().map(|x| x * x).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
        col.iter_mut().for_each(|c| *c /= norm);
    }
    for r in 0..rows {
        for c in 0..cols {
            // Q is tall × narrow; the result is Q (rows ≥ cols) or Qᵀ (rows < cols).
            let (i, j) = if rows >= cols { (r, c) } else { (c, r) };
            if let (Some(v), Some(q)) = (out.get_mut(r * cols + c), a.get(j * tall + i)) {
                *v = gain * *q as f32;
            }
        }
    }
}

/// The seed of parameter number `index` of a model seeded with `seed`.
fn param_seed(seed: u64, index: usize) -> u64 {
    mix64(seed ^ mix64((index as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// Initializes every parameter of `specs` in the flat buffer `params` (at each spec's offset).
///
/// Parameter `i` draws from its own stream derived from `(seed, i)`, so appending a layer leaves
/// the values of all earlier parameters unchanged; a parameter whose initializer has its own seed
/// draws from a stream derived from that seed alone.
///
/// # Panics
/// When a spec's range lies outside `params`.
pub fn init_params(specs: &[ParamSpec], seed: u64, params: &mut [f32]) {
    for (i, spec) in specs.iter().enumerate() {
        // An initializer with its own seed draws the same values whatever the model's seed (Keras).
        let stream = spec.init.seed().map_or_else(|| param_seed(seed, i), |s| mix64(s ^ 0x5EED_1A17_0000_0000));
        let mut rng = Rng::new(stream);
        fill(spec.init, &mut rng, &mut params[spec.range()]);
    }
}

/// A stateless uniform `f32` in [0, 1) for position `counter` of stream `seed` (dropout masks):
/// the same `(seed, counter)` always gives the same value, with no state to carry.
pub fn hash_uniform(seed: u64, counter: u64) -> f32 {
    let base = mix64(seed ^ 0x6A09_E667_F3BC_C909);
    unit_f32(mix64(base.wrapping_add(counter.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA))))
}

/// Helpers shared by the kernel tests: random inputs and central finite-difference gradient checks.
#[cfg(test)]
pub(crate) mod testing {
    use super::Rng;

    /// `len` values uniform in [lo, hi).
    pub(crate) fn random_vec(rng: &mut Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| rng.uniform(lo, hi)).collect()
    }

    /// Σ r ⊙ y in f64: a smooth random loss whose gradient with respect to y is r.
    pub(crate) fn weighted_sum(r: &[f32], y: &[f32]) -> f64 {
        r.iter().zip(y).map(|(&r, &y)| r as f64 * y as f64).sum()
    }

    /// Checks `analytic` against the central finite differences of `loss` at `x` (eps 1e-3),
    /// with relative tolerance `rtol` above an absolute floor of 1e-3. `what` names the check.
    pub(crate) fn check_grad(what: &str, x: &[f32], analytic: &[f32], rtol: f64, mut loss: impl FnMut(&[f32]) -> f64) {
        const EPS: f32 = 1e-3;
        assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
        let mut xp = x.to_vec();
        for j in 0..x.len() {
            xp[j] = x[j] + EPS;
            let lp = loss(&xp);
            xp[j] = x[j] - EPS;
            let lm = loss(&xp);
            xp[j] = x[j];
            // The true step is the f32 difference actually taken.
            let step = ((x[j] + EPS) as f64) - ((x[j] - EPS) as f64);
            let numeric = (lp - lm) / step;
            let a = analytic[j] as f64;
            let tol = rtol * numeric.abs().max(a.abs()) + 1e-3;
            assert!((numeric - a).abs() <= tol, "{what}: d/dx[{j}] analytic {a} vs numeric {numeric}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_sequence_and_different_seeds_differ() {
        let (mut a, mut b, mut c) = (Rng::new(42), Rng::new(42), Rng::new(43));
        let va: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..16).map(|_| c.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
    }

    #[test]
    fn next_f32_and_uniform_stay_in_range() {
        let mut rng = Rng::new(0);
        for _ in 0..10_000 {
            let u = rng.next_f32();
            assert!((0.0..1.0).contains(&u));
            let v = rng.uniform(-2.0, 3.0);
            assert!((-2.0..3.0).contains(&v));
        }
    }

    fn mean_var(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var)
    }

    #[test]
    fn normal_has_mean_zero_and_variance_one() {
        let mut rng = Rng::new(5);
        let v: Vec<f32> = (0..100_000).map(|_| rng.normal()).collect();
        let (mean, var) = mean_var(&v);
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn glorot_uniform_stays_within_limit_with_uniform_moments() {
        let (fan_in, fan_out) = (100, 200);
        let limit = (6.0f32 / 300.0).sqrt();
        let mut out = vec![0.0; fan_in * fan_out];
        fill(Init::GlorotUniform { fan_in, fan_out }, &mut Rng::new(1), &mut out);
        assert!(out.iter().all(|v| v.abs() <= limit));
        let (mean, var) = mean_var(&out);
        let want_var = (limit * limit / 3.0) as f64;
        assert!(mean.abs() < 0.01 * limit as f64, "mean {mean}");
        assert!((var / want_var - 1.0).abs() < 0.03, "var {var} vs {want_var}");
    }

    #[test]
    fn uniform_zeros_and_ones_fill_as_specified() {
        let mut rng = Rng::new(9);
        let mut out = vec![7.0; 1000];
        fill(Init::Uniform { limit: 0.05 }, &mut rng, &mut out);
        assert!(out.iter().all(|v| v.abs() <= 0.05));
        assert!(out.iter().any(|&v| v != out[0]));
        fill(Init::Zeros, &mut rng, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        fill(Init::Ones, &mut rng, &mut out);
        assert!(out.iter().all(|&v| v == 1.0));
    }

    fn spec(name: &'static str, shape: &'static [usize], offset: usize, init: Init) -> ParamSpec {
        ParamSpec { name, shape, offset, init, trainable: true, statistic: false }
    }

    #[test]
    fn init_params_is_deterministic_and_appending_a_layer_keeps_earlier_values() {
        let glorot = Init::GlorotUniform { fan_in: 4, fan_out: 3 };
        let two = [spec("dense/kernel", &[4, 3], 0, glorot), spec("dense/bias", &[3], 12, Init::Zeros)];
        let three = [two[0], two[1], spec("dense_1/kernel", &[3, 3], 15, glorot)];
        let mut a = vec![f32::NAN; 15];
        let mut b = vec![f32::NAN; 15];
        let mut c = vec![f32::NAN; 24];
        init_params(&two, 42, &mut a);
        init_params(&two, 42, &mut b);
        init_params(&three, 42, &mut c);
        assert_eq!(a, b);
        assert_eq!(a[..], c[..15]);
        assert!(a[12..].iter().all(|&v| v == 0.0));
        // The two kernels draw from different streams.
        assert_ne!(c[..9], c[15..]);
        let mut d = vec![0.0; 15];
        init_params(&two, 43, &mut d);
        assert_ne!(a[..12], d[..12]);
    }

    #[test]
    fn hash_uniform_is_stateless_in_range_and_roughly_uniform() {
        assert_eq!(hash_uniform(1, 2), hash_uniform(1, 2));
        assert_ne!(hash_uniform(1, 2), hash_uniform(2, 2));
        assert_ne!(hash_uniform(1, 2), hash_uniform(1, 3));
        let v: Vec<f32> = (0..100_000).map(|i| hash_uniform(7, i)).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let (mean, var) = mean_var(&v);
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.003, "var {var}");
        let kept = v.iter().filter(|&&x| x < 0.3).count() as f64 / v.len() as f64;
        assert!((kept - 0.3).abs() < 0.01, "fraction below 0.3: {kept}");
    }

    #[test]
    fn orthogonal_init_gives_orthonormal_columns_or_rows() {
        for (rows, cols) in [(6, 6), (8, 3), (4, 12)] {
            let mut out = vec![0.0f32; rows * cols];
            fill(Init::Orthogonal { gain: 1.0, rows, cols, seed: None }, &mut Rng::new(3), &mut out);
            let (count, len) = if rows >= cols { (cols, rows) } else { (rows, cols) };
            let at = |v: usize, i: usize| if rows >= cols { out[i * cols + v] } else { out[v * cols + i] };
            for a in 0..count {
                for b in 0..count {
                    let dot: f32 = (0..len).map(|i| at(a, i) * at(b, i)).sum();
                    let want = if a == b { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-4, "{rows}x{cols}: <{a},{b}> = {dot}");
                }
            }
        }
    }

    #[test]
    fn forget_bias_sets_the_second_block_only() {
        let mut out = vec![7.0f32; 12];
        fill(Init::ForgetBias { units: 3 }, &mut Rng::new(1), &mut out);
        assert_eq!(out, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
