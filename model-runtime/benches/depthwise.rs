//! The direct depthwise kernel (`kernels::depthwise`, inner loop along a pixel's channels) against two
//! alternatives, forward and backward, on the shapes of M7's four DepthwiseConv2D layers (3×3 'same',
//! depth multiplier 1: 32×32×3 stride 1, 32×32×16 stride 2, 16×16×32 stride 1, 16×16×32 stride 2) at
//! batch 1 and 32 (issue #19 item 4: "depthwise convolutions must not go through a GEMM of one input
//! channel at a time if a direct kernel is faster: measure it"):
//!
//! - `grouped`: the same convolution as a grouped convolution with one group per channel
//!   (`kernels::grouped_conv`, inner loop over one channel's `depth_multiplier` outputs);
//! - `per-channel-gemm`: one input channel at a time over the whole batch, its plane gathered out of the
//!   channels-last input, im2col'd into a `[batch·oh·ow, 9]` matrix and multiplied by the channel's
//!   `[9, dm]` kernel through the runtime's GEMM (`gemm::sgemm`), the result scattered back; backward
//!   im2col's the channel again and takes `dk_c = col_cᵀ · dy_c` and `dcol_c = dy_c · k_cᵀ`, then col2im.
//!
//! Before timing, each shape checks that `per-channel-gemm` and `grouped` compute the direct kernel's
//! output and gradients.
//!
//! `cargo bench -p model-runtime --bench depthwise -- --warm-up-time 1 --measurement-time 2`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use model_runtime::kernels::activation::Activation;
use model_runtime::kernels::conv::{col2im_accumulate, im2col, Window2d};
use model_runtime::kernels::gemm::sgemm;
use model_runtime::kernels::{depthwise, grouped_conv};
use std::hint::black_box;

/// (h, w, c, depth_multiplier, stride): M7's depthwise layers.
const SHAPES: [(usize, usize, usize, usize, usize); 4] = [(32, 32, 3, 1, 1), (32, 32, 16, 1, 2), (16, 16, 32, 1, 1), (16, 16, 32, 1, 2)];

/// Preallocated buffers of the per-channel GEMM path: one channel's planes, im2col matrix, kernel and
/// outputs.
struct PerChannel {
    /// The geometry of one channel (c = 1).
    g1: Window2d,
    dm: usize,
    batch: usize,
    plane: Vec<f32>,
    col: Vec<f32>,
    kc: Vec<f32>,
    out: Vec<f32>,
}

impl PerChannel {
    fn new(g: &Window2d, dm: usize, batch: usize) -> Self {
        let g1 = Window2d { c: 1, ..*g };
        let rows = batch * g.positions();
        PerChannel {
            g1,
            dm,
            batch,
            plane: vec![0.0; batch * g.h * g.w],
            col: vec![0.0; rows * g.kh * g.kw],
            kc: vec![0.0; g.kh * g.kw * dm],
            out: vec![0.0; rows * dm],
        }
    }

    /// Channel `ch` of the channels-last `x` (c channels) into `plane`.
    fn gather_plane(&mut self, x: &[f32], c: usize, ch: usize) {
        self.plane.iter_mut().zip(x.iter().skip(ch).step_by(c)).for_each(|(p, &v)| *p = v);
    }

    /// Channel `ch`'s `[taps, dm]` kernel out of the `[taps, c·dm]` one.
    fn gather_kernel(&mut self, w: &[f32], cout: usize, ch: usize) {
        let dm = self.dm;
        for (kt, wt) in self.kc.chunks_exact_mut(dm).zip(w.chunks_exact(cout)) {
            kt.copy_from_slice(&wt[ch * dm..(ch + 1) * dm]);
        }
    }

    fn forward(&mut self, x: &[f32], w: &[f32], c: usize, y: &mut [f32]) {
        let (taps, dm, rows) = (self.g1.kh * self.g1.kw, self.dm, self.batch * self.g1.positions());
        let cout = c * dm;
        for ch in 0..c {
            self.gather_plane(x, c, ch);
            im2col(&self.g1, &self.plane, &mut self.col, self.batch);
            self.gather_kernel(w, cout, ch);
            sgemm(rows, taps, dm, 1.0, &self.col, false, &self.kc, false, 0.0, &mut self.out);
            for (yr, o) in y.chunks_exact_mut(cout).zip(self.out.chunks_exact(dm)) {
                yr[ch * dm..(ch + 1) * dm].copy_from_slice(o);
            }
        }
    }

    /// dw += and dx += as the direct kernel's backward (linear activation, no bias).
    fn backward(&mut self, x: &[f32], w: &[f32], c: usize, dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
        let (taps, dm, rows) = (self.g1.kh * self.g1.kw, self.dm, self.batch * self.g1.positions());
        let cout = c * dm;
        for ch in 0..c {
            // dy of channel ch: [rows, dm] into `out`.
            for (o, dr) in self.out.chunks_exact_mut(dm).zip(dy.chunks_exact(cout)) {
                o.copy_from_slice(&dr[ch * dm..(ch + 1) * dm]);
            }
            self.gather_plane(x, c, ch);
            im2col(&self.g1, &self.plane, &mut self.col, self.batch);
            // dk_c = col_cᵀ · dy_c, [taps, dm], added into dw's columns of channel ch.
            sgemm(taps, rows, dm, 1.0, &self.col, true, &self.out, false, 0.0, &mut self.kc);
            for (wt, kt) in dw.chunks_exact_mut(cout).zip(self.kc.chunks_exact(dm)) {
                wt[ch * dm..(ch + 1) * dm].iter_mut().zip(kt).for_each(|(a, &b)| *a += b);
            }
            // dcol_c = dy_c · k_cᵀ, [rows, taps], then col2im onto the channel's plane.
            self.gather_kernel(w, cout, ch);
            sgemm(rows, dm, taps, 1.0, &self.out, false, &self.kc, true, 0.0, &mut self.col);
            self.plane.fill(0.0);
            col2im_accumulate(&self.g1, &self.col, &mut self.plane, self.batch);
            dx.iter_mut().skip(ch).step_by(c).zip(&self.plane).for_each(|(d, &p)| *d += p);
        }
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}[{i}]: {g} vs direct {w}");
    }
}

fn bench(c: &mut Criterion) {
    for batch in [1usize, 32] {
        for (h, w, ch, dm, s) in SHAPES {
            let g = Window2d::new(h, w, ch, [3, 3], [s, s], [1, 1], true);
            let cout = ch * dm;
            let x: Vec<f32> = (0..batch * g.in_len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
            let k: Vec<f32> = (0..9 * cout).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
            let n = batch * g.positions() * cout;
            let dy0: Vec<f32> = (0..n).map(|i| ((i * 31) % 97) as f32 / 970.0 - 0.05).collect();
            let mut per = PerChannel::new(&g, dm, batch);
            check(&g, dm, batch, &x, &k, &dy0, &mut per);

            let mut y = vec![0.0f32; n];
            let mut group = c.benchmark_group(format!("depthwise/{h}x{w}x{ch}_dm{dm}_s{s}_b{batch}"));
            group.sample_size(20);
            group.bench_function(BenchmarkId::new("forward", "direct"), |bn| {
                bn.iter(|| depthwise::forward(&g, dm, black_box(&x), &k, None, Activation::Linear, None, &mut y, batch))
            });
            group.bench_function(BenchmarkId::new("forward", "grouped"), |bn| {
                bn.iter(|| grouped_conv::forward(&g, ch, black_box(&x), &k, None, Activation::Linear, None, &mut y, batch, cout))
            });
            group.bench_function(BenchmarkId::new("forward", "per-channel-gemm"), |bn| {
                bn.iter(|| per.forward(black_box(&x), &k, ch, &mut y))
            });
            let (mut dx, mut dk, mut dy) = (vec![0.0; x.len()], vec![0.0; k.len()], dy0.clone());
            group.bench_function(BenchmarkId::new("backward", "direct"), |bn| {
                bn.iter(|| depthwise::backward(&g, dm, &x, &k, None, &y, &mut dy, Activation::Linear, Some(&mut dx), &mut dk, None, batch))
            });
            group.bench_function(BenchmarkId::new("backward", "grouped"), |bn| {
                bn.iter(|| {
                    grouped_conv::backward(&g, ch, &x, &k, None, &y, &mut dy, Activation::Linear, Some(&mut dx), &mut dk, None, batch, cout)
                })
            });
            group.bench_function(BenchmarkId::new("backward", "per-channel-gemm"), |bn| {
                bn.iter(|| per.backward(black_box(&x), &k, ch, &dy0, &mut dx, &mut dk))
            });
            group.finish();
        }
    }
}

/// The per-channel GEMM path and the grouped convolution against the direct kernel: output, dx and dk.
fn check(g: &Window2d, dm: usize, batch: usize, x: &[f32], k: &[f32], dy0: &[f32], per: &mut PerChannel) {
    let (ch, n) = (g.c, dy0.len());
    let cout = ch * dm;
    let (mut y_direct, mut y_per, mut y_grouped) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    depthwise::forward(g, dm, x, k, None, Activation::Linear, None, &mut y_direct, batch);
    per.forward(x, k, ch, &mut y_per);
    grouped_conv::forward(g, ch, x, k, None, Activation::Linear, None, &mut y_grouped, batch, cout);
    assert_close("per-channel forward", &y_per, &y_direct);
    assert_close("grouped forward", &y_grouped, &y_direct);
    let (mut dx_direct, mut dk_direct, mut dy) = (vec![0.0f32; x.len()], vec![0.0f32; k.len()], dy0.to_vec());
    depthwise::backward(g, dm, x, k, None, &y_direct, &mut dy, Activation::Linear, Some(&mut dx_direct), &mut dk_direct, None, batch);
    let (mut dx_per, mut dk_per) = (vec![0.0f32; x.len()], vec![0.0f32; k.len()]);
    per.backward(x, k, ch, dy0, &mut dx_per, &mut dk_per);
    assert_close("per-channel dx", &dx_per, &dx_direct);
    assert_close("per-channel dk", &dk_per, &dk_direct);
}

criterion_group!(benches, bench);
criterion_main!(benches);
