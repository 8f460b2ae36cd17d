//! Seed pattern 3: every merge layer (Concatenate on several axes, Add, Subtract, Multiply, Average,
//! Maximum, Minimum, Dot) in compiled models: forward against an independent ndarray computation,
//! broadcasting as Keras does, and every parameter's gradient against finite differences.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3, Axis};
use modelc::prelude::*;

#[path = "../examples/merges/model.rs"]
mod model;
use model::*;

use crate::common;
use common::random;

model! {
    /// Merges of raw inputs, so the forward pass can be checked exactly.
    pub struct RawMerges {
        input a: [4];
        input b: [4];
        input c: [4];
        output add = Add()([a, b, c]);
        output sub = Subtract()([a, b]);
        output mul = Multiply()([a, b, c]);
        output avg = Average()([a, b]);
        output max = Maximum()([a, b, c]);
        output min = Minimum()([a, c]);
        output dot = Dot(axes = 1)([a, b]);
        output cos = Dot(axes = -1, normalize = true)([a, c]);
        output cat = Concatenate()([a, b]);
    }
}

model! {
    /// Keras broadcasting: size-1 dims and lower-rank operands (expanded after the batch axis).
    pub struct Broadcasts {
        input seq: [3, 4];
        input row: [1, 4];
        input vec: [4];
        input col: [3, 1];
        output sum = Add()([seq, row, vec, col]);
        output prod = Multiply()([seq, vec]);
        output rows = Concatenate(axis = 1)([seq, row]);
        output cols = Concatenate(axis = -1)([seq, col]);
    }
}

model! {
    /// Every merge between trainable branches, for the gradient check.
    pub struct AllMerges {
        input x: [5];
        input s: [3, 4];
        let p = Dense(6, activation = tanh)(x);
        let q = Dense(6, activation = tanh)(x);
        let r = Dense(6)(x);
        let added = Add()([p, q, r]);
        let diff = Subtract()([p, q]);
        let prod = Multiply()([p, q, r]);
        let mean = Average()([p, r]);
        let hi = Maximum()([p, q, r]);
        let lo = Minimum()([q, r]);
        let sim = Dot(axes = 1)([p, r]);
        let cos = Dot(axes = 1, normalize = true)([q, r]);
        let all = Concatenate()([added, diff, prod, mean, hi, lo, sim, cos]);
        output y = Dense(2)(all);
        let t = Dense(4, activation = tanh)(s);
        let u = Dense(4)(s);
        let g = Dense(4)(x);
        let tg = Add()([t, g]);
        let m = Dot(axes = (2, 2))([t, u]);
        let mt = Concatenate(axis = 1)([t, u]);
        let both = Concatenate(axis = -2)([Dense(3)(m), Dense(3)(tg)]);
        output z = Dense(1)(Concatenate(axis = 1)([both, Dense(3)(mt)]));
    }
}

fn random3(n: usize, a: usize, b: usize, seed: u64) -> Array3<f32> {
    let mut rng = Rng::new(seed);
    Array3::from_shape_fn((n, a, b), |_| rng.uniform(-1.0, 1.0))
}

fn close<D: modelc::ndarray::Dimension>(a: &modelc::ndarray::Array<f32, D>, b: &modelc::ndarray::Array<f32, D>) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}\n{a}\n{b}");
    }
}

#[test]
fn merges_compute_what_keras_computes() {
    let (a, b, c) = (random(5, 4, 1), random(5, 4, 2), random(5, 4, 3));
    let mut model = RawMerges::new(0);
    let out = model.predict(&RawMergesInputs { a: a.view(), b: b.view(), c: c.view() }).unwrap();
    close(&out.add, &(&a + &b + &c));
    close(&out.sub, &(&a - &b));
    close(&out.mul, &(&a * &b * &c));
    close(&out.avg, &((&a + &b) / 2.0));
    close(&out.max, &modelc::ndarray::Zip::from(&a).and(&b).and(&c).map_collect(|x, y, z| x.max(*y).max(*z)));
    close(&out.min, &modelc::ndarray::Zip::from(&a).and(&c).map_collect(|x, z| x.min(*z)));
    close(&out.dot, &(&a * &b).sum_axis(Axis(1)).insert_axis(Axis(1)));
    let norm = |m: &Array2<f32>| m.mapv(|v| v * v).sum_axis(Axis(1)).mapv(f32::sqrt).insert_axis(Axis(1));
    close(&out.cos, &((&a * &c).sum_axis(Axis(1)).insert_axis(Axis(1)) / (norm(&a) * norm(&c))));
    close(&out.cat, &modelc::ndarray::concatenate(Axis(1), &[a.view(), b.view()]).unwrap());
    assert_eq!(out.dot.shape(), &[5, 1], "Keras gives (None, 1) for the dot of two vectors");
}

#[test]
fn merges_broadcast_like_keras() {
    let (seq, row, col) = (random3(2, 3, 4, 4), random3(2, 1, 4, 5), random3(2, 3, 1, 6));
    let vec = random(2, 4, 7);
    let mut model = Broadcasts::new(0);
    let out = model.predict(&BroadcastsInputs { seq: seq.view(), row: row.view(), vec: vec.view(), col: col.view() }).unwrap();
    // Keras expands the lower-rank operand at axis 1: (None, 4) -> (None, 1, 4).
    let vec3 = vec.clone().insert_axis(Axis(1));
    close(&out.sum, &(&seq + &row + &vec3 + &col));
    close(&out.prod, &(&seq * &vec3));
    close(&out.rows, &modelc::ndarray::concatenate(Axis(1), &[seq.view(), row.view()]).unwrap());
    close(&out.cols, &modelc::ndarray::concatenate(Axis(2), &[seq.view(), col.view()]).unwrap());
}

#[test]
fn every_merge_passes_a_finite_difference_gradient_check() {
    let mut model = AllMerges::new(3);
    let (x, s) = (random(4, 5, 8), random3(4, 3, 4, 9));
    let report = check_gradients(&mut model, &AllMergesInputs { x: x.view(), s: s.view() }, 1e-2, 2e-3, 2e-2, 5).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{:?}", report.failures);
}

#[test]
fn merge_summary_names_the_keras_classes() {
    for kind in ["(Add)", "(Subtract)", "(Multiply)", "(Average)", "(Maximum)", "(Minimum)", "(Dot)", "(Concatenate)"] {
        assert!(AllMerges::SUMMARY.contains(kind), "{kind} missing from\n{}", AllMerges::SUMMARY);
    }
}

#[test]
fn the_merges_example_model_learns_a_product_rule() {
    let (a, b) = (random(512, 6, 11), random(512, 6, 12));
    let y = target(&a, &b);
    let mut model = Interactions::new(1);
    let mut trainer = model.compile(Adam::new(1e-2), InteractionsLosses { y: Loss::MeanSquaredError }, &[]);
    let fit = Fit { epochs: 8, verbose: false, ..Fit::default() };
    let h = trainer.fit(&InteractionsInputs { a: a.view(), b: b.view() }, &InteractionsTargets { y: y.view() }, &fit).unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[7] < loss[0] * 0.3, "{loss:?}");
    let (a, b) = (random(4, 6, 13), random(4, 6, 14));
    let mut model = Interactions::new(2);
    let report = check_gradients(&mut model, &InteractionsInputs { a: a.view(), b: b.view() }, 1e-2, 2e-3, 2e-2, 7).unwrap();
    assert!(report.skipped * 20 < report.checked, "{} of {} on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{:?}", report.failures);
}
