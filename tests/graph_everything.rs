//! Issue #3 done-when: three inputs, two outputs, a shared layer used three times, a nested model (used
//! twice), and every merge type (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot,
//! one of them broadcasting) compile, train (the loss falls) and pass a finite-difference gradient check.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3};
use modelc::prelude::*;

model! {
    /// A small encoder, used as a layer below.
    pub struct Encoder {
        input v: [6];
        let h = Dense(8, activation = tanh)(v);
        output e = Dense(6, activation = tanh)(h);
    }

    /// The whole functional graph.
    pub struct Everything {
        input a: [6];
        input b: [6];
        input c: [4, 6];
        layer shared = Dense(6, activation = tanh);
        layer enc = Encoder;
        let sa = shared(a);
        let sb = shared(b);
        let sab = shared(Average()([a, b]));
        let ea = enc(a);
        let eb = enc(sb);
        let added = Add()([sa, ea]);
        let diff = Subtract()([sb, eb]);
        let prod = Multiply()([sa, sb, sab]);
        let hi = Maximum()([sa, sb]);
        let lo = Minimum()([ea, eb, sab]);
        let sim = Dot(axes = 1)([sa, sb]);
        let cos = Dot(axes = -1, normalize = true)([ea, eb]);
        let cs = Add()([c, sa]);
        let cd = Dot(axes = (2, 1))([cs, sab]);
        let merged = Concatenate()([added, diff, prod, hi, lo, sim, cos, cd]);
        output score = Dense(1, activation = sigmoid)(Dense(12, activation = relu)(merged));
        output value = Dense(2)(Concatenate()([Average()([added, prod]), cd]));
    }
}

struct Data {
    a: Array2<f32>,
    b: Array2<f32>,
    c: Array3<f32>,
    score: Array2<f32>,
    value: Array2<f32>,
}

fn data(n: usize, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    let a = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let b = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let c = Array3::from_shape_fn((n, 4, 6), |_| rng.uniform(-1.0, 1.0));
    let score = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(a[[i, 0]] + b[[i, 1]] - c[[i, 0, 0]] > 0.0)));
    let value = Array2::from_shape_fn((n, 2), |(i, k)| if k == 0 { a[[i, 2]] - b[[i, 3]] } else { 0.5 * c[[i, 1, 2]] });
    Data { a, b, c, score, value }
}

#[test]
fn the_full_graph_has_the_expected_structure() {
    let names: Vec<&str> = <Everything as Network>::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("dense/")).count(), 2, "one set of weights for `shared`: {names:?}");
    assert!(names.contains(&"enc/dense/kernel") && names.contains(&"enc/dense_1/bias"), "{names:?}");
    let s = Everything::SUMMARY;
    for kind in ["(Add)", "(Subtract)", "(Multiply)", "(Average)", "(Maximum)", "(Minimum)", "(Dot)", "(Concatenate)"] {
        assert!(s.contains(kind), "{kind} missing:\n{s}");
    }
    assert!(s.contains("dense[2][0]"), "the shared layer's third call appears as node 2:\n{s}");
    assert_eq!(<Everything as Network>::INPUTS.len(), 3);
    assert_eq!(<Everything as Network>::OUTPUTS.len(), 2);
}

#[test]
fn the_full_graph_trains() {
    let d = data(512, 1);
    let mut model = Everything::new(3);
    let losses = EverythingLosses { score: Loss::BinaryCrossentropy, value: Loss::MeanSquaredError };
    let mut trainer = model
        .compile(Adam::new(1e-2), losses, &[])
        .with_metrics(EverythingPerOutput { score: vec![Metric::Accuracy], value: vec![Metric::MeanAbsoluteError] });
    let inputs = EverythingInputs { a: d.a.view(), b: d.b.view(), c: d.c.view() };
    let targets = EverythingTargets { score: d.score.view(), value: d.value.view() };
    let h = trainer.fit(&inputs, &targets, &Fit { epochs: 8, verbose: false, ..Fit::default() }).unwrap();
    for k in ["loss", "score_loss", "value_loss"] {
        let v = h.get(k).unwrap();
        assert!(v[7] < v[0] * 0.7, "{k}: {v:?}");
    }
    assert!(h.last("score_accuracy").unwrap() > 0.8, "{:?}", h.get("score_accuracy"));
}

#[test]
fn the_full_graph_passes_a_finite_difference_gradient_check() {
    let d = data(4, 2);
    let mut model = Everything::new(5);
    let inputs = EverythingInputs { a: d.a.view(), b: d.b.view(), c: d.c.view() };
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 4).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} failures: {:?}", report.failures.len(), report.failures);
}
