//! Seed pattern 5: one layer instance called on several tensors: one set of weights (one entry in
//! `PARAMS`), its parameter gradients summed over every call (checked by finite differences and against
//! the sum of per-call gradients computed with separate copies of the layer).

use modelc::gradcheck::check_gradients;
use modelc::prelude::*;

#[path = "../examples/shared_layer/model.rs"]
mod model;
use model::*;

use crate::common;
use common::random;

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

model! {
    /// A shared layer whose calls surround another layer's, beside a branch: the order in which the
    /// parameter gradients become final is not the order of the parameters.
    pub struct Hooked {
        input a: [4];
        layer enc = Dense(4, activation = tanh, name = "enc");
        let h = enc(Dense(4, name = "mid")(enc(a)));
        let side = Dense(2, name = "side")(a);
        output y = Dense(3, name = "head")(Concatenate()([h, side]));
    }
}

/// What the data-parallel sum overlapping backward relies on (`Fit::overlap_buckets`): backward reports
/// every layer's parameter gradients once, in `BACKWARD_READY`'s order, and only once they are final
/// (a shared layer's after its last call's backward step).
#[test]
fn backward_reports_each_layer_s_gradients_once_final_in_backward_ready_order() {
    let mut m = Hooked::new(3);
    m.forward(&HookedInputs { a: random(5, 4, 4).view() }, true).unwrap();
    let mut reported = Vec::new();
    let g = modelc::ops::backward_hooked(&mut m, &HookedOutputs { y: random(5, 3, 5) }, &mut |slice, offset| {
        reported.push((offset, slice.to_vec()))
    })
    .unwrap();
    let ranges: Vec<(usize, usize)> = reported.iter().map(|(o, v)| (*o, v.len())).collect();
    assert_eq!(ranges, <Hooked as Network>::BACKWARD_READY);
    let mut covered = vec![0; <Hooked as Network>::PARAM_COUNT];
    for &(o, n) in &ranges {
        covered[o..o + n].iter_mut().for_each(|c| *c += 1);
    }
    assert!(covered.iter().all(|&c| c == 1), "every parameter reported once: {ranges:?}");
    for (o, v) in &reported {
        let last = &g.as_slice()[*o..*o + v.len()];
        assert!(last.iter().zip(v).all(|(x, y)| x.to_bits() == y.to_bits()), "the range at {o} changed after it was reported");
    }
    let enc = <Hooked as Network>::PARAMS.iter().find(|p| p.name == "enc/kernel").unwrap().offset;
    let head = <Hooked as Network>::PARAMS.iter().find(|p| p.name == "head/kernel").unwrap().offset;
    assert_eq!((ranges[0].0, ranges[ranges.len() - 1].0), (head, enc), "the head first, the shared layer last: {ranges:?}");
}
