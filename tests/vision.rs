//! Vision layers of issue #19 end to end: ZeroPadding1D/2D, Cropping1D/2D, UpSampling1D/2D (nearest and
//! bilinear) and Rescaling compiled into models. Forward against values worked out by hand; every parameter
//! gradient against finite differences with each new layer between a convolution and the head, so each
//! one's input gradient is checked, both as its operand's first gradient writer and as a later one; and
//! grouped convolutions (`groups` on Conv1D and Conv2D).
//! Keras parity is in tests/vision_parity.rs.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{arr3, Array3, Array4, Axis};
use modelc::prelude::*;

model! {
    /// Padding then cropping by the same margins gives the input back.
    pub struct PadCrop {
        input x: [3, 4, 2];
        output y = Cropping2D(((1, 0), (2, 1)))(ZeroPadding2D(((1, 0), (2, 1)))(x));
        output padded = ZeroPadding2D((1, 0))(x);
    }
}

model! {
    /// The 1D layers and Rescaling on a tiny sequence.
    pub struct Small1d {
        input x: [3, 1];
        output padded = ZeroPadding1D((1, 2))(x);
        output cropped = Cropping1D()(x);
        output repeated = UpSampling1D(2)(x);
        output scaled = Rescaling(2, offset = -1)(x);
    }
}

model! {
    /// UpSampling2D both ways on a 2×2 image.
    pub struct Up2d {
        input x: [2, 2, 1];
        output nearest = UpSampling2D((1, 2))(x);
        output bilinear = UpSampling2D(2, interpolation = bilinear)(x);
    }
}

model! {
    /// Every 2D layer and option behind a first conv; `a` feeds four of them, so one is its gradient's first
    /// writer and three add onto it.
    pub struct Vision2d {
        input image: [6, 5, 2];
        let a = Conv2D(3, 2, padding = same, activation = tanh)(image);
        let p = ZeroPadding2D(((1, 0), (2, 1)))(a);
        let c = Cropping2D(((1, 2), (0, 1)))(a);
        let n = UpSampling2D((2, 3))(c);
        let b = UpSampling2D(2, interpolation = bilinear)(a);
        let b3 = UpSampling2D((3, 2), interpolation = bilinear)(Conv2D(2, 1, activation = tanh)(c));
        let r = Rescaling(-1.5, offset = 0.3)(a);
        let merged = Concatenate()([
            GlobalAveragePooling2D()(Conv2D(2, 2, activation = tanh)(p)),
            Flatten()(n),
            Flatten()(MaxPooling2D(2)(b)),
            Flatten()(b3),
            GlobalMaxPooling2D()(r),
        ]);
        output out = Dense(3)(merged);
    }
}

model! {
    /// The 1D layers behind a first Conv1D.
    pub struct Vision1d {
        input seq: [7, 2];
        let a = Conv1D(3, 2, activation = tanh)(seq);
        let p = ZeroPadding1D((2, 1))(a);
        let c = Cropping1D((1, 3))(Conv1D(2, 2, activation = tanh)(p));
        let u = UpSampling1D(3)(c);
        let r = Rescaling(0.5)(UpSampling1D()(a));
        output out = Dense(2)(Concatenate()([Flatten()(u), Flatten()(r), Flatten()(ZeroPadding1D(0)(a))]));
    }
}

model! {
    /// Grouped convolutions: 'same', strided 'valid', pointwise, dilated 1D, with and without bias, and an
    /// activation whose backward reads the pre-activation (gelu).
    pub struct Grouped {
        input image: [7, 6, 4];
        let a = Conv2D(6, 3, padding = same, groups = 2, activation = tanh)(image);
        let b = Conv2D(4, (2, 3), strides = 2, groups = 2, activation = gelu)(a);
        let c = Conv2D(6, 1, groups = 3, use_bias = false)(a);
        let s = Conv1D(8, 3, padding = same, dilation_rate = 2, groups = 4, activation = tanh)(Reshape((-1, 4))(b));
        output out = Dense(2)(Concatenate()([GlobalAveragePooling1D()(s), GlobalAveragePooling2D()(c)]));
    }
}

#[test]
fn grouped_convolution_gradients_match_finite_differences() {
    let mut model = Grouped::new(9);
    assert_eq!(model.param("conv2d/kernel").unwrap().shape(), &[3, 3, 2, 6]);
    assert_eq!(model.param("conv2d_2/kernel").unwrap().shape(), &[1, 1, 2, 6]);
    assert_eq!(model.param("conv1d/kernel").unwrap().shape(), &[3, 1, 8]);
    let mut rng = Rng::new(4);
    let x = Array4::from_shape_fn((2, 7, 6, 4), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &GroupedInputs { image: x.view() }, 1e-2, 2e-3, 2e-2, 7).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn padding_then_cropping_gives_the_input_back_and_pads_with_zeros() {
    let mut rng = Rng::new(1);
    let x = Array4::from_shape_fn((2, 3, 4, 2), |_| rng.uniform(-1.0, 1.0));
    let out = PadCrop::new(0).predict(&PadCropInputs { x: x.view() }).unwrap();
    assert_eq!(out.y, x);
    assert_eq!(out.padded.shape(), &[2, 5, 4, 2]);
    assert!(out.padded.index_axis(Axis(1), 0).iter().all(|v| *v == 0.0));
    assert!(out.padded.index_axis(Axis(1), 4).iter().all(|v| *v == 0.0));
    assert_eq!(out.padded.slice(modelc::ndarray::s![.., 1..4, .., ..]), x);
}

#[test]
fn one_dimensional_layers_and_rescaling_forward() {
    let x = Array3::from_shape_vec((1, 3, 1), vec![1.0, 2.0, 3.0]).unwrap();
    let out = Small1d::new(0).predict(&Small1dInputs { x: x.view() }).unwrap();
    assert_eq!(out.padded, arr3(&[[[0.0], [1.0], [2.0], [3.0], [0.0], [0.0]]]));
    assert_eq!(out.cropped, arr3(&[[[2.0]]]));
    assert_eq!(out.repeated, arr3(&[[[1.0], [1.0], [2.0], [2.0], [3.0], [3.0]]]));
    assert_eq!(out.scaled, arr3(&[[[1.0], [3.0], [5.0]]]));
}

#[test]
fn upsampling2d_nearest_repeats_and_bilinear_interpolates_at_half_pixel_centers() {
    let x = Array4::from_shape_vec((1, 2, 2, 1), vec![0.0, 4.0, 8.0, 12.0]).unwrap();
    let out = Up2d::new(0).predict(&Up2dInputs { x: x.view() }).unwrap();
    let nearest: Vec<f32> = out.nearest.iter().copied().collect();
    assert_eq!(nearest, [0.0, 0.0, 4.0, 4.0, 8.0, 8.0, 12.0, 12.0]);
    // x = 8·row + 4·col; sampled at rows and columns (-¼ → 0), ¼, ¾, (1¼ → 1).
    let along = [0.0f32, 0.25, 0.75, 1.0];
    for (i, v) in out.bilinear.iter().enumerate() {
        let want = 8.0 * along[i / 4] + 4.0 * along[i % 4];
        assert!((v - want).abs() < 1e-6, "{i}: {v} vs {want}");
    }
}

fn assert_gradients_pass(report: modelc::gradcheck::GradCheck, params: usize) {
    assert_eq!(report.checked, params);
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn two_dimensional_vision_layers_gradients_match_finite_differences() {
    let mut model = Vision2d::new(7);
    let mut rng = Rng::new(2);
    let x = Array4::from_shape_fn((2, 6, 5, 2), |_| rng.uniform(-1.0, 1.0));
    let report = check_gradients(&mut model, &Vision2dInputs { image: x.view() }, 1e-2, 2e-3, 2e-2, 5).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn one_dimensional_vision_layers_gradients_match_finite_differences() {
    let mut model = Vision1d::new(8);
    let mut rng = Rng::new(3);
    let x = Array3::from_shape_fn((3, 7, 2), |_| rng.uniform(-1.0, 1.0));
    let out = model.predict(&Vision1dInputs { seq: x.view() }).unwrap();
    assert_eq!(out.out.shape(), &[3, 2]);
    let report = check_gradients(&mut model, &Vision1dInputs { seq: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn vision_layers_have_keras_names_shapes_and_no_weights() {
    for name in ["zero_padding2d", "cropping2d", "up_sampling2d_1", "rescaling", "(None, 12, 10, 3)", "(None, 7, 8, 3)", "(None, 9, 8, 2)"]
    {
        assert!(Vision2d::SUMMARY.contains(name), "{name} in {}", Vision2d::SUMMARY);
    }
    for name in ["zero_padding1d_1", "cropping1d", "up_sampling1d_1", "(None, 9, 3)", "(None, 12, 2)", "(None, 12, 3)"] {
        assert!(Vision1d::SUMMARY.contains(name), "{name} in {}", Vision1d::SUMMARY);
    }
    // Only the convolutions and the head have weights: 2·2·2·3 + 3, 3·2 + 2, 2·2·3·2 + 2, and Dense(3) on
    // 2 + 6·12·3 + 6·5·3 + 9·8·2 + 3 = 455 features.
    assert_eq!(Vision2d::new(0).count_params(), 27 + 8 + 26 + 455 * 3 + 3);
}
