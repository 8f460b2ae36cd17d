//! Seed pattern 6: models made by `model!` used as layers, in the same invocation, in another invocation and in
//! another module; parameters nest under the layer name; a submodel called twice shares its weights.

use modelc::gradcheck::check_gradients;
use modelc::ndarray::Array2;
use modelc::prelude::*;

use crate::common;
use common::random;

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

// A chain across invocations and modules: `Stack` (in `chain`) uses `Block` of another invocation by
// a path written for `chain`; `Deep`, outside `chain`, uses `Stack` and so needs `Block` too.
mod chain {
    use modelc::prelude::*;

    model! {
        pub struct Block {
            input x: [4];
            output y = Dense(4, activation = tanh)(x);
        }
    }

    model! {
        pub struct Stack {
            input x: [4];
            layer first = Block;
            layer second = Block;
            output y = second(first(x));
        }
    }
}

model! {
    /// Uses a model whose own nested model comes from a third invocation in another module.
    pub struct Deep {
        input x: [4];
        layer stack = chain::Stack;
        output y = Dense(1)(stack(x));
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

model! {
    /// A "pretrained" feature extractor.
    pub struct Features {
        input x: [6];
        let h = Dense(8, activation = tanh)(x);
        output f = Dense(4, activation = tanh)(h);
    }

    /// Freezes a whole submodel and one single layer; the rest trains.
    pub struct Frozen {
        input x: [6];
        layer features = Features(trainable = false);
        let f = features(x);
        let g = Dense(4, activation = tanh, trainable = false)(x);
        let merged = Concatenate()([f, g]);
        output y = Dense(1, activation = sigmoid)(merged);
    }
}

#[test]
fn frozen_submodels_and_layers_are_not_trained_and_count_as_non_trainable() {
    let specs: Vec<(&str, bool)> = <Frozen as Network>::PARAMS.iter().map(|p| (p.name, p.trainable)).collect();
    assert_eq!(
        specs,
        [
            ("features/dense/kernel", false),
            ("features/dense/bias", false),
            ("features/dense_1/kernel", false),
            ("features/dense_1/bias", false),
            ("dense/kernel", false),
            ("dense/bias", false),
            ("dense_1/kernel", true),
            ("dense_1/bias", true),
        ]
    );
    let frozen = 6 * 8 + 8 + 8 * 4 + 4 + 6 * 4 + 4;
    assert_eq!(modelc::ops::count_params::<Frozen>(), (frozen + 9, 9, frozen));
    assert!(Frozen::SUMMARY.contains(&format!("Non-trainable params: {frozen} ")), "{}", Frozen::SUMMARY);
    assert!(Frozen::SUMMARY.contains("frozen"), "{}", Frozen::SUMMARY);

    let x = random(256, 6, 9);
    let y = Array2::from_shape_fn((256, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] > x[[i, 1]])));
    let mut model = Frozen::new(3);
    let before = model.params().to_vec();
    let mut trainer = model.compile(Adam::new(1e-2), FrozenLosses { y: Loss::BinaryCrossentropy }, &[]);
    let h = trainer
        .fit(&FrozenInputs { x: x.view() }, &FrozenTargets { y: y.view() }, &Fit { epochs: 4, verbose: false, ..Fit::default() })
        .unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[3] < loss[0], "{loss:?}");
    for spec in <Frozen as Network>::PARAMS {
        let (old, new) = (&before[spec.range()], &model.params()[spec.range()]);
        if spec.trainable {
            assert_ne!(old, new, "{} should have been trained", spec.name);
        } else {
            assert_eq!(old, new, "{} is frozen", spec.name);
        }
    }
}

#[test]
fn frozen_models_still_pass_a_gradient_check() {
    let mut model = Frozen::new(4);
    let x = random(5, 6, 10);
    let report = check_gradients(&mut model, &FrozenInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 8).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{:?}", report.failures);
}

#[test]
fn a_chain_of_invocations_across_modules_nests_every_level() {
    let names: Vec<&str> = <Deep as Network>::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "stack/first/dense/kernel",
            "stack/first/dense/bias",
            "stack/second/dense/kernel",
            "stack/second/dense/bias",
            "dense/kernel",
            "dense/bias"
        ]
    );
    let mut model = Deep::new(3);
    let x = random(5, 4, 7);
    let y = model.predict(&DeepInputs { x: x.view() }).unwrap().y;
    assert_eq!(y.shape(), &[5, 1]);
    assert!(y.iter().all(|v| v.is_finite()));
}
