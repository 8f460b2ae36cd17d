//! The runtime computes with subnormals flushed to zero (FTZ + DAZ), as TensorFlow and JAX do on CPU,
//! so a step on subnormal-laden state does the same work as on fresh state: the subnormals are read
//! as zero instead of taking the CPU's slow path. These tests check the mode itself, not time (the
//! `subnormal` bench times it): inside every entry point the values are flushed, the optimizer step
//! runs flushed, the caller's mode comes back unchanged, and the opt-out keeps subnormals.
//!
//! One test function only: it toggles the process-wide setting, which parallel tests would see.

use modelc::fpenv::flushing_now;
use modelc::ndarray::Array2;
use modelc::optim::Optimizer;
use modelc::prelude::*;
use modelc::spec::ParamSpec;

model! {
    /// One linear layer: its outputs are its parameters' products, nothing hides a subnormal.
    struct Probe {
        input x: [8];
        output y = Dense(4)(x);
    }
}

/// A subnormal small enough that sums of a few stay subnormal.
const SUB: f32 = 1e-42;

/// An optimizer that records whether its step ran with subnormals flushed, and changes nothing.
#[derive(Default)]
struct ModeProbe {
    flushed: Vec<bool>,
}

impl Optimizer for ModeProbe {
    fn step(&mut self, _params: &mut [f32], grads: &[f32], _specs: &[ParamSpec]) {
        // A subnormal gradient read as zero is the mode at work, not only its bits.
        let read_as_zero = (std::hint::black_box(SUB) * std::hint::black_box(1.0f32)).to_bits() == 0;
        assert!(!grads.is_empty());
        self.flushed.push(flushing_now() && read_as_zero);
    }
    fn learning_rate(&self) -> f32 {
        0.0
    }
    fn set_learning_rate(&mut self, _lr: f32) {}
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn entry_points_flush_subnormals_restore_the_callers_mode_and_can_be_turned_off() {
    assert!(SUB.is_subnormal() && (8.0 * SUB + SUB).is_subnormal());
    let x = Array2::<f32>::ones((2, 8));
    let inputs = ProbeInputs { x: x.view() };
    let laden = Array2::from_elem((2, 4), SUB);
    let zeros = Array2::<f32>::zeros((2, 4));
    let targets = ProbeTargets { y: zeros.view() };
    let mut model = Probe::new(0);
    // Subnormal-laden state: every weight and bias.
    model.params_mut().fill(SUB);
    assert!(modelc::flush_denormals(), "on by default");
    assert!(!flushing_now(), "the test thread starts in the default mode");

    // predict, predict_into and forward read the subnormal weights as zero: exact zeros out.
    let out = model.predict(&inputs).unwrap();
    assert_eq!(bits(out.y.as_slice().unwrap()), vec![0; 8]);
    let mut into = out.clone();
    model.predict_into(&inputs, &mut into).unwrap();
    assert_eq!(bits(into.y.as_slice().unwrap()), vec![0; 8]);
    let out = model.forward(&inputs, true).unwrap();
    assert_eq!(bits(out.y.as_slice().unwrap()), vec![0; 8]);
    // backward reads the subnormal output gradient as zero: every parameter gradient is zero.
    let d_out = ProbeOutputs { y: laden.clone() };
    let grads = model.backward(&d_out).unwrap();
    assert!(grads.as_slice().iter().all(|g| g.to_bits() == 0), "{:?}", grads.as_slice());
    assert!(!flushing_now(), "the caller's mode is restored on return");

    // The training step (forward, loss, backward, optimizer) runs flushed, whole: the outputs are
    // exact zeros, so is the loss against zero targets.
    let mut trainer = model.compile(ModeProbe::default(), ProbeLosses { y: Loss::MeanSquaredError }, &[]);
    let loss = trainer.train_step(&inputs, &targets).unwrap();
    assert_eq!(loss, 0.0);
    let hist = trainer.fit(&inputs, &targets, &Fit { epochs: 2, batch_size: 1, verbose: false, ..Fit::default() }).unwrap();
    assert_eq!(hist.epochs(), 2);
    assert_eq!(trainer.optimizer().flushed, vec![true; 5]);
    let logs = trainer.evaluate(&inputs, &targets, 2).unwrap();
    assert_eq!(logs.get("loss").copied(), Some(0.0));
    let out = trainer.predict(&inputs, 1).unwrap();
    assert_eq!(bits(out.y.as_slice().unwrap()), vec![0; 8]);
    assert!(!flushing_now());

    // The opt-out: gradual underflow, 8 weights and a bias of SUB sum to 9·SUB.
    modelc::set_flush_denormals(false);
    let out = trainer.predict(&inputs, 2).unwrap();
    assert_eq!(bits(out.y.as_slice().unwrap()), vec![(9.0 * SUB).to_bits(); 8]);
    trainer.train_step(&inputs, &targets).unwrap();
    assert_eq!(trainer.optimizer().flushed.last(), Some(&false));
    modelc::set_flush_denormals(true);
    assert!(!flushing_now());
}
