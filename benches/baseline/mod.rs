//! Hand-written ndarray implementations of the BENCH models: the baseline every modelc figure is a ratio to.
//! Buffers are allocated once per batch size; a step runs GEMMs into them with `general_mat_mul`,
//! fuses bias and activation in one pass, and updates weights with Adam in place.

use modelc::ndarray::linalg::general_mat_mul;
use modelc::ndarray::{s, Array1, Array2, ArrayView2, Zip};

// The recurrent bench's and tests/bench_baselines.rs's, not the models bench's.
#[allow(dead_code)]
pub mod recurrent;
mod vision;
pub use vision::{MobileNet, UNet};

/// Activation of a hand-written dense layer.
#[derive(Clone, Copy)]
pub enum Act {
    Linear,
    Relu,
    Sigmoid,
    Softmax,
}

/// Adam state of one tensor (Keras defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7).
struct AdamSlot {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl AdamSlot {
    fn new(len: usize) -> Self {
        AdamSlot { m: vec![0.0; len], v: vec![0.0; len] }
    }

    fn step(&mut self, p: &mut [f32], g: &[f32], lr: f32, t: i32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-7f32);
        let alpha = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m += (g - *m) * (1.0 - b1);
            *v += (g * g - *v) * (1.0 - b2);
            *p -= alpha * *m / (v.sqrt() + eps);
        }
    }
}

/// One dense layer with its activations, gradients and optimizer state preallocated for a batch.
pub struct Dense {
    pub w: Array2<f32>,
    pub b: Array1<f32>,
    dw: Array2<f32>,
    db: Array1<f32>,
    act: Act,
    /// Output of the last forward, batch × out.
    pub y: Array2<f32>,
    /// Gradient w.r.t. the input, batch × in.
    pub dx: Array2<f32>,
    dz: Array2<f32>,
    adam_w: AdamSlot,
    adam_b: AdamSlot,
}

impl Dense {
    pub fn new(fan_in: usize, fan_out: usize, act: Act, batch: usize, seed: u64) -> Self {
        let mut rng = modelc::init::Rng::new(seed);
        let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
        Dense {
            w: Array2::from_shape_fn((fan_in, fan_out), |_| rng.uniform(-limit, limit)),
            b: Array1::zeros(fan_out),
            dw: Array2::zeros((fan_in, fan_out)),
            db: Array1::zeros(fan_out),
            act,
            y: Array2::zeros((batch, fan_out)),
            dx: Array2::zeros((batch, fan_in)),
            dz: Array2::zeros((batch, fan_out)),
            adam_w: AdamSlot::new(fan_in * fan_out),
            adam_b: AdamSlot::new(fan_out),
        }
    }

    /// y = act(x·W + b).
    pub fn forward(&mut self, x: ArrayView2<'_, f32>) {
        general_mat_mul(1.0, &x, &self.w, 0.0, &mut self.y);
        let b = &self.b;
        match self.act {
            Act::Linear => self.y.rows_mut().into_iter().for_each(|mut r| r += b),
            Act::Relu => self.y.rows_mut().into_iter().for_each(|mut r| Zip::from(&mut r).and(b).for_each(|y, &b| *y = (*y + b).max(0.0))),
            Act::Sigmoid => self
                .y
                .rows_mut()
                .into_iter()
                .for_each(|mut r| Zip::from(&mut r).and(b).for_each(|y, &b| *y = 1.0 / (1.0 + (-(*y + b)).exp()))),
            Act::Softmax => self.y.rows_mut().into_iter().for_each(|mut r| {
                r += b;
                let max = r.fold(f32::NEG_INFINITY, |a, &v| a.max(v));
                r.mapv_inplace(|v| (v - max).exp());
                let sum = r.sum();
                r.mapv_inplace(|v| v / sum);
            }),
        }
    }

    /// Back-propagates `dy` (the gradient w.r.t. the output; for `fused` the gradient w.r.t. the
    /// pre-activation, as softmax/sigmoid + cross-entropy give it): dW, db and, if `need_dx`, dx.
    pub fn backward(&mut self, x: ArrayView2<'_, f32>, dy: ArrayView2<'_, f32>, fused: bool, need_dx: bool) {
        match (self.act, fused) {
            (_, true) | (Act::Linear, _) => self.dz.assign(&dy),
            (Act::Relu, _) => Zip::from(&mut self.dz).and(&dy).and(&self.y).for_each(|dz, &g, &y| *dz = if y > 0.0 { g } else { 0.0 }),
            (Act::Sigmoid, _) => Zip::from(&mut self.dz).and(&dy).and(&self.y).for_each(|dz, &g, &y| *dz = g * y * (1.0 - y)),
            (Act::Softmax, _) => unreachable!("the baselines fuse softmax with cross-entropy"),
        }
        general_mat_mul(1.0, &x.t(), &self.dz, 0.0, &mut self.dw);
        self.db.fill(0.0);
        for r in self.dz.rows() {
            self.db += &r;
        }
        if need_dx {
            general_mat_mul(1.0, &self.dz, &self.w.t(), 0.0, &mut self.dx);
        }
    }

    pub fn adam(&mut self, lr: f32, t: i32) {
        let (w, dw) = (self.w.as_slice_mut().unwrap(), self.dw.as_slice().unwrap());
        self.adam_w.step(w, dw, lr, t);
        let (b, db) = (self.b.as_slice_mut().unwrap(), self.db.as_slice().unwrap());
        self.adam_b.step(b, db, lr, t);
    }
}

/// d(mean BCE or CE)/d(logits) for sigmoid/softmax outputs: (p − y) / rows, into `out`.
pub fn fused_ce_grad(p: &Array2<f32>, y: ArrayView2<'_, f32>, out: &mut Array2<f32>) {
    let rows = p.nrows() as f32;
    Zip::from(out).and(p).and(&y).for_each(|o, &p, &y| *o = (p - y) / rows);
}

/// BENCH M1 (fusion): left[8] → Dense16 relu → Dense8 relu; right[4] → Dense8 relu; concat → Dense1 sigmoid.
pub struct Fusion {
    l1: Dense,
    l2: Dense,
    r1: Dense,
    head: Dense,
    merged: Array2<f32>,
    dp: Array2<f32>,
    t: i32,
}

impl Fusion {
    pub fn new(batch: usize) -> Self {
        Fusion {
            l1: Dense::new(8, 16, Act::Relu, batch, 1),
            l2: Dense::new(16, 8, Act::Relu, batch, 2),
            r1: Dense::new(4, 8, Act::Relu, batch, 3),
            head: Dense::new(16, 1, Act::Sigmoid, batch, 4),
            merged: Array2::zeros((batch, 16)),
            dp: Array2::zeros((batch, 1)),
            t: 0,
        }
    }

    pub fn forward(&mut self, left: ArrayView2<'_, f32>, right: ArrayView2<'_, f32>) -> &Array2<f32> {
        self.l1.forward(left);
        self.l2.forward(self.l1.y.view());
        self.r1.forward(right);
        self.merged.slice_mut(s![.., ..8]).assign(&self.l2.y);
        self.merged.slice_mut(s![.., 8..]).assign(&self.r1.y);
        self.head.forward(self.merged.view());
        &self.head.y
    }

    pub fn train_step(&mut self, left: ArrayView2<'_, f32>, right: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) {
        self.forward(left, right);
        fused_ce_grad(&self.head.y, y, &mut self.dp);
        self.head.backward(self.merged.view(), self.dp.view(), true, true);
        let dm = &self.head.dx;
        self.l2.backward(self.l1.y.view(), dm.slice(s![.., ..8]), false, true);
        self.r1.backward(right, dm.slice(s![.., 8..]), false, false);
        self.l1.backward(left, self.l2.dx.view(), false, false);
        self.t += 1;
        for d in [&mut self.l1, &mut self.l2, &mut self.r1, &mut self.head] {
            d.adam(1e-3, self.t);
        }
    }
}

/// BENCH M2 (multitask): x[64] → Dense128 relu → Dense128 relu = backbone; Add(backbone, Dense128(x));
/// head_a Dense10 softmax (categorical CE), head_b Dense1 sigmoid (binary CE).
pub struct Multitask {
    d1: Dense,
    d2: Dense,
    skip: Dense,
    head_a: Dense,
    head_b: Dense,
    sum: Array2<f32>,
    da: Array2<f32>,
    db: Array2<f32>,
    dsum: Array2<f32>,
    t: i32,
}

impl Multitask {
    pub fn new(batch: usize) -> Self {
        Multitask {
            d1: Dense::new(64, 128, Act::Relu, batch, 1),
            d2: Dense::new(128, 128, Act::Relu, batch, 2),
            skip: Dense::new(64, 128, Act::Linear, batch, 3),
            head_a: Dense::new(128, 10, Act::Softmax, batch, 4),
            head_b: Dense::new(128, 1, Act::Sigmoid, batch, 5),
            sum: Array2::zeros((batch, 128)),
            da: Array2::zeros((batch, 10)),
            db: Array2::zeros((batch, 1)),
            dsum: Array2::zeros((batch, 128)),
            t: 0,
        }
    }

    pub fn forward(&mut self, x: ArrayView2<'_, f32>) {
        self.d1.forward(x);
        self.d2.forward(self.d1.y.view());
        self.skip.forward(x);
        Zip::from(&mut self.sum).and(&self.d2.y).and(&self.skip.y).for_each(|s, &a, &b| *s = a + b);
        self.head_a.forward(self.sum.view());
        self.head_b.forward(self.sum.view());
    }

    pub fn train_step(&mut self, x: ArrayView2<'_, f32>, ya: ArrayView2<'_, f32>, yb: ArrayView2<'_, f32>) {
        self.forward(x);
        fused_ce_grad(&self.head_a.y, ya, &mut self.da);
        fused_ce_grad(&self.head_b.y, yb, &mut self.db);
        self.head_a.backward(self.sum.view(), self.da.view(), true, true);
        self.head_b.backward(self.sum.view(), self.db.view(), true, true);
        Zip::from(&mut self.dsum).and(&self.head_a.dx).and(&self.head_b.dx).for_each(|s, &a, &b| *s = a + b);
        self.d2.backward(self.d1.y.view(), self.dsum.view(), false, true);
        self.skip.backward(x, self.dsum.view(), false, false);
        self.d1.backward(x, self.d2.dx.view(), false, false);
        self.t += 1;
        for d in [&mut self.d1, &mut self.d2, &mut self.skip, &mut self.head_a, &mut self.head_b] {
            d.adam(1e-3, self.t);
        }
    }
}

/// BENCH M4 (wide_mlp): x[784] → Dense512 relu = h1 → Dense512 relu = h2; Add(h1, h2) → Dense10 softmax.
pub struct WideMlp {
    h1: Dense,
    h2: Dense,
    head: Dense,
    sum: Array2<f32>,
    dp: Array2<f32>,
    dh1: Array2<f32>,
    t: i32,
}

impl WideMlp {
    pub fn new(batch: usize) -> Self {
        WideMlp {
            h1: Dense::new(784, 512, Act::Relu, batch, 1),
            h2: Dense::new(512, 512, Act::Relu, batch, 2),
            head: Dense::new(512, 10, Act::Softmax, batch, 3),
            sum: Array2::zeros((batch, 512)),
            dp: Array2::zeros((batch, 10)),
            dh1: Array2::zeros((batch, 512)),
            t: 0,
        }
    }

    pub fn forward(&mut self, x: ArrayView2<'_, f32>) -> &Array2<f32> {
        self.h1.forward(x);
        self.h2.forward(self.h1.y.view());
        Zip::from(&mut self.sum).and(&self.h1.y).and(&self.h2.y).for_each(|s, &a, &b| *s = a + b);
        self.head.forward(self.sum.view());
        &self.head.y
    }

    pub fn train_step(&mut self, x: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) {
        self.forward(x);
        fused_ce_grad(&self.head.y, y, &mut self.dp);
        self.head.backward(self.sum.view(), self.dp.view(), true, true);
        self.h2.backward(self.h1.y.view(), self.head.dx.view(), false, true);
        // h1 feeds both the Add and h2: its gradient is the sum.
        Zip::from(&mut self.dh1).and(&self.head.dx).and(&self.h2.dx).for_each(|s, &a, &b| *s = a + b);
        self.h1.backward(x, self.dh1.view(), false, false);
        self.t += 1;
        for d in [&mut self.h1, &mut self.h2, &mut self.head] {
            d.adam(1e-3, self.t);
        }
    }
}

/// BENCH M5 (siamese): a[128], b[128] → one shared Dense64 relu; Average → Dense1 sigmoid. The shared
/// layer runs once on both inputs stacked (2·batch rows), so its weight gradient is one GEMM.
pub struct Siamese {
    enc: Dense,
    head: Dense,
    stacked: Array2<f32>,
    avg: Array2<f32>,
    dp: Array2<f32>,
    denc: Array2<f32>,
    t: i32,
}

impl Siamese {
    pub fn new(batch: usize) -> Self {
        Siamese {
            enc: Dense::new(128, 64, Act::Relu, 2 * batch, 1),
            head: Dense::new(64, 1, Act::Sigmoid, batch, 2),
            stacked: Array2::zeros((2 * batch, 128)),
            avg: Array2::zeros((batch, 64)),
            dp: Array2::zeros((batch, 1)),
            denc: Array2::zeros((2 * batch, 64)),
            t: 0,
        }
    }

    pub fn forward(&mut self, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> &Array2<f32> {
        let n = a.nrows();
        self.stacked.slice_mut(s![..n, ..]).assign(&a);
        self.stacked.slice_mut(s![n.., ..]).assign(&b);
        self.enc.forward(self.stacked.view());
        let (ya, yb) = self.enc.y.view().split_at(modelc::ndarray::Axis(0), n);
        Zip::from(&mut self.avg).and(&ya).and(&yb).for_each(|s, &a, &b| *s = 0.5 * (a + b));
        self.head.forward(self.avg.view());
        &self.head.y
    }

    pub fn train_step(&mut self, a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) {
        let n = a.nrows();
        self.forward(a, b);
        fused_ce_grad(&self.head.y, y, &mut self.dp);
        self.head.backward(self.avg.view(), self.dp.view(), true, true);
        let dx = &self.head.dx;
        Zip::from(self.denc.slice_mut(s![..n, ..])).and(dx).for_each(|d, &g| *d = 0.5 * g);
        Zip::from(self.denc.slice_mut(s![n.., ..])).and(dx).for_each(|d, &g| *d = 0.5 * g);
        self.enc.backward(self.stacked.view(), self.denc.view(), false, false);
        self.t += 1;
        for d in [&mut self.enc, &mut self.head] {
            d.adam(1e-3, self.t);
        }
    }
}

/// im2col for a 3×3 "same" convolution with stride 1 over `batch` channels-last `h`×`w`×`c` images:
/// row `(n·h + y)·w + x` of `col` holds the 3×3×`c` patch centred there, (ky, kx, c) order, zeros
/// outside the image.
fn im2col_3x3_same(x: &[f32], col: &mut [f32], batch: usize, h: usize, w: usize, c: usize) {
    let patch = 9 * c;
    for (r, row) in col.chunks_exact_mut(patch).take(batch * h * w).enumerate() {
        let (n, oy, ox) = (r / (h * w), r / w % h, r % w);
        for ky in 0..3 {
            for kx in 0..3 {
                let dst = &mut row[(ky * 3 + kx) * c..(ky * 3 + kx + 1) * c];
                let (iy, ix) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                if iy < h && ix < w {
                    let at = ((n * h + iy) * w + ix) * c;
                    dst.copy_from_slice(&x[at..at + c]);
                } else {
                    dst.fill(0.0);
                }
            }
        }
    }
}

/// The adjoint of [`im2col_3x3_same`]: dx = the patches of `dcol` summed back onto the image.
fn col2im_3x3_same(dcol: &[f32], dx: &mut [f32], batch: usize, h: usize, w: usize, c: usize) {
    let patch = 9 * c;
    dx.fill(0.0);
    for (r, row) in dcol.chunks_exact(patch).take(batch * h * w).enumerate() {
        let (n, oy, ox) = (r / (h * w), r / w % h, r % w);
        for ky in 0..3 {
            for kx in 0..3 {
                let (iy, ix) = ((oy + ky).wrapping_sub(1), (ox + kx).wrapping_sub(1));
                if iy < h && ix < w {
                    let at = ((n * h + iy) * w + ix) * c;
                    let src = &row[(ky * 3 + kx) * c..(ky * 3 + kx + 1) * c];
                    dx[at..at + c].iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                }
            }
        }
    }
}

/// BENCH M3 (vision_meta): image[32,32,3] → Conv2D16 3×3 same relu → Conv2D32 3×3 same relu →
/// GlobalAveragePooling2D; meta[6] → Dense8 relu; Concatenate → Dense3 softmax; categorical CE.
///
/// Each convolution is im2col into a preallocated matrix and one [`Dense`] over all batch·32·32
/// positions (its kernel is the `[3, 3, cin, cout]` Keras kernel flattened to `[9·cin, cout]`); the
/// second one's input gradient is the im2col-matrix gradient, scattered back by col2im.
pub struct VisionMeta {
    conv1: Dense,
    conv2: Dense,
    meta: Dense,
    head: Dense,
    col1: Array2<f32>,
    col2: Array2<f32>,
    merged: Array2<f32>,
    dp: Array2<f32>,
    /// dL/d(conv2 output), batch·32·32 × 32: the pooled gradient spread over the positions.
    dy2: Array2<f32>,
    /// dL/d(conv1 output), batch·32·32 × 16.
    dy1: Array2<f32>,
    batch: usize,
    t: i32,
}

impl VisionMeta {
    const SIDE: usize = 32;

    pub fn new(batch: usize) -> Self {
        let rows = batch * Self::SIDE * Self::SIDE;
        VisionMeta {
            conv1: Dense::new(27, 16, Act::Relu, rows, 1),
            conv2: Dense::new(144, 32, Act::Relu, rows, 2),
            meta: Dense::new(6, 8, Act::Relu, batch, 3),
            head: Dense::new(40, 3, Act::Softmax, batch, 4),
            col1: Array2::zeros((rows, 27)),
            col2: Array2::zeros((rows, 144)),
            merged: Array2::zeros((batch, 40)),
            dp: Array2::zeros((batch, 3)),
            dy2: Array2::zeros((rows, 32)),
            dy1: Array2::zeros((rows, 16)),
            batch,
            t: 0,
        }
    }

    /// `image` is batch × (32·32·3), channels-last; returns the class probabilities.
    pub fn forward(&mut self, image: ArrayView2<'_, f32>, meta: ArrayView2<'_, f32>) -> &Array2<f32> {
        let (n, side) = (self.batch, Self::SIDE);
        let x = image.as_slice().expect("contiguous image");
        im2col_3x3_same(x, self.col1.as_slice_mut().expect("owned"), n, side, side, 3);
        self.conv1.forward(self.col1.view());
        let y1 = self.conv1.y.as_slice().expect("owned");
        im2col_3x3_same(y1, self.col2.as_slice_mut().expect("owned"), n, side, side, 16);
        self.conv2.forward(self.col2.view());
        // GlobalAveragePooling2D straight into the first 32 columns of the merged buffer.
        let scale = 1.0 / (side * side) as f32;
        for (mut dst, img) in self.merged.rows_mut().into_iter().zip(self.conv2.y.as_slice().expect("owned").chunks_exact(side * side * 32))
        {
            let dst = dst.as_slice_mut().expect("row");
            dst[..32].fill(0.0);
            for px in img.chunks_exact(32) {
                dst[..32].iter_mut().zip(px).for_each(|(d, &v)| *d += v);
            }
            dst[..32].iter_mut().for_each(|d| *d *= scale);
        }
        self.meta.forward(meta);
        self.merged.slice_mut(s![.., 32..]).assign(&self.meta.y);
        self.head.forward(self.merged.view());
        &self.head.y
    }

    pub fn train_step(&mut self, image: ArrayView2<'_, f32>, meta: ArrayView2<'_, f32>, y: ArrayView2<'_, f32>) {
        let side = Self::SIDE;
        self.forward(image, meta);
        fused_ce_grad(&self.head.y, y, &mut self.dp);
        self.head.backward(self.merged.view(), self.dp.view(), true, true);
        let dm = &self.head.dx;
        self.meta.backward(meta, dm.slice(s![.., 32..]), false, false);
        // The pooling's backward: every position gets dL/d(pooled) / positions.
        let scale = 1.0 / (side * side) as f32;
        for (g, img) in dm.rows().into_iter().zip(self.dy2.as_slice_mut().expect("owned").chunks_exact_mut(side * side * 32)) {
            for px in img.chunks_exact_mut(32) {
                px.iter_mut().zip(g.iter()).for_each(|(d, &g)| *d = g * scale);
            }
        }
        self.conv2.backward(self.col2.view(), self.dy2.view(), false, true);
        col2im_3x3_same(self.conv2.dx.as_slice().expect("owned"), self.dy1.as_slice_mut().expect("owned"), self.batch, side, side, 16);
        self.conv1.backward(self.col1.view(), self.dy1.view(), false, false);
        self.t += 1;
        for d in [&mut self.conv1, &mut self.conv2, &mut self.meta, &mut self.head] {
            d.adam(1e-3, self.t);
        }
    }
}
