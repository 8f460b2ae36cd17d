//! Conv1DTranspose and Conv2DTranspose (issue #19) end to end: Keras' output sizes and weight layout, a
//! forward worked out by hand, and every parameter gradient against finite differences with each option
//! ('same'/'valid', strides, `output_padding`, dilation, activations reading the pre-activation, no bias)
//! behind a convolution, so each layer's input gradient is checked too; and steady-state training steps and
//! inference calls through them allocate nothing. Keras parity is in
//! tests/vision_parity.rs.

use crate::counting_alloc;
use counting_alloc::allocations_in;
use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{Array3, Array4};
use modelc::prelude::*;

model! {
    /// Every transposed-convolution option behind a first conv; `a` feeds four of them.
    pub struct Transposed {
        input image: [3, 4, 2];
        let a = Conv2D(3, 2, padding = same, activation = tanh)(image);
        let up = Conv2DTranspose(3, 3, strides = 2, padding = same, activation = tanh)(a);
        let v = Conv2DTranspose(2, (2, 3), strides = (2, 1), output_padding = (1, 0), use_bias = false)(a);
        let d = Conv2DTranspose(2, 3, padding = same, dilation_rate = 2, activation = gelu)(a);
        let gaps = Conv2DTranspose(1, 2, strides = 3)(a);
        let s = Conv1DTranspose(2, 3, strides = 2, padding = same, output_padding = 1, activation = tanh)(Reshape((12, 3))(a));
        let merged = Concatenate()([
            Flatten()(Conv2D(2, 2, strides = 2, activation = tanh)(up)),
            Flatten()(v),
            Flatten()(d),
            Flatten()(gaps),
            Flatten()(s),
        ]);
        output out = Dense(2)(merged);
    }
}

model! {
    /// One 1D and one 2D transposed convolution on the raw input, to check values by hand.
    pub struct Tiny {
        input seq: [2, 1];
        output y = Conv1DTranspose(1, 2, strides = 2)(seq);
        output z = Conv1DTranspose(1, 3, strides = 2, padding = same, output_padding = 0, use_bias = false)(seq);
    }
}

fn assert_gradients_pass(report: modelc::gradcheck::GradCheck, params: usize) {
    assert_eq!(report.checked, params);
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn transposed_convolution_gradients_match_finite_differences() {
    let mut model = Transposed::new(11);
    let mut rng = Rng::new(12);
    let x = Array4::from_shape_fn((2, 3, 4, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &TransposedInputs { image: x.view() }, 1e-2, 2e-3, 2e-2, 13).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn transposed_convolutions_have_keras_shapes_and_weight_layout() {
    let model = Transposed::new(0);
    assert_eq!(model.param("conv2d_transpose/kernel").unwrap().shape(), &[3, 3, 3, 3]);
    assert_eq!(model.param("conv2d_transpose_1/kernel").unwrap().shape(), &[2, 3, 2, 3]);
    assert!(model.param("conv2d_transpose_1/bias").is_err());
    assert_eq!(model.param("conv1d_transpose/kernel").unwrap().shape(), &[3, 2, 3]);
    // 'same' stride 2: 6×8; 'valid' (2, 1) with output_padding (1, 0): (3 − 1)·2 + 2 + 1 = 7, 3 + 3 − 1 = 6;
    // dilated 'same': 3×4; 'valid' stride 3 > kernel 2: (3 − 1)·3 + 3 = 9, 12; 1D 'same' with
    // output_padding 1: (12 − 1)·2 + 1 + 1 = 24.
    for shape in ["(None, 6, 8, 3)", "(None, 7, 6, 2)", "(None, 3, 4, 2)", "(None, 9, 12, 1)", "(None, 24, 2)"] {
        assert!(Transposed::SUMMARY.contains(shape), "{shape} in {}", Transposed::SUMMARY);
    }
}

#[test]
fn transposed_convolution_forward_scatters_the_kernel() {
    let mut model = Tiny::new(0);
    let k2 = Array3::from_shape_vec((2, 1, 1), vec![1.0f32, 10.0]).unwrap();
    let k3 = Array3::from_shape_vec((3, 1, 1), vec![1.0f32, 10.0, 100.0]).unwrap();
    model.set_param("conv1d_transpose/kernel", k2.view().into_dyn()).unwrap();
    model.set_param("conv1d_transpose/bias", modelc::ndarray::arr1(&[0.5f32]).view().into_dyn()).unwrap();
    model.set_param("conv1d_transpose_1/kernel", k3.view().into_dyn()).unwrap();
    let x = Array3::from_shape_vec((1, 2, 1), vec![2.0, 3.0]).unwrap();
    let out = model.predict(&TinyInputs { seq: x.view() }).unwrap();
    // 'valid', stride 2, kernel 2: [2·1, 2·10, 3·1, 3·10] + 0.5.
    assert_eq!(out.y.iter().copied().collect::<Vec<_>>(), [2.5, 20.5, 3.5, 30.5]);
    // 'same' with output_padding 0: (2 − 1)·2 + 1 + 0 = 3 positions, the full scatter [2, 20, 200 + 3, 30,
    // 300] cropped by one before: [20, 203, 30].
    assert_eq!(out.z.iter().copied().collect::<Vec<_>>(), [20.0, 203.0, 30.0]);
}

#[test]
fn transposed_convolution_train_steps_and_inference_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(14);
    let x = Array4::from_shape_fn((8, 3, 4, 2), |_| rng.uniform(-1.0, 1.0));
    let y = modelc::ndarray::Array2::from_shape_fn((8, 2), |(i, k)| x[[i, 0, k, 0]]);
    let inputs = TransposedInputs { image: x.view() };
    let targets = TransposedTargets { out: y.view() };
    let mut model = Transposed::new(15);
    let mut trainer = model.compile(Adam::default(), TransposedLosses { out: Loss::MeanSquaredError }, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..10 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 steady-state training steps");
    let mut out = model.predict(&inputs).unwrap();
    let n = allocations_in(|| {
        for _ in 0..10 {
            model.predict_into(&inputs, &mut out).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 inference calls");
}
