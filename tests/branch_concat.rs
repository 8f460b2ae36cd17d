//! Seed pattern 1: one input branched into parallel paths merged by Concatenate; the example's model
//! learns its rule (loss falls) and passes a finite-difference gradient check on every parameter.

use modelc::gradcheck::check_gradients;
use modelc::prelude::*;

#[path = "../examples/branch_concat/model.rs"]
mod model;
use model::*;

#[test]
fn branch_concat_learns_its_rule() {
    let (x, y) = data(512, 1);
    let mut model = Branches::new(2);
    let mut trainer = model.compile(Adam::new(1e-2), BranchesLosses { label: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let fit = Fit { epochs: 6, verbose: false, ..Fit::default() };
    let h = trainer.fit(&BranchesInputs { features: x.view() }, &BranchesTargets { label: y.view() }, &fit).unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] * 0.7, "{loss:?}");
    assert!(h.last("accuracy").unwrap() > 0.8, "{:?}", h.get("accuracy"));
}

#[test]
fn branch_concat_passes_a_gradient_check() {
    let (x, _) = data(6, 3);
    let mut model = Branches::new(4);
    let report = check_gradients(&mut model, &BranchesInputs { features: x.view() }, 1e-2, 2e-3, 2e-2, 1).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{:?}", report.failures);
}
