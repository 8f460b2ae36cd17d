//! Seed pattern 2: one representation feeding several heads. Every `output` is a field of the
//! Outputs/Targets/PerOutput structs; losses, loss weights and metrics are given per output name and
//! `History` records `<output>_loss` and `<output>_<metric>`. A tensor read by several layers (the trunk)
//! gets the sum of its readers' gradients (checked by finite differences).

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// A shared trunk and three heads: a binary flag, a regression and a 3-way class.
    pub struct MultiTask {
        input x: [6];
        let trunk = Dense(24, activation = relu)(x);
        let trunk = Dense(16, activation = tanh)(trunk);
        output flag = Dense(1, activation = sigmoid)(trunk);
        output amount = Dense(1)(trunk);
        output class = Dense(3, activation = softmax)(Dense(8, activation = relu)(trunk));
    }
}

struct Data {
    x: Array2<f32>,
    flag: Array2<f32>,
    amount: Array2<f32>,
    class: Array2<f32>,
}

fn data(n: usize, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let flag = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] + x[[i, 1]] > 0.0)));
    let amount = Array2::from_shape_fn((n, 1), |(i, _)| 0.5 * x[[i, 2]] - x[[i, 3]] + 0.25);
    let class = Array2::from_shape_fn((n, 3), |(i, k)| {
        let c = if x[[i, 4]] > 0.3 {
            0
        } else if x[[i, 5]] > 0.0 {
            1
        } else {
            2
        };
        f32::from(u8::from(c == k))
    });
    Data { x, flag, amount, class }
}

#[test]
fn every_output_is_a_named_field_with_its_own_loss_weight_and_metrics() {
    let d = data(600, 1);
    let mut model = MultiTask::new(3);
    let losses = MultiTaskLosses { flag: Loss::BinaryCrossentropy, amount: Loss::MeanSquaredError, class: Loss::CategoricalCrossentropy };
    let mut trainer = model
        .compile(Adam::new(1e-2), losses, &[])
        .with_loss_weights(MultiTaskPerOutput { flag: 1.0, amount: 0.5, class: 2.0 })
        .with_metrics(MultiTaskPerOutput {
            flag: vec![Metric::Accuracy],
            amount: vec![Metric::MeanAbsoluteError],
            class: vec![Metric::Accuracy],
        });
    let inputs = MultiTaskInputs { x: d.x.view() };
    let targets = MultiTaskTargets { flag: d.flag.view(), amount: d.amount.view(), class: d.class.view() };
    let h = trainer.fit(&inputs, &targets, &Fit { epochs: 8, verbose: false, ..Fit::default() }).unwrap();
    let keys: Vec<&str> = h.keys().collect();
    assert_eq!(keys, ["amount_loss", "amount_mean_absolute_error", "class_accuracy", "class_loss", "flag_accuracy", "flag_loss", "loss"]);
    for k in &keys {
        assert_eq!(h.get(k).unwrap().len(), 8, "{k}");
    }
    // The total is the weighted sum of the per-output losses (each a mean over the same samples).
    for e in 0..8 {
        let at = |k: &str| h.get(k).unwrap()[e];
        let total = at("flag_loss") + 0.5 * at("amount_loss") + 2.0 * at("class_loss");
        assert!((at("loss") - total).abs() < 1e-3 * total.max(1.0), "epoch {e}: {} vs {total}", at("loss"));
    }
    for k in ["loss", "flag_loss", "amount_loss", "class_loss"] {
        let v = h.get(k).unwrap();
        assert!(v[7] < v[0] * 0.7, "{k}: {v:?}");
    }
    assert!(h.last("flag_accuracy").unwrap() > 0.85, "{:?}", h.get("flag_accuracy"));
    assert!(h.last("class_accuracy").unwrap() > 0.75, "{:?}", h.get("class_accuracy"));
    let out = model.predict(&inputs).unwrap();
    assert_eq!((out.flag.shape(), out.amount.shape(), out.class.shape()), (&[600, 1][..], &[600, 1][..], &[600, 3][..]));
}

#[test]
fn the_trunk_sums_the_gradients_of_its_three_readers() {
    let d = data(5, 2);
    let mut model = MultiTask::new(4);
    let report = check_gradients(&mut model, &MultiTaskInputs { x: d.x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{:?}", report.failures);
}
