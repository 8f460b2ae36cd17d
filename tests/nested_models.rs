//! Seed pattern 6: models made by `model!` used as layers, in the same invocation, in another invocation and in
//! another module; parameters nest under the layer name; a submodel called twice shares its weights.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

mod towers {
    use modelc::prelude::*;

    model! {
        /// A small tower defined in another module.
        pub struct Tower {
            input x: [6];
            let h = Dense(5, activation = tanh)(x);
            output y = Dense(4, activation = tanh)(h);
        }
    }
}

model! {
    /// Defined in its own invocation.
    pub struct Head {
        input z: [8];
        output p = Dense(1, activation = sigmoid)(z);
    }
}

model! {
    /// Two inputs through one shared tower (siamese), a per-input tower of the same type, merged, scored.
    pub struct Combined {
        input a: [6];
        input b: [6];
        layer shared = towers::Tower;
        let ta = shared(a);
        let tb = shared(b);
        let merged = Concatenate()([ta, tb]);
        layer head = Head;
        output score = head(merged);
    }
}

model! {
    /// Both defined in this invocation.
    pub struct Inner {
        input v: [3];
        output w = Dense(2)(v);
    }

    pub struct Outer {
        input v: [3];
        layer inner = Inner;
        output w = Dense(1)(inner(v));
    }
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-1.0, 1.0))
}

#[test]
fn nested_parameters_are_named_under_the_layer() {
    let names: Vec<&str> = <Combined as Network>::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "shared/dense/kernel",
            "shared/dense/bias",
            "shared/dense_1/kernel",
            "shared/dense_1/bias",
            "head/dense/kernel",
            "head/dense/bias"
        ]
    );
    let names: Vec<&str> = <Outer as Network>::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(names, ["inner/dense/kernel", "inner/dense/bias", "dense/kernel", "dense/bias"]);
}

#[test]
fn a_submodel_called_twice_computes_with_the_same_weights() {
    let mut model = Combined::new(5);
    let a = random(3, 6, 1);
    let out1 = model.predict(&CombinedInputs { a: a.view(), b: a.view() }).unwrap();
    // Same input on both sides: with one set of weights the two halves of the merge agree, so swapping changes nothing.
    let b = random(3, 6, 2);
    let ab = model.predict(&CombinedInputs { a: a.view(), b: b.view() }).unwrap();
    let ba = model.predict(&CombinedInputs { a: b.view(), b: a.view() }).unwrap();
    assert_eq!(out1.score.shape(), &[3, 1]);
    assert_ne!(ab.score, ba.score, "the head sees the towers' outputs in order, so order matters");
}

#[test]
fn nested_models_pass_a_finite_difference_gradient_check() {
    let mut model = Combined::new(7);
    let (a, b) = (random(5, 6, 3), random(5, 6, 4));
    let report = check_gradients(&mut model, &CombinedInputs { a: a.view(), b: b.view() }, 1e-2, 2e-3, 2e-2, 3).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{:?}", report.failures);
    let mut model = Outer::new(1);
    let v = random(4, 3, 5);
    let report = check_gradients(&mut model, &OuterInputs { v: v.view() }, 1e-2, 2e-3, 2e-2, 3).unwrap();
    assert!(report.passed(), "{:?}", report.failures);
}
