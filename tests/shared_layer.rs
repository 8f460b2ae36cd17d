//! Seed pattern 5: one layer instance called on several tensors: one set of weights (one entry in
//! `PARAMS`), its parameter gradients summed over every call (checked by finite differences and against
//! the sum of per-call gradients computed with separate copies of the layer).

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Siamese: are two vectors near each other? One encoder for both.
    pub struct Siamese {
        input a: [12];
        input b: [12];
        layer enc = Dense(16, activation = tanh);
        let ea = enc(a);
        let eb = enc(b);
        let d = Subtract()([ea, eb]);
        let d2 = Multiply()([d, d]);
        output same = Dense(1, activation = sigmoid)(d2);
    }
}

model! {
    /// The shared layer called three times, on a sum of inputs too.
    pub struct Thrice {
        input a: [4];
        input b: [4];
        layer enc = Dense(3, activation = tanh, name = "enc");
        let s = Add()([a, b]);
        output y = Concatenate()([enc(a), enc(b), enc(s)]);
    }
}

model! {
    /// `Thrice` with three separate layers, for comparing gradients.
    pub struct Separate {
        input a: [4];
        input b: [4];
        let s = Add()([a, b]);
        output y = Concatenate()([Dense(3, activation = tanh, name = "e0")(a), Dense(3, activation = tanh, name = "e1")(b), Dense(3, activation = tanh, name = "e2")(s)]);
    }
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-1.0, 1.0))
}

/// Pairs: half near copies (label 1), half unrelated (label 0).
fn pairs(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let a = Array2::from_shape_fn((n, 12), |_| rng.uniform(-1.0, 1.0));
    let noise = Array2::from_shape_fn((n, 12), |_| rng.uniform(-0.1, 0.1));
    let other = Array2::from_shape_fn((n, 12), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(i % 2 == 0)));
    let b = Array2::from_shape_fn((n, 12), |(i, j)| if i % 2 == 0 { a[[i, j]] + noise[[i, j]] } else { other[[i, j]] });
    (a, b, y)
}

#[test]
fn a_shared_layer_has_one_set_of_weights() {
    let names: Vec<&str> = <Siamese as Network>::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(names, ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]);
    assert_eq!(Thrice::new(0).count_params(), 4 * 3 + 3);
    assert!(Thrice::SUMMARY.contains("enc[0][0]") && Thrice::SUMMARY.contains("enc[2][0]"), "{}", Thrice::SUMMARY);
}

#[test]
fn shared_parameter_gradients_are_the_sum_over_calls() {
    let (a, b) = (random(3, 4, 1), random(3, 4, 2));
    let mut shared = Thrice::new(7);
    let mut separate = Separate::new(0);
    let (k, bias) = (shared.param("enc/kernel").unwrap().to_owned(), shared.param("enc/bias").unwrap().to_owned());
    for e in ["e0", "e1", "e2"] {
        separate.set_param(&format!("{e}/kernel"), k.view()).unwrap();
        separate.set_param(&format!("{e}/bias"), bias.view()).unwrap();
    }
    let dy = random(3, 9, 3);
    shared.forward(&ThriceInputs { a: a.view(), b: b.view() }, false).unwrap();
    let g = shared.backward(&ThriceOutputs { y: dy.clone() }).unwrap();
    separate.forward(&SeparateInputs { a: a.view(), b: b.view() }, false).unwrap();
    let gs = separate.backward(&SeparateOutputs { y: dy }).unwrap();
    for suffix in ["kernel", "bias"] {
        let total = ["e0", "e1", "e2"].iter().map(|e| gs.get(&format!("{e}/{suffix}")).unwrap().to_owned()).reduce(|x, y| x + y).unwrap();
        let got = g.get(&format!("enc/{suffix}")).unwrap();
        for (x, y) in got.iter().zip(total.iter()) {
            assert!((x - y).abs() < 1e-5, "{suffix}: {x} vs {y}");
        }
    }
}

#[test]
fn siamese_learns_and_passes_a_gradient_check() {
    let (a, b, y) = pairs(512, 4);
    let mut model = Siamese::new(1);
    let mut trainer = model.compile(Adam::new(1e-2), SiameseLosses { same: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let h = trainer
        .fit(
            &SiameseInputs { a: a.view(), b: b.view() },
            &SiameseTargets { same: y.view() },
            &Fit { epochs: 8, verbose: false, ..Fit::default() },
        )
        .unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] * 0.7, "{loss:?}");
    let (a, b) = (random(5, 12, 5), random(5, 12, 6));
    let mut model = Siamese::new(2);
    let report = check_gradients(&mut model, &SiameseInputs { a: a.view(), b: b.view() }, 1e-2, 2e-3, 2e-2, 3).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{:?}", report.failures);
}
