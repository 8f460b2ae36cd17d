//! Seed pattern 2: one representation feeding several heads. Every `output` is a field of the
//! Outputs/Targets/PerOutput structs; losses, loss weights and metrics are given per output name and
//! `History` records `<output>_loss` and `<output>_<metric>`. A tensor read by several layers (the trunk)
//! gets the sum of its readers' gradients (checked by finite differences).

use modelc::gradcheck::check_gradients;
use modelc::prelude::*;

#[path = "../examples/multitask/model.rs"]
mod model;
use model::*;

#[test]
fn every_output_is_a_named_field_with_its_own_loss_weight_and_metrics() {
    let (x, flag, amount, class) = data(600, 1);
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
    let inputs = MultiTaskInputs { x: x.view() };
    let targets = MultiTaskTargets { flag: flag.view(), amount: amount.view(), class: class.view() };
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
    let (x, ..) = data(5, 2);
    let mut model = MultiTask::new(4);
    let report = check_gradients(&mut model, &MultiTaskInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{:?}", report.failures);
}
