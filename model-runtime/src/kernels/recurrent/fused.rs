//! One sample's step of each cell with Keras' default activations (tanh, and sigmoid for the
//! gates), every gate's arithmetic and the state update in one loop over the units that the compiler
//! vectorizes (compiled for AVX2 + FMA where the CPU has them): one pass over the step's values
//! instead of one per gate, and no call per gate. [`super::Rnn`] runs these when the layer uses the
//! defaults and its general per-gate code otherwise; both compute the same formulas.
//!
//! Row layouts are those of [`super::Rnn`]'s scratch: `a` holds the G gates' blocks of `u` values
//! side by side (Keras' gate order), `x` the input projection of the step. The step's recurrent
//! product is written where its gates go and overwritten in place: backward needs only the gates
//! for these activations, so the pre-activations are not kept.

use super::exp_fast;

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp_fast(-v))
}

#[inline(always)]
fn tanh(v: f32) -> f32 {
    2.0 / (1.0 + exp_fast(-2.0 * v)) - 1.0
}

/// Defines `pub(super) fn $name(args)`, which runs `$body(args)` compiled for AVX2 + FMA when the CPU
/// has them, and portably otherwise.
macro_rules! dispatched {
    ($(#[$m:meta])* $name:ident, $avx:ident, $body:ident, ($($arg:ident : $ty:ty),* $(,)?)) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub(super) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { $avx($($arg),*) };
            }
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $avx($($arg: $ty),*) {
            $body($($arg),*)
        }
    };
}

/// LSTM forward: `a` holds h·R on entry and gets the gates i, f, c, o of h·R + x, then
/// c = f·c_prev + i·g, `ac` = tanh(c) and h = o·tanh(c).
pub(super) fn lstm_forward(u: usize, a: &mut [f32], x: &[f32], c_prev: &[f32], c: &mut [f32], ac: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { simd::lstm_forward(u, a, x, c_prev, c, ac, h) };
    }
    lstm_forward_body(0, u, a, x, c_prev, c, ac, h)
}

/// [`lstm_forward`] for units `from..u`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_forward_body(from: usize, u: usize, a: &mut [f32], x: &[f32], c_prev: &[f32], c: &mut [f32], ac: &mut [f32], h: &mut [f32]) {
    let (ai, af, ag, ao) = split4_mut(&mut a[..4 * u], u);
    let (xi, xf, xg, xo) = (&x[..u], &x[u..2 * u], &x[2 * u..3 * u], &x[3 * u..4 * u]);
    let (c_prev, c, ac, h) = (&c_prev[..u], &mut c[..u], &mut ac[..u], &mut h[..u]);
    for j in from..u {
        let (vi, vf, vg, vo) = (ai[j] + xi[j], af[j] + xf[j], ag[j] + xg[j], ao[j] + xo[j]);
        let (i, f, g, o) = (sigmoid(vi), sigmoid(vf), tanh(vg), sigmoid(vo));
        (ai[j], af[j], ag[j], ao[j]) = (i, f, g, o);
        let cj = f * c_prev[j] + i * g;
        let tc = tanh(cj);
        (c[j], ac[j], h[j]) = (cj, tc, o * tc);
    }
}

dispatched!(
    /// LSTM backward of one step: from the state's gradient `dh` and the carried cell gradient `dc`
    /// (updated to the previous step's), the gate gradients into `dg` and `dx` (the same values).
    lstm_backward, lstm_backward_avx2, lstm_backward_body,
    (u: usize, dh: &[f32], dc: &mut [f32], a: &[f32], ac: &[f32], c_prev: &[f32], dg: &mut [f32], dx: &mut [f32])
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_backward_body(u: usize, dh: &[f32], dc: &mut [f32], a: &[f32], ac: &[f32], c_prev: &[f32], dg: &mut [f32], dx: &mut [f32]) {
    let (ai, af, ag, ao) = (&a[..u], &a[u..2 * u], &a[2 * u..3 * u], &a[3 * u..4 * u]);
    let (gi, gf, gg, go) = split4_mut(&mut dg[..4 * u], u);
    let (xi, xf, xg, xo) = split4_mut(&mut dx[..4 * u], u);
    let (dh, dc, ac, c_prev) = (&dh[..u], &mut dc[..u], &ac[..u], &c_prev[..u]);
    for j in 0..u {
        let (i, f, g, o, tc) = (ai[j], af[j], ag[j], ao[j], ac[j]);
        let dct = dc[j] + dh[j] * o * (1.0 - tc * tc);
        let d_i = dct * g * (i * (1.0 - i));
        let d_f = dct * c_prev[j] * (f * (1.0 - f));
        let d_g = dct * i * (1.0 - g * g);
        let d_o = dh[j] * tc * (o * (1.0 - o));
        dc[j] = dct * f;
        (gi[j], gf[j], gg[j], go[j]) = (d_i, d_f, d_g, d_o);
        (xi[j], xf[j], xg[j], xo[j]) = (d_i, d_f, d_g, d_o);
    }
}

dispatched!(
    /// GRU (`reset_after`) forward: `a` holds h·R + b_r on entry and gets the gates z, r, h; `hr`
    /// gets the candidate's recurrent part h·R_h + b_rh, and `h` = z·h_prev + (1 − z)·h̃.
    gru_forward, gru_forward_avx2, gru_forward_body,
    (u: usize, a: &mut [f32], x: &[f32], hr: &mut [f32], h_prev: &[f32], h: &mut [f32])
);

#[inline(always)]
fn gru_forward_body(u: usize, a: &mut [f32], x: &[f32], hr: &mut [f32], h_prev: &[f32], h: &mut [f32]) {
    let (az, ar, ah) = split3_mut(&mut a[..3 * u], u);
    let (xz, xr, xh) = (&x[..u], &x[u..2 * u], &x[2 * u..3 * u]);
    let (hr, h_prev, h) = (&mut hr[..u], &h_prev[..u], &mut h[..u]);
    for j in 0..u {
        let (vz, vr, rec) = (az[j] + xz[j], ar[j] + xr[j], ah[j]);
        let (gz, gr) = (sigmoid(vz), sigmoid(vr));
        let vh = xh[j] + gr * rec;
        let gh = tanh(vh);
        hr[j] = rec;
        (az[j], ar[j], ah[j]) = (gz, gr, gh);
        h[j] = gz * h_prev[j] + (1.0 - gz) * gh;
    }
}

dispatched!(
    /// GRU backward of one step: the gate gradients of the input side into `dx` and of the
    /// recurrent side (the candidate's scaled by r) into `dg`.
    gru_backward, gru_backward_avx2, gru_backward_body,
    (u: usize, dh: &[f32], a: &[f32], hr: &[f32], h_prev: &[f32], dg: &mut [f32], dx: &mut [f32])
);

#[inline(always)]
fn gru_backward_body(u: usize, dh: &[f32], a: &[f32], hr: &[f32], h_prev: &[f32], dg: &mut [f32], dx: &mut [f32]) {
    let (az, ar, ah) = (&a[..u], &a[u..2 * u], &a[2 * u..3 * u]);
    let (gz, gr, gh) = split3_mut(&mut dg[..3 * u], u);
    let (xz, xr, xh) = split3_mut(&mut dx[..3 * u], u);
    let (dh, hr, h_prev) = (&dh[..u], &hr[..u], &h_prev[..u]);
    for j in 0..u {
        let (z, r, hh) = (az[j], ar[j], ah[j]);
        let d_z = dh[j] * (h_prev[j] - hh) * (z * (1.0 - z));
        let d_h = dh[j] * (1.0 - z) * (1.0 - hh * hh);
        let d_r = d_h * hr[j] * (r * (1.0 - r));
        (xz[j], xr[j], xh[j]) = (d_z, d_r, d_h);
        (gz[j], gr[j], gh[j]) = (d_z, d_r, d_h * r);
    }
}

dispatched!(
    /// SimpleRNN (tanh) forward: `a` (h·R on entry) and `h` get tanh(h·R + x).
    simple_forward, simple_forward_avx2, simple_forward_body,
    (u: usize, a: &mut [f32], x: &[f32], h: &mut [f32])
);

#[inline(always)]
fn simple_forward_body(u: usize, a: &mut [f32], x: &[f32], h: &mut [f32]) {
    let (x, a, h) = (&x[..u], &mut a[..u], &mut h[..u]);
    for j in 0..u {
        let t = tanh(a[j] + x[j]);
        (a[j], h[j]) = (t, t);
    }
}

dispatched!(
    /// SimpleRNN (tanh) backward: dh·(1 − a²) into `dg` and `dx`.
    simple_backward, simple_backward_avx2, simple_backward_body,
    (u: usize, dh: &[f32], a: &[f32], dg: &mut [f32], dx: &mut [f32])
);

#[inline(always)]
fn simple_backward_body(u: usize, dh: &[f32], a: &[f32], dg: &mut [f32], dx: &mut [f32]) {
    let (dh, a, dg, dx) = (&dh[..u], &a[..u], &mut dg[..u], &mut dx[..u]);
    for j in 0..u {
        let d = dh[j] * (1.0 - a[j] * a[j]);
        (dg[j], dx[j]) = (d, d);
    }
}

/// LSTM inference step: `a` holds x·W + h·R, `bias` the gates' bias (or zeros); the cell state
/// `c` and the state `h` are updated in place (the step's product has already read h), and
/// nothing is kept for backward.
pub(super) fn lstm_infer(u: usize, a: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { simd::lstm_infer(u, a, bias, c, h) };
    }
    lstm_infer_body(0, u, a, bias, c, h)
}

/// [`lstm_infer`] for units `from..u`.
#[inline(always)]
fn lstm_infer_body(from: usize, u: usize, a: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
    let (ai, af, ag, ao) = (&a[..u], &a[u..2 * u], &a[2 * u..3 * u], &a[3 * u..4 * u]);
    let (bi, bf, bg, bo) = (&bias[..u], &bias[u..2 * u], &bias[2 * u..3 * u], &bias[3 * u..4 * u]);
    let (c, h) = (&mut c[..u], &mut h[..u]);
    for j in from..u {
        let (i, f) = (sigmoid(ai[j] + bi[j]), sigmoid(af[j] + bf[j]));
        let (g, o) = (tanh(ag[j] + bg[j]), sigmoid(ao[j] + bo[j]));
        let cj = f * c[j] + i * g;
        c[j] = cj;
        h[j] = o * tanh(cj);
    }
}

dispatched!(
    /// GRU (`reset_after`) inference step: `a` holds h·R, `x` x·W, `bias` the input bias then the
    /// recurrent bias (2·3·u values, or zeros); `h` is updated in place.
    gru_infer, gru_infer_avx2, gru_infer_body,
    (u: usize, a: &[f32], x: &[f32], bias: &[f32], h: &mut [f32])
);

#[inline(always)]
fn gru_infer_body(u: usize, a: &[f32], x: &[f32], bias: &[f32], h: &mut [f32]) {
    let (az, ar, ah) = (&a[..u], &a[u..2 * u], &a[2 * u..3 * u]);
    let (xz, xr, xh) = (&x[..u], &x[u..2 * u], &x[2 * u..3 * u]);
    let (bz, br, bh) = (&bias[..u], &bias[u..2 * u], &bias[2 * u..3 * u]);
    let (rz, rr, rh) = (&bias[3 * u..4 * u], &bias[4 * u..5 * u], &bias[5 * u..6 * u]);
    let h = &mut h[..u];
    for j in 0..u {
        let gz = sigmoid(az[j] + rz[j] + xz[j] + bz[j]);
        let gr = sigmoid(ar[j] + rr[j] + xr[j] + br[j]);
        let gh = tanh(xh[j] + bh[j] + gr * (ah[j] + rh[j]));
        h[j] = gz * h[j] + (1.0 - gz) * gh;
    }
}

dispatched!(
    /// SimpleRNN (tanh) inference step: `h` = tanh(`a` + `bias`), `a` holding x·W + h·R.
    simple_infer, simple_infer_avx2, simple_infer_body,
    (u: usize, a: &[f32], bias: &[f32], h: &mut [f32])
);

#[inline(always)]
fn simple_infer_body(u: usize, a: &[f32], bias: &[f32], h: &mut [f32]) {
    let (a, bias, h) = (&a[..u], &bias[..u], &mut h[..u]);
    for j in 0..u {
        h[j] = tanh(a[j] + bias[j]);
    }
}

/// The LSTM steps by hand in AVX2 + FMA, eight units at a time (the rest through the portable loops):
/// the same polynomial for e^x as [`exp_fast`], and the reciprocals of the sigmoids and tanh as the
/// approximate reciprocal refined by one Newton step (about 2 ulp), where the compiled loops divide,
/// five divisions per unit that the divider serves one at a time.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// e^x, as [`super::exp_fast`].
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3)), _mm256_set1_ps(88.7));
        let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693_145_75), x);
        let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let bits = _mm256_slli_epi32::<23>(_mm256_castps_si256(_mm256_add_ps(n, _mm256_set1_ps(127.0 + 12_582_912.0))));
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }

    /// 1/d for d ≥ 1: the approximate reciprocal and one Newton step.
    #[inline(always)]
    unsafe fn recip(d: __m256) -> __m256 {
        let r = _mm256_rcp_ps(d);
        _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0)))
    }

    #[inline(always)]
    unsafe fn sigmoid8(v: __m256) -> __m256 {
        recip(_mm256_add_ps(_mm256_set1_ps(1.0), exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))))
    }

    #[inline(always)]
    unsafe fn tanh8(v: __m256) -> __m256 {
        let e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0), v));
        _mm256_fmsub_ps(_mm256_set1_ps(2.0), recip(_mm256_add_ps(_mm256_set1_ps(1.0), e)), _mm256_set1_ps(1.0))
    }

    /// See [`super::lstm_infer`]. Safety: AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lstm_infer(u: usize, a: &[f32], bias: &[f32], c: &mut [f32], h: &mut [f32]) {
        assert!(a.len() >= 4 * u && bias.len() >= 4 * u && c.len() >= u && h.len() >= u, "lstm_infer: rows shorter than {u} units");
        let (ap, bp, cp, hp) = (a.as_ptr(), bias.as_ptr(), c.as_mut_ptr(), h.as_mut_ptr());
        // Gate k's pre-activation at unit j (a macro, not a closure: closures need not inline here).
        macro_rules! gate {
            ($k:expr, $j:expr) => {
                _mm256_add_ps(_mm256_loadu_ps(ap.add($k * u + $j)), _mm256_loadu_ps(bp.add($k * u + $j)))
            };
        }
        let v = u / 8 * 8;
        for j in (0..v).step_by(8) {
            let (i, f) = (sigmoid8(gate!(0, j)), sigmoid8(gate!(1, j)));
            let (g, o) = (tanh8(gate!(2, j)), sigmoid8(gate!(3, j)));
            let cj = _mm256_fmadd_ps(f, _mm256_loadu_ps(cp.add(j)), _mm256_mul_ps(i, g));
            _mm256_storeu_ps(cp.add(j), cj);
            _mm256_storeu_ps(hp.add(j), _mm256_mul_ps(o, tanh8(cj)));
        }
        super::lstm_infer_body(v, u, a, bias, c, h);
    }

    /// See [`super::lstm_forward`]. Safety: AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn lstm_forward(u: usize, a: &mut [f32], x: &[f32], c_prev: &[f32], c: &mut [f32], ac: &mut [f32], h: &mut [f32]) {
        assert!(a.len() >= 4 * u && x.len() >= 4 * u, "lstm_forward: rows shorter than {u} units");
        assert!(c_prev.len() >= u && c.len() >= u && ac.len() >= u && h.len() >= u, "lstm_forward: rows shorter than {u} units");
        let (ap, xp, pp, cp, tp, hp) = (a.as_mut_ptr(), x.as_ptr(), c_prev.as_ptr(), c.as_mut_ptr(), ac.as_mut_ptr(), h.as_mut_ptr());
        let v = u / 8 * 8;
        macro_rules! gate {
            ($k:expr, $j:expr) => {
                _mm256_add_ps(_mm256_loadu_ps(ap.add($k * u + $j)), _mm256_loadu_ps(xp.add($k * u + $j)))
            };
        }
        for j in (0..v).step_by(8) {
            let (i, f, g, o) = (sigmoid8(gate!(0, j)), sigmoid8(gate!(1, j)), tanh8(gate!(2, j)), sigmoid8(gate!(3, j)));
            for (k, val) in [i, f, g, o].into_iter().enumerate() {
                _mm256_storeu_ps(ap.add(k * u + j), val);
            }
            let cj = _mm256_fmadd_ps(f, _mm256_loadu_ps(pp.add(j)), _mm256_mul_ps(i, g));
            let tc = tanh8(cj);
            _mm256_storeu_ps(cp.add(j), cj);
            _mm256_storeu_ps(tp.add(j), tc);
            _mm256_storeu_ps(hp.add(j), _mm256_mul_ps(o, tc));
        }
        super::lstm_forward_body(v, u, a, x, c_prev, c, ac, h);
    }
}

/// Four consecutive blocks of `u` values.
#[inline(always)]
fn split4_mut(v: &mut [f32], u: usize) -> (&mut [f32], &mut [f32], &mut [f32], &mut [f32]) {
    let (a, rest) = v.split_at_mut(u);
    let (b, rest) = rest.split_at_mut(u);
    let (c, d) = rest.split_at_mut(u);
    (a, b, c, &mut d[..u])
}

/// Three consecutive blocks of `u` values.
#[inline(always)]
fn split3_mut(v: &mut [f32], u: usize) -> (&mut [f32], &mut [f32], &mut [f32]) {
    let (a, rest) = v.split_at_mut(u);
    let (b, c) = rest.split_at_mut(u);
    (a, b, &mut c[..u])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pre-activations from −30 to 30 (saturated gates included) and cell states from −3 to 3.
    fn values(n: usize, seed: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * scale).collect()
    }

    /// The hand-vectorized LSTM steps (eight units at a time, then the portable loop for the rest)
    /// give the portable loops' values to a few ulp, at widths on and off the vectors.
    #[test]
    fn vectorized_lstm_steps_match_the_portable_loops() {
        for u in [8, 13, 16, 3] {
            let (a, x, c0) = (values(4 * u, 1, 30.0), values(4 * u, 2, 3.0), values(u, 3, 3.0));
            let (mut c1, mut h1, mut c2, mut h2) = (c0.clone(), vec![0.0; u], c0.clone(), vec![0.0; u]);
            lstm_infer(u, &a, &x, &mut c1, &mut h1);
            lstm_infer_body(0, u, &a, &x, &mut c2, &mut h2);
            let (mut a1, mut a2) = (a.clone(), a.clone());
            let (mut f1, mut t1, mut g1, mut f2, mut t2, mut g2) =
                (vec![0.0; u], vec![0.0; u], vec![0.0; u], vec![0.0; u], vec![0.0; u], vec![0.0; u]);
            lstm_forward(u, &mut a1, &x, &c0, &mut f1, &mut t1, &mut g1);
            lstm_forward_body(0, u, &mut a2, &x, &c0, &mut f2, &mut t2, &mut g2);
            for (name, got, want) in
                [("c", &c1, &c2), ("h", &h1, &h2), ("gates", &a1, &a2), ("c'", &f1, &f2), ("tanh c", &t1, &t2), ("h'", &g1, &g2)]
            {
                for (j, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                    assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "u {u} {name}[{j}]: {g} vs {w}");
                }
            }
        }
    }
}
