//! Seed pattern 4: skip connections, a residual `Add` of a block's input and output, twice; the
//! block input is read by two layers and gets both gradients.

use modelc::gradcheck::check_gradients;
use modelc::prelude::*;

#[path = "../examples/residual/model.rs"]
mod model;
use model::*;

#[test]
fn residual_blocks_learn_their_rule() {
    let (x, y) = data(512, 1);
    let mut model = ResNet::new(2);
    let mut trainer = model.compile(Adam::new(1e-2), ResNetLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let h = trainer
        .fit(&ResNetInputs { x: x.view() }, &ResNetTargets { y: y.view() }, &Fit { epochs: 8, verbose: false, ..Fit::default() })
        .unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] * 0.7, "{loss:?}");
}

#[test]
fn residual_blocks_pass_a_gradient_check() {
    let (x, _) = data(5, 3);
    let mut model = ResNet::new(5);
    let report = check_gradients(&mut model, &ResNetInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 2).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{:?}", report.failures);
}
