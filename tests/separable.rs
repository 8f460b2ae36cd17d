//! SeparableConv1D / SeparableConv2D (issue #19) compiled into models: weight names and shapes as Keras,
//! forward against a hand-computed value, and every parameter gradient against finite differences with
//! each option ('same', strided 'valid', dilated, `depth_multiplier`, with and without bias, an activation
//! whose backward reads the pre-activation), each separable layer's input gradient checked through a
//! convolution in front of it. Keras parity is in tests/vision_parity.rs.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{arr1, Array3, Array4};
use modelc::prelude::*;

model! {
    /// Every separable option behind a first convolution.
    pub struct Separable2d {
        input image: [7, 6, 2];
        let a = Conv2D(3, 1, activation = tanh)(image);
        let b = SeparableConv2D(4, 3, padding = same, depth_multiplier = 2, activation = tanh)(a);
        let c = SeparableConv2D(3, (2, 3), strides = 2, activation = gelu)(b);
        let d = SeparableConv2D(2, 2, dilation_rate = 2, use_bias = false)(a);
        output out = Dense(2)(Concatenate()([Flatten()(c), GlobalAveragePooling2D()(d)]));
    }
}

model! {
    /// SeparableConv1D on a sequence.
    pub struct Separable1d {
        input seq: [9, 2];
        let a = Conv1D(2, 1, activation = tanh)(seq);
        let b = SeparableConv1D(3, 3, padding = same, depth_multiplier = 3, activation = tanh)(a);
        let c = SeparableConv1D(2, 2, strides = 2, use_bias = false)(b);
        let d = SeparableConv1D(3, 2, dilation_rate = 3, depth_multiplier = 2)(a);
        output out = Dense(2)(Concatenate()([Flatten()(c), Flatten()(d)]));
    }
}

model! {
    /// One separable layer with known weights.
    pub struct OneSeparable {
        input x: [3, 2];
        output y = SeparableConv1D(1, 2, depth_multiplier = 2)(x);
    }
}

fn assert_gradients_pass(report: modelc::gradcheck::GradCheck, params: usize) {
    assert_eq!(report.checked, params);
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn separable_weights_have_keras_names_and_layouts() {
    let model = Separable2d::new(1);
    assert_eq!(model.param("separable_conv2d/depthwise_kernel").unwrap().shape(), &[3, 3, 3, 2]);
    assert_eq!(model.param("separable_conv2d/pointwise_kernel").unwrap().shape(), &[1, 1, 6, 4]);
    assert_eq!(model.param("separable_conv2d/bias").unwrap().shape(), &[4]);
    assert_eq!(model.param("separable_conv2d_1/depthwise_kernel").unwrap().shape(), &[2, 3, 4, 1]);
    assert_eq!(model.param("separable_conv2d_2/pointwise_kernel").unwrap().shape(), &[1, 1, 3, 2]);
    assert!(model.param("separable_conv2d_2/bias").is_err());
    for s in ["(None, 7, 6, 4)", "(None, 3, 2, 3)", "(None, 5, 4, 2)"] {
        assert!(Separable2d::SUMMARY.contains(s), "{s} in {}", Separable2d::SUMMARY);
    }
    let model = Separable1d::new(1);
    assert_eq!(model.param("separable_conv1d/depthwise_kernel").unwrap().shape(), &[3, 2, 3]);
    assert_eq!(model.param("separable_conv1d/pointwise_kernel").unwrap().shape(), &[1, 6, 3]);
    assert_eq!(model.param("separable_conv1d_2/depthwise_kernel").unwrap().shape(), &[2, 2, 2]);
}

#[test]
fn separable_output_is_the_pointwise_mix_of_the_depthwise_channels() {
    let mut model = OneSeparable::new(0);
    // depthwise [k = 2, c = 2, m = 2]: k0 = [[1, 2], [3, 4]], k1 = [[10, 20], [30, 40]].
    let dw = Array3::from_shape_vec((2, 2, 2), vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]).unwrap();
    model.set_param("separable_conv1d/depthwise_kernel", dw.view()).unwrap();
    // pointwise [1, 4, 1] over the depthwise channels (c0m0, c0m1, c1m0, c1m1), bias 0.5.
    let pw = Array3::from_shape_vec((1, 4, 1), vec![1.0, -1.0, 0.5, 0.25]).unwrap();
    model.set_param("separable_conv1d/pointwise_kernel", pw.view()).unwrap();
    model.set_param("separable_conv1d/bias", arr1(&[0.5]).view()).unwrap();
    // Steps (channel 0, channel 1): (1, 2), (3, 4), (5, 6).
    let x = Array3::from_shape_vec((1, 3, 2), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let y = model.predict(&OneSeparableInputs { x: x.view() }).unwrap().y;
    assert_eq!(y.shape(), &[1, 2, 1]);
    // Step 0, depthwise: 31, 62, 126, 168; pointwise 31 − 62 + 63 + 42 + 0.5 = 74.5.
    // Step 1, depthwise: 3 + 50, 6 + 100, 12 + 180, 16 + 240; pointwise 53 − 106 + 96 + 64 + 0.5 = 107.5.
    for (a, e) in y.iter().zip([74.5, 107.5]) {
        assert!((a - e).abs() < 1e-4, "{y:?}");
    }
}

#[test]
fn separable2d_gradients_match_finite_differences() {
    let mut model = Separable2d::new(7);
    let mut rng = Rng::new(2);
    let x = Array4::from_shape_fn((2, 7, 6, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &Separable2dInputs { image: x.view() }, 1e-2, 2e-3, 2e-2, 5).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn separable1d_gradients_match_finite_differences() {
    let mut model = Separable1d::new(8);
    let mut rng = Rng::new(3);
    let x = Array3::from_shape_fn((3, 9, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &Separable1dInputs { seq: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_gradients_pass(report, model.count_params());
}
