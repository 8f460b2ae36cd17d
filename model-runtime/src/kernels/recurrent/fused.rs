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

dispatched!(
    /// LSTM forward: `a` holds h·R on entry and gets the gates i, f, c, o of h·R + x, then
    /// c = f·c_prev + i·g, `ac` = tanh(c) and h = o·tanh(c).
    lstm_forward, lstm_forward_avx2, lstm_forward_body,
    (u: usize, a: &mut [f32], x: &[f32], c_prev: &[f32], c: &mut [f32], ac: &mut [f32], h: &mut [f32])
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn lstm_forward_body(u: usize, a: &mut [f32], x: &[f32], c_prev: &[f32], c: &mut [f32], ac: &mut [f32], h: &mut [f32]) {
    let (ai, af, ag, ao) = split4_mut(&mut a[..4 * u], u);
    let (xi, xf, xg, xo) = (&x[..u], &x[u..2 * u], &x[2 * u..3 * u], &x[3 * u..4 * u]);
    let (c_prev, c, ac, h) = (&c_prev[..u], &mut c[..u], &mut ac[..u], &mut h[..u]);
    for j in 0..u {
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
