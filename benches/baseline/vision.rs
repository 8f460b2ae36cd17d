//! Hand-written im2col baselines of the vision models of issue #19: M6 (U-Net) and M7 (MobileNet-like),
//! in the style of the dense baselines (`super`): every buffer allocated once per batch size,
//! convolutions as im2col into a preallocated matrix and one ndarray `general_mat_mul`, Adam in place.
//!
//! Every weight is stored in its Keras layout, flattened (a `[3, 3, cin, cout]` kernel is the
//! `[9·cin, cout]` matrix of a [`Dense`] over the im2col rows), so `tests/bench_baselines.rs` can load
//! modelc's weights into a baseline and compare outputs, gradients and one Adam step.
//!
//! - A 3×3 convolution: im2col (window row, window column, channel order), then a [`Dense`] over every
//!   output position; its input gradient is the im2col-matrix gradient scattered back by col2im.
//! - A transposed convolution (Keras kernel `[3, 3, cout, cin]`, i.e. the `[9·cout, cin]` matrix K):
//!   the adjoint of the stride-2 convolution over its output, so forward is `col = X · Kᵀ` (every input
//!   pixel times every tap) then col2im onto the output; backward im2col's the output gradient into
//!   `col` and takes `dK = colᵀ · X`, `dX = col · K` (what PyTorch and candle do).
//! - A depthwise convolution: im2col of the input (all channels at once), then per output value the
//!   9 products of its channel along the row; no GEMM of one channel at a time (model-runtime's
//!   `depthwise` bench measures that alternative).

use super::{fused_ce_grad, Act, AdamSlot, Dense};
use modelc::init::Rng;
use modelc::ndarray::linalg::general_mat_mul;
use modelc::ndarray::{s, Array1, Array2, ArrayView2, Axis, Zip};

/// A 3×3 window with Keras 'same' padding and stride `s` over channels-last `h`×`w`×`c` images.
#[derive(Clone, Copy)]
struct Win {
    h: usize,
    w: usize,
    c: usize,
    s: usize,
    pad_top: usize,
    pad_left: usize,
    oh: usize,
    ow: usize,
}

impl Win {
    fn new(h: usize, w: usize, c: usize, s: usize) -> Win {
        // 'same': out = ⌈in / s⌉, the padding split with the extra at the end.
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        let pad_top = ((oh - 1) * s + 3).saturating_sub(h) / 2;
        let pad_left = ((ow - 1) * s + 3).saturating_sub(w) / 2;
        Win { h, w, c, s, pad_top, pad_left, oh, ow }
    }

    /// Output positions (im2col rows) of `batch` images.
    fn rows(&self, batch: usize) -> usize {
        batch * self.oh * self.ow
    }

    /// Calls `f(row, tap, input offset)` for every tap of every output position that falls inside the
    /// image; `row` is the im2col row, `tap` = ky·3 + kx.
    fn for_taps(&self, batch: usize, mut f: impl FnMut(usize, usize, Option<usize>)) {
        for r in 0..self.rows(batch) {
            let (n, oy, ox) = (r / (self.oh * self.ow), r / self.ow % self.oh, r % self.ow);
            for ky in 0..3 {
                let iy = (oy * self.s + ky).wrapping_sub(self.pad_top);
                for kx in 0..3 {
                    let ix = (ox * self.s + kx).wrapping_sub(self.pad_left);
                    let at = (iy < self.h && ix < self.w).then(|| ((n * self.h + iy) * self.w + ix) * self.c);
                    f(r, ky * 3 + kx, at);
                }
            }
        }
    }
}

/// im2col: row `r` of `col` holds the 3×3×c patch of output position `r`, zeros outside the image.
fn im2col(g: &Win, x: &[f32], col: &mut [f32], batch: usize) {
    let (c, patch) = (g.c, 9 * g.c);
    g.for_taps(batch, |r, t, at| {
        let dst = &mut col[r * patch + t * c..r * patch + (t + 1) * c];
        match at {
            Some(at) => dst.copy_from_slice(&x[at..at + c]),
            None => dst.fill(0.0),
        }
    });
}

/// The adjoint of [`im2col`]: `dx` = the patches of `dcol` summed back onto the image.
fn col2im(g: &Win, dcol: &[f32], dx: &mut [f32], batch: usize) {
    let (c, patch) = (g.c, 9 * g.c);
    dx.fill(0.0);
    g.for_taps(batch, |r, t, at| {
        if let Some(at) = at {
            let src = &dcol[r * patch + t * c..r * patch + (t + 1) * c];
            dx[at..at + c].iter_mut().zip(src).for_each(|(d, &v)| *d += v);
        }
    });
}

/// Glorot-uniform values, as [`Dense::new`] draws them.
fn glorot(rows: usize, cols: usize, fan_in: usize, fan_out: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-limit, limit))
}

/// Column sums of `m` into `out`.
fn column_sums(m: ArrayView2<'_, f32>, out: &mut Array1<f32>) {
    out.fill(0.0);
    for r in m.rows() {
        *out += &r;
    }
}

/// 2×2 max pooling with stride 2 over `h`×`w`×`c` images, remembering each maximum's input index.
struct MaxPool {
    h: usize,
    w: usize,
    c: usize,
    /// batch·(h/2)·(w/2) × c.
    y: Array2<f32>,
    arg: Vec<usize>,
}

impl MaxPool {
    fn new(h: usize, w: usize, c: usize, batch: usize) -> Self {
        let rows = batch * (h / 2) * (w / 2);
        MaxPool { h, w, c, y: Array2::zeros((rows, c)), arg: vec![0; rows * c] }
    }

    fn forward(&mut self, x: &[f32]) {
        let (h, w, c) = (self.h, self.w, self.c);
        let (oh, ow) = (h / 2, w / 2);
        let y = self.y.as_slice_mut().expect("owned");
        for (r, (ys, args)) in y.chunks_exact_mut(c).zip(self.arg.chunks_exact_mut(c)).enumerate() {
            let (n, oy, ox) = (r / (oh * ow), r / ow % oh, r % ow);
            let at = ((n * h + 2 * oy) * w + 2 * ox) * c;
            let taps = [at, at + c, at + w * c, at + (w + 1) * c];
            for (ch, (yv, a)) in ys.iter_mut().zip(args).enumerate() {
                let best = taps.iter().map(|&t| t + ch).fold(taps[0] + ch, |b, i| if x[i] > x[b] { i } else { b });
                (*yv, *a) = (x[best], best);
            }
        }
    }

    /// dx[argmax] += dy.
    fn backward_add(&self, dy: &[f32], dx: &mut [f32]) {
        for (&g, &a) in dy.iter().zip(&self.arg) {
            dx[a] += g;
        }
    }
}

/// A 3×3 'same' transposed convolution with stride 2 and relu (Keras `Conv2DTranspose(cout, 3,
/// strides = 2, padding = same, activation = relu)`) from `h`×`w`×`cin` to `2h`×`2w`×`cout`.
struct ConvT {
    /// The Keras kernel `[3, 3, cout, cin]` as the `[9·cout, cin]` matrix K.
    k: Array2<f32>,
    b: Array1<f32>,
    dk: Array2<f32>,
    db: Array1<f32>,
    /// The stride-2 convolution over the output this is the adjoint of: its positions are the input pixels.
    g: Win,
    batch: usize,
    /// batch·h·w × 9·cout: every input pixel times every tap (forward), the output gradient's patches (backward).
    col: Array2<f32>,
    /// batch·2h·2w × cout.
    y: Array2<f32>,
    dz: Array2<f32>,
    /// batch·h·w × cin.
    dx: Array2<f32>,
    adam_k: AdamSlot,
    adam_b: AdamSlot,
}

impl ConvT {
    fn new(h: usize, w: usize, cin: usize, cout: usize, batch: usize, seed: u64) -> Self {
        let g = Win::new(2 * h, 2 * w, cout, 2);
        let (rows_in, rows_out) = (batch * h * w, batch * 4 * h * w);
        ConvT {
            k: glorot(9 * cout, cin, 9 * cout, 9 * cin, seed),
            b: Array1::zeros(cout),
            dk: Array2::zeros((9 * cout, cin)),
            db: Array1::zeros(cout),
            g,
            batch,
            col: Array2::zeros((rows_in, 9 * cout)),
            y: Array2::zeros((rows_out, cout)),
            dz: Array2::zeros((rows_out, cout)),
            dx: Array2::zeros((rows_in, cin)),
            adam_k: AdamSlot::new(9 * cout * cin),
            adam_b: AdamSlot::new(cout),
        }
    }

    /// y = relu(col2im(X · Kᵀ) + b).
    fn forward(&mut self, x: ArrayView2<'_, f32>) {
        general_mat_mul(1.0, &x, &self.k.t(), 0.0, &mut self.col);
        col2im(&self.g, self.col.as_slice().expect("owned"), self.y.as_slice_mut().expect("owned"), self.batch);
        let b = &self.b;
        self.y.rows_mut().into_iter().for_each(|mut r| Zip::from(&mut r).and(b).for_each(|y, &b| *y = (*y + b).max(0.0)));
    }

    /// dK, db and, if `need_dx`, dX from the gradient `dy` w.r.t. the (post-relu) output.
    fn backward(&mut self, x: ArrayView2<'_, f32>, dy: ArrayView2<'_, f32>, need_dx: bool) {
        Zip::from(&mut self.dz).and(&dy).and(&self.y).for_each(|dz, &g, &y| *dz = if y > 0.0 { g } else { 0.0 });
        column_sums(self.dz.view(), &mut self.db);
        im2col(&self.g, self.dz.as_slice().expect("owned"), self.col.as_slice_mut().expect("owned"), self.batch);
        general_mat_mul(1.0, &self.col.t(), &x, 0.0, &mut self.dk);
        if need_dx {
            general_mat_mul(1.0, &self.col, &self.k, 0.0, &mut self.dx);
        }
    }

    fn adam(&mut self, lr: f32, t: i32) {
        self.adam_k.step(self.k.as_slice_mut().expect("owned"), self.dk.as_slice().expect("owned"), lr, t);
        self.adam_b.step(self.b.as_slice_mut().expect("owned"), self.db.as_slice().expect("owned"), lr, t);
    }
}

/// A 3×3 'same' depthwise convolution with depth multiplier 1 and no bias (Keras
/// `DepthwiseConv2D(3, strides = s, padding = same, use_bias = false)`).
struct Depthwise {
    /// The Keras kernel `[3, 3, c, 1]` as `[9, c]`.
    k: Array2<f32>,
    dk: Array2<f32>,
    g: Win,
    batch: usize,
    /// batch·oh·ow × 9·c: the patches (forward), the patches' gradient (backward).
    col: Array2<f32>,
    /// batch·oh·ow × c.
    y: Array2<f32>,
    /// batch·h·w × c.
    dx: Array2<f32>,
    adam: AdamSlot,
}

impl Depthwise {
    fn new(h: usize, w: usize, c: usize, stride: usize, batch: usize, seed: u64) -> Self {
        let g = Win::new(h, w, c, stride);
        let rows = g.rows(batch);
        Depthwise {
            k: glorot(9, c, 9 * c, 9, seed),
            dk: Array2::zeros((9, c)),
            g,
            batch,
            col: Array2::zeros((rows, 9 * c)),
            y: Array2::zeros((rows, c)),
            dx: Array2::zeros((batch * h * w, c)),
            adam: AdamSlot::new(9 * c),
        }
    }

    /// y[r, ch] = Σ_t col[r, t·c + ch] · k[t, ch].
    fn forward(&mut self, x: &[f32]) {
        let c = self.g.c;
        im2col(&self.g, x, self.col.as_slice_mut().expect("owned"), self.batch);
        let k = self.k.as_slice().expect("owned");
        let col = self.col.as_slice().expect("owned");
        for (ys, patch) in self.y.as_slice_mut().expect("owned").chunks_exact_mut(c).zip(col.chunks_exact(9 * c)) {
            ys.fill(0.0);
            for (xs, ks) in patch.chunks_exact(c).zip(k.chunks_exact(c)) {
                ys.iter_mut().zip(xs).zip(ks).for_each(|((y, &x), &k)| *y += x * k);
            }
        }
    }

    /// dk from `dy` (the gradient w.r.t. the output) and, if `need_dx`, dx.
    fn backward(&mut self, dy: &[f32], need_dx: bool) {
        let c = self.g.c;
        let dk = self.dk.as_slice_mut().expect("owned");
        dk.fill(0.0);
        for (g, patch) in dy.chunks_exact(c).zip(self.col.as_slice().expect("owned").chunks_exact(9 * c)) {
            for (dks, xs) in dk.chunks_exact_mut(c).zip(patch.chunks_exact(c)) {
                dks.iter_mut().zip(xs).zip(g).for_each(|((d, &x), &g)| *d += x * g);
            }
        }
        if need_dx {
            let k = self.k.as_slice().expect("owned");
            for (g, dpatch) in dy.chunks_exact(c).zip(self.col.as_slice_mut().expect("owned").chunks_exact_mut(9 * c)) {
                for (ds, ks) in dpatch.chunks_exact_mut(c).zip(k.chunks_exact(c)) {
                    ds.iter_mut().zip(ks).zip(g).for_each(|((d, &k), &g)| *d = k * g);
                }
            }
            col2im(&self.g, self.col.as_slice().expect("owned"), self.dx.as_slice_mut().expect("owned"), self.batch);
        }
    }

    fn adam(&mut self, lr: f32, t: i32) {
        self.adam.step(self.k.as_slice_mut().expect("owned"), self.dk.as_slice().expect("owned"), lr, t);
    }
}

/// Keras `BatchNormalization()` (momentum 0.99, epsilon 1e-3) followed by relu, over the channels of
/// `rows` × `c` activations: batch statistics (biased variance) while training, which also update the
/// moving ones; the moving statistics in inference.
struct BnRelu {
    gamma: Array1<f32>,
    beta: Array1<f32>,
    moving_mean: Array1<f32>,
    moving_var: Array1<f32>,
    dgamma: Array1<f32>,
    dbeta: Array1<f32>,
    /// Per channel: the batch mean, then 1 / √(var + ε) of the last training forward.
    mean: Array1<f32>,
    inv_std: Array1<f32>,
    /// rows × c: the normalized input, the output.
    xhat: Array2<f32>,
    y: Array2<f32>,
    /// rows × c: the gradient w.r.t. the input.
    dx: Array2<f32>,
    adam_g: AdamSlot,
    adam_b: AdamSlot,
}

impl BnRelu {
    const EPS: f32 = 1e-3;
    const MOMENTUM: f32 = 0.99;

    fn new(rows: usize, c: usize) -> Self {
        BnRelu {
            gamma: Array1::ones(c),
            beta: Array1::zeros(c),
            moving_mean: Array1::zeros(c),
            moving_var: Array1::ones(c),
            dgamma: Array1::zeros(c),
            dbeta: Array1::zeros(c),
            mean: Array1::zeros(c),
            inv_std: Array1::zeros(c),
            xhat: Array2::zeros((rows, c)),
            y: Array2::zeros((rows, c)),
            dx: Array2::zeros((rows, c)),
            adam_g: AdamSlot::new(c),
            adam_b: AdamSlot::new(c),
        }
    }

    fn forward(&mut self, x: ArrayView2<'_, f32>, training: bool) {
        if training {
            let n = x.nrows() as f32;
            column_sums(x, &mut self.mean);
            self.mean /= n;
            // The biased variance, accumulated in inv_std before it becomes 1 / √(var + ε).
            self.inv_std.fill(0.0);
            for r in x.rows() {
                Zip::from(&mut self.inv_std).and(&r).and(&self.mean).for_each(|v, &x, &m| *v += (x - m) * (x - m));
            }
            self.inv_std /= n;
            let m = Self::MOMENTUM;
            Zip::from(&mut self.moving_mean).and(&self.mean).for_each(|mm, &b| *mm = *mm * m + b * (1.0 - m));
            Zip::from(&mut self.moving_var).and(&self.inv_std).for_each(|mv, &b| *mv = *mv * m + b * (1.0 - m));
            self.inv_std.mapv_inplace(|v| 1.0 / (v + Self::EPS).sqrt());
        } else {
            self.mean.assign(&self.moving_mean);
            Zip::from(&mut self.inv_std).and(&self.moving_var).for_each(|s, &v| *s = 1.0 / (v + Self::EPS).sqrt());
        }
        let (mean, inv, gamma, beta) = (&self.mean, &self.inv_std, &self.gamma, &self.beta);
        Zip::from(self.xhat.rows_mut()).and(self.y.rows_mut()).and(x.rows()).for_each(|mut xh, mut y, x| {
            Zip::from(&mut xh).and(&mut y).and(&x).and(mean).for_each(|xh, y, &x, &m| {
                *xh = x - m;
                *y = *xh;
            });
            Zip::from(&mut xh).and(&mut y).and(inv).and(gamma).and(beta).for_each(|xh, y, &s, &g, &b| {
                *xh *= s;
                *y = (g * *xh + b).max(0.0);
            });
        });
    }

    /// dgamma, dbeta and dx (training statistics) from `dy`, the gradient w.r.t. the relu output.
    fn backward(&mut self, dy: ArrayView2<'_, f32>) {
        let n = dy.nrows() as f32;
        // dn = dy · relu', kept in dx until the input gradient overwrites it.
        Zip::from(&mut self.dx).and(&dy).and(&self.y).for_each(|d, &g, &y| *d = if y > 0.0 { g } else { 0.0 });
        column_sums(self.dx.view(), &mut self.dbeta);
        self.dgamma.fill(0.0);
        for (d, xh) in self.dx.rows().into_iter().zip(self.xhat.rows()) {
            Zip::from(&mut self.dgamma).and(&d).and(&xh).for_each(|s, &d, &x| *s += d * x);
        }
        let (dg, db, gamma, inv) = (&self.dgamma, &self.dbeta, &self.gamma, &self.inv_std);
        Zip::from(self.dx.rows_mut()).and(self.xhat.rows()).for_each(|mut d, xh| {
            Zip::from(&mut d).and(&xh).and(dg).and(db).and(gamma).for_each(|d, &x, &dg, &db, &g| *d = g * (*d - (db + x * dg) / n));
            Zip::from(&mut d).and(inv).for_each(|d, &s| *d *= s);
        });
    }

    fn adam(&mut self, lr: f32, t: i32) {
        self.adam_g.step(self.gamma.as_slice_mut().expect("owned"), self.dgamma.as_slice().expect("owned"), lr, t);
        self.adam_b.step(self.beta.as_slice_mut().expect("owned"), self.dbeta.as_slice().expect("owned"), lr, t);
    }
}

/// M6 (issue #19), the U-Net of `benches/bench_models`: image[64,64,3] → c1 = Conv2D16 3×3 same relu →
/// MaxPool2 → c2 = Conv2D32 3×3 same relu → MaxPool2 → u2 = Conv2DTranspose32 3×3 s2 relu →
/// Concatenate(u2, c2) → u1 = Conv2DTranspose16 3×3 s2 relu → Concatenate(u1, c1) → Conv2D1 1×1
/// sigmoid; binary cross-entropy averaged over every pixel.
pub struct UNet {
    conv1: Dense,
    conv2: Dense,
    up2: ConvT,
    up1: ConvT,
    head: Dense,
    g1: Win,
    g2: Win,
    col1: Array2<f32>,
    col2: Array2<f32>,
    pool1: MaxPool,
    pool2: MaxPool,
    /// batch·32·32 × 64: [u2, c2].
    cat2: Array2<f32>,
    /// batch·64·64 × 32: [u1, c1].
    cat1: Array2<f32>,
    dp: Array2<f32>,
    /// dL/dc2 (batch·32·32 × 32), dL/d(pool1 output) (batch·32·32·16), dL/dc1 (batch·64·64 × 16).
    dc2: Array2<f32>,
    dpool1: Vec<f32>,
    dc1: Array2<f32>,
    batch: usize,
    t: i32,
}

impl UNet {
    pub fn new(batch: usize) -> Self {
        let (g1, g2) = (Win::new(64, 64, 3, 1), Win::new(32, 32, 16, 1));
        let (r1, r2) = (g1.rows(batch), g2.rows(batch));
        UNet {
            conv1: Dense::new(27, 16, Act::Relu, r1, 1),
            conv2: Dense::new(144, 32, Act::Relu, r2, 2),
            up2: ConvT::new(16, 16, 32, 32, batch, 3),
            up1: ConvT::new(32, 32, 64, 16, batch, 4),
            head: Dense::new(32, 1, Act::Sigmoid, r1, 5),
            g1,
            g2,
            col1: Array2::zeros((r1, 27)),
            col2: Array2::zeros((r2, 144)),
            pool1: MaxPool::new(64, 64, 16, batch),
            pool2: MaxPool::new(32, 32, 32, batch),
            cat2: Array2::zeros((r2, 64)),
            cat1: Array2::zeros((r1, 32)),
            dp: Array2::zeros((r1, 1)),
            dc2: Array2::zeros((r2, 32)),
            dpool1: vec![0.0; r2 * 16],
            dc1: Array2::zeros((r1, 16)),
            batch,
            t: 0,
        }
    }

    /// `image` is batch·64·64·3 values, channels-last; returns the mask, batch·64·64 × 1.
    pub fn forward(&mut self, image: &[f32]) -> &Array2<f32> {
        let n = self.batch;
        im2col(&self.g1, image, self.col1.as_slice_mut().expect("owned"), n);
        self.conv1.forward(self.col1.view());
        self.pool1.forward(self.conv1.y.as_slice().expect("owned"));
        im2col(&self.g2, self.pool1.y.as_slice().expect("owned"), self.col2.as_slice_mut().expect("owned"), n);
        self.conv2.forward(self.col2.view());
        self.pool2.forward(self.conv2.y.as_slice().expect("owned"));
        self.up2.forward(self.pool2.y.view());
        self.cat2.slice_mut(s![.., ..32]).assign(&self.up2.y);
        self.cat2.slice_mut(s![.., 32..]).assign(&self.conv2.y);
        self.up1.forward(self.cat2.view());
        self.cat1.slice_mut(s![.., ..16]).assign(&self.up1.y);
        self.cat1.slice_mut(s![.., 16..]).assign(&self.conv1.y);
        self.head.forward(self.cat1.view());
        &self.head.y
    }

    /// One Adam(1e-3) step on `mask` (batch·64·64 values of 0 or 1).
    pub fn train_step(&mut self, image: &[f32], mask: &[f32]) {
        self.forward(image);
        let target = ArrayView2::from_shape((mask.len(), 1), mask).expect("one target per pixel");
        fused_ce_grad(&self.head.y, target, &mut self.dp);
        self.head.backward(self.cat1.view(), self.dp.view(), true, true);
        self.up1.backward(self.cat2.view(), self.head.dx.slice(s![.., ..16]), true);
        self.up2.backward(self.pool2.y.view(), self.up1.dx.slice(s![.., ..32]), true);
        // c2 feeds the concatenation and the second pooling.
        self.dc2.assign(&self.up1.dx.slice(s![.., 32..]));
        self.pool2.backward_add(self.up2.dx.as_slice().expect("owned"), self.dc2.as_slice_mut().expect("owned"));
        self.conv2.backward(self.col2.view(), self.dc2.view(), false, true);
        col2im(&self.g2, self.conv2.dx.as_slice().expect("owned"), &mut self.dpool1, self.batch);
        // c1 feeds the concatenation and the first pooling.
        self.dc1.assign(&self.head.dx.slice(s![.., 16..]));
        self.pool1.backward_add(&self.dpool1, self.dc1.as_slice_mut().expect("owned"));
        self.conv1.backward(self.col1.view(), self.dc1.view(), false, false);
        self.t += 1;
        for d in [&mut self.conv1, &mut self.conv2, &mut self.head] {
            d.adam(1e-3, self.t);
        }
        self.up2.adam(1e-3, self.t);
        self.up1.adam(1e-3, self.t);
    }

    /// Every weight under its Keras name, in its Keras layout flattened.
    #[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
    pub fn params_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut out = dense_params(&mut self.conv1, "conv2d");
        out.extend(dense_params(&mut self.conv2, "conv2d_1"));
        out.extend(convt_params(&mut self.up2, "conv2d_transpose"));
        out.extend(convt_params(&mut self.up1, "conv2d_transpose_1"));
        out.extend(dense_params(&mut self.head, "conv2d_2"));
        out
    }

    /// The gradient of every weight from the last training step, named and laid out as [`UNet::params_mut`].
    #[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
    pub fn grads(&self) -> Vec<(String, &[f32])> {
        let mut out = dense_grads(&self.conv1, "conv2d");
        out.extend(dense_grads(&self.conv2, "conv2d_1"));
        out.extend(convt_grads(&self.up2, "conv2d_transpose"));
        out.extend(convt_grads(&self.up1, "conv2d_transpose_1"));
        out.extend(dense_grads(&self.head, "conv2d_2"));
        out
    }
}

/// M7 (issue #19), the MobileNet-like classifier of `benches/bench_models`: image[32,32,3] → four
/// times (DepthwiseConv2D 3×3 same no bias, strides 1, 2, 1, 2 → BatchNormalization → relu →
/// Conv2D 1×1 relu with 16, 32, 32, 64 filters) → GlobalAveragePooling2D → Dense10 softmax;
/// categorical cross-entropy.
pub struct MobileNet {
    dw: [Depthwise; 4],
    bn: [BnRelu; 4],
    pw: [Dense; 4],
    head: Dense,
    /// batch × 64.
    pooled: Array2<f32>,
    dp: Array2<f32>,
    /// batch·8·8 × 64: the pooled gradient spread over the positions.
    dpw4: Array2<f32>,
    t: i32,
}

/// Per block of M7: input side, input channels, depthwise stride, pointwise filters.
const BLOCKS: [(usize, usize, usize, usize); 4] = [(32, 3, 1, 16), (32, 16, 2, 32), (16, 32, 1, 32), (16, 32, 2, 64)];

impl MobileNet {
    pub fn new(batch: usize) -> Self {
        let dw = BLOCKS.map(|(side, c, s, _)| Depthwise::new(side, side, c, s, batch, side as u64 + c as u64));
        let rows = BLOCKS.map(|(side, _, s, _)| batch * (side / s) * (side / s));
        let bn = [0, 1, 2, 3].map(|i| BnRelu::new(rows[i], BLOCKS[i].1));
        let pw = [0, 1, 2, 3].map(|i| Dense::new(BLOCKS[i].1, BLOCKS[i].3, Act::Relu, rows[i], 10 + i as u64));
        MobileNet {
            dw,
            bn,
            pw,
            head: Dense::new(64, 10, Act::Softmax, batch, 20),
            pooled: Array2::zeros((batch, 64)),
            dp: Array2::zeros((batch, 10)),
            dpw4: Array2::zeros((rows[3], 64)),
            t: 0,
        }
    }

    /// `image` is batch·32·32·3 values, channels-last; `training` selects the batch statistics (and
    /// updates the moving ones). Returns the class probabilities.
    pub fn forward(&mut self, image: &[f32], training: bool) -> &Array2<f32> {
        for i in 0..4 {
            let x = if i == 0 { image } else { self.pw[i - 1].y.as_slice().expect("owned") };
            self.dw[i].forward(x);
            self.bn[i].forward(self.dw[i].y.view(), training);
            self.pw[i].forward(self.bn[i].y.view());
        }
        let y4 = &self.pw[3].y;
        let per = y4.nrows() / self.pooled.nrows();
        for (mut dst, img) in self.pooled.rows_mut().into_iter().zip(y4.axis_chunks_iter(Axis(0), per)) {
            dst.fill(0.0);
            for px in img.rows() {
                dst += &px;
            }
            dst *= 1.0 / per as f32;
        }
        self.head.forward(self.pooled.view());
        &self.head.y
    }

    /// One Adam(1e-3) step on the one-hot targets `y` (batch × 10).
    pub fn train_step(&mut self, image: &[f32], y: ArrayView2<'_, f32>) {
        self.forward(image, true);
        fused_ce_grad(&self.head.y, y, &mut self.dp);
        self.head.backward(self.pooled.view(), self.dp.view(), true, true);
        let per = self.dpw4.nrows() / self.pooled.nrows();
        let scale = 1.0 / per as f32;
        for (g, mut img) in self.head.dx.rows().into_iter().zip(self.dpw4.axis_chunks_iter_mut(Axis(0), per)) {
            img.rows_mut().into_iter().for_each(|mut px| Zip::from(&mut px).and(&g).for_each(|d, &g| *d = g * scale));
        }
        for i in (0..4).rev() {
            let dy = if i == 3 { self.dpw4.view() } else { self.dw[i + 1].dx.view() };
            self.pw[i].backward(self.bn[i].y.view(), dy, false, true);
            self.bn[i].backward(self.pw[i].dx.view());
            self.dw[i].backward(self.bn[i].dx.as_slice().expect("owned"), i > 0);
        }
        self.t += 1;
        for i in 0..4 {
            self.dw[i].adam(1e-3, self.t);
            self.bn[i].adam(1e-3, self.t);
            self.pw[i].adam(1e-3, self.t);
        }
        self.head.adam(1e-3, self.t);
    }

    /// Keras' names of block `i`'s layers: the depthwise convolution, the normalization, the pointwise
    /// convolution.
    #[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
    fn names(i: usize) -> [&'static str; 3] {
        [
            ["depthwise_conv2d", "batch_normalization", "conv2d"],
            ["depthwise_conv2d_1", "batch_normalization_1", "conv2d_1"],
            ["depthwise_conv2d_2", "batch_normalization_2", "conv2d_2"],
            ["depthwise_conv2d_3", "batch_normalization_3", "conv2d_3"],
        ][i]
    }

    /// Every weight (moving statistics included) under its Keras name, in its Keras layout flattened.
    #[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
    pub fn params_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut out = Vec::new();
        for (i, ((dw, bn), pw)) in self.dw.iter_mut().zip(&mut self.bn).zip(&mut self.pw).enumerate() {
            let [d, b, p] = Self::names(i);
            out.push((path(d, "kernel"), dw.k.as_slice_mut().expect("owned")));
            out.push((path(b, "gamma"), bn.gamma.as_slice_mut().expect("owned")));
            out.push((path(b, "beta"), bn.beta.as_slice_mut().expect("owned")));
            out.push((path(b, "moving_mean"), bn.moving_mean.as_slice_mut().expect("owned")));
            out.push((path(b, "moving_variance"), bn.moving_var.as_slice_mut().expect("owned")));
            out.extend(dense_params(pw, p));
        }
        out.extend(dense_params(&mut self.head, "dense"));
        out
    }

    /// The gradient of every trainable weight from the last training step, named as in [`MobileNet::params_mut`].
    #[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
    pub fn grads(&self) -> Vec<(String, &[f32])> {
        let mut out = Vec::new();
        for (i, ((dw, bn), pw)) in self.dw.iter().zip(&self.bn).zip(&self.pw).enumerate() {
            let [d, b, p] = Self::names(i);
            out.push((path(d, "kernel"), dw.dk.as_slice().expect("owned")));
            out.push((path(b, "gamma"), bn.dgamma.as_slice().expect("owned")));
            out.push((path(b, "beta"), bn.dbeta.as_slice().expect("owned")));
            out.extend(dense_grads(pw, p));
        }
        out.extend(dense_grads(&self.head, "dense"));
        out
    }
}

/// `layer/weight`, a Keras weight path.
#[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
fn path(layer: &str, weight: &str) -> String {
    format!("{layer}/{weight}")
}

#[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
fn dense_params<'a>(d: &'a mut Dense, layer: &str) -> Vec<(String, &'a mut [f32])> {
    vec![(path(layer, "kernel"), d.w.as_slice_mut().expect("owned")), (path(layer, "bias"), d.b.as_slice_mut().expect("owned"))]
}

#[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
fn dense_grads<'a>(d: &'a Dense, layer: &str) -> Vec<(String, &'a [f32])> {
    vec![(path(layer, "kernel"), d.dw.as_slice().expect("owned")), (path(layer, "bias"), d.db.as_slice().expect("owned"))]
}

#[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
fn convt_params<'a>(c: &'a mut ConvT, layer: &str) -> Vec<(String, &'a mut [f32])> {
    vec![(path(layer, "kernel"), c.k.as_slice_mut().expect("owned")), (path(layer, "bias"), c.b.as_slice_mut().expect("owned"))]
}

#[allow(dead_code)] // read by tests/bench_baselines.rs, not by the benches
fn convt_grads<'a>(c: &'a ConvT, layer: &str) -> Vec<(String, &'a [f32])> {
    vec![(path(layer, "kernel"), c.dk.as_slice().expect("owned")), (path(layer, "bias"), c.db.as_slice().expect("owned"))]
}
