//! DepthwiseConv1D / DepthwiseConv2D (issue #19) compiled into models: weight names and shapes as Keras,
//! forward against a hand-computed value, and every parameter gradient against finite differences with
//! each option ('same', strided 'valid', dilated, `depth_multiplier`, with and without bias, an activation
//! whose backward reads the pre-activation), each depthwise layer's input gradient checked through a
//! convolution in front of it. Keras parity is in tests/vision_parity.rs.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{Array3, Array4};
use modelc::prelude::*;

model! {
    /// Every depthwise option behind a first convolution.
    pub struct Depthwise2d {
        input image: [7, 6, 2];
        let a = Conv2D(3, 1, activation = tanh)(image);
        let b = DepthwiseConv2D(3, padding = same, depth_multiplier = 2, activation = tanh)(a);
        let c = DepthwiseConv2D((2, 3), strides = 2, activation = gelu)(b);
        let d = DepthwiseConv2D(2, dilation_rate = 2, use_bias = false)(a);
        output out = Dense(2)(Concatenate()([Flatten()(c), GlobalAveragePooling2D()(d)]));
    }
}

model! {
    /// DepthwiseConv1D on a sequence.
    pub struct Depthwise1d {
        input seq: [9, 2];
        let a = Conv1D(2, 1, activation = tanh)(seq);
        let b = DepthwiseConv1D(3, padding = same, depth_multiplier = 3, activation = tanh)(a);
        let c = DepthwiseConv1D(2, strides = 2, use_bias = false)(b);
        let d = DepthwiseConv1D(2, dilation_rate = 3, depth_multiplier = 2)(a);
        output out = Dense(2)(Concatenate()([Flatten()(c), Flatten()(d)]));
    }
}

model! {
    /// One depthwise layer with known weights.
    pub struct OneDepthwise {
        input x: [3, 1, 2];
        output y = DepthwiseConv1D(2, depth_multiplier = 2)(Reshape((3, 2))(x));
    }
}

fn assert_gradients_pass(report: modelc::gradcheck::GradCheck, params: usize) {
    assert_eq!(report.checked, params);
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn depthwise_weights_have_keras_names_and_layouts() {
    let model = Depthwise2d::new(1);
    assert_eq!(model.param("depthwise_conv2d/kernel").unwrap().shape(), &[3, 3, 3, 2]);
    assert_eq!(model.param("depthwise_conv2d/bias").unwrap().shape(), &[6]);
    assert_eq!(model.param("depthwise_conv2d_1/kernel").unwrap().shape(), &[2, 3, 6, 1]);
    assert_eq!(model.param("depthwise_conv2d_2/kernel").unwrap().shape(), &[2, 2, 3, 1]);
    assert!(model.param("depthwise_conv2d_2/bias").is_err());
    for s in ["(None, 7, 6, 6)", "(None, 3, 2, 6)", "(None, 5, 4, 3)"] {
        assert!(Depthwise2d::SUMMARY.contains(s), "{s} in {}", Depthwise2d::SUMMARY);
    }
    let model = Depthwise1d::new(1);
    assert_eq!(model.param("depthwise_conv1d/kernel").unwrap().shape(), &[3, 2, 3]);
    assert_eq!(model.param("depthwise_conv1d_2/kernel").unwrap().shape(), &[2, 2, 2]);
}

#[test]
fn depthwise_output_channels_are_channel_times_multiplier_plus_m() {
    let mut model = OneDepthwise::new(0);
    // kernel [k = 2, c = 2, m = 2]: k0 = [[1, 2], [3, 4]], k1 = [[10, 20], [30, 40]]; bias [0.5, 0, 0, -1].
    let kernel = Array3::from_shape_vec((2, 2, 2), vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0]).unwrap();
    model.set_param("depthwise_conv1d/kernel", kernel.view()).unwrap();
    model.set_param("depthwise_conv1d/bias", modelc::ndarray::arr1(&[0.5, 0.0, 0.0, -1.0]).view()).unwrap();
    // Steps (channel 0, channel 1): (1, 2), (3, 4), (5, 6).
    let x = Array4::from_shape_vec((1, 3, 1, 2), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let y = model.predict(&OneDepthwiseInputs { x: x.view() }).unwrap().y;
    assert_eq!(y.shape(), &[1, 2, 4]);
    // Output step 0: channel 0 -> 1·1 + 3·10 (+0.5), 1·2 + 3·20; channel 1 -> 2·3 + 4·30, 2·4 + 4·40 (−1).
    let want = [31.5, 62.0, 126.0, 167.0, 3.0 + 50.0 + 0.5, 6.0 + 100.0, 12.0 + 180.0, 16.0 + 240.0 - 1.0];
    for (a, e) in y.iter().zip(want) {
        assert!((a - e).abs() < 1e-4, "{y:?} vs {want:?}");
    }
}

#[test]
fn depthwise2d_gradients_match_finite_differences() {
    let mut model = Depthwise2d::new(7);
    let mut rng = Rng::new(2);
    let x = Array4::from_shape_fn((2, 7, 6, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &Depthwise2dInputs { image: x.view() }, 1e-2, 2e-3, 2e-2, 5).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn depthwise1d_gradients_match_finite_differences() {
    let mut model = Depthwise1d::new(8);
    let mut rng = Rng::new(3);
    let x = Array3::from_shape_fn((3, 9, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &Depthwise1dInputs { seq: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_gradients_pass(report, model.count_params());
}
