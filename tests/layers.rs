//! Layers for images and sequences (issue #5) end to end: Conv2D / Conv1D, windowed and global pooling,
//! Flatten and Reshape compiled into models; forward against direct loops written here, every parameter
//! gradient against finite differences (gradients of intermediate tensors flow through every kernel's
//! input gradient), Keras names, layouts and fans, and a small vision + tabular model that learns.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3, Array4, ArrayD};
use modelc::prelude::*;

model! {
    /// One convolution on the input: checked against a direct convolution.
    pub struct OneConv {
        input image: [7, 6, 2];
        output y = Conv2D(3, (3, 2), strides = 2, padding = same, activation = relu)(image);
    }
}

model! {
    /// Every 2D kernel geometry behind a first conv, so each one's input gradient is checked too.
    pub struct Vision {
        input image: [7, 6, 2];
        let a = Conv2D(3, 3, padding = same, activation = tanh)(image);
        let b = Conv2D(4, (3, 2), strides = 2, padding = same, activation = silu)(a);
        let c = Conv2D(3, 3, dilation_rate = 2, padding = same)(a);
        let d = Conv2D(2, 1, use_bias = false)(b);
        let p = AveragePooling2D(2, padding = same)(c);
        let m = MaxPooling2D(2)(b);
        let v = Conv2D(2, (2, 2), padding = valid, activation = tanh)(a);
        let merged = Concatenate()([
            GlobalAveragePooling2D()(p),
            Flatten()(m),
            GlobalMaxPooling2D()(d),
            Flatten()(AveragePooling2D((3, 2), strides = (2, 1))(v)),
        ]);
        output out = Dense(3)(merged);
    }
}

model! {
    /// The 1D layers, and Reshape between a vector and an image.
    pub struct Sequence {
        input seq: [9, 3];
        input flat: [12];
        let a = Conv1D(4, 3, strides = 2, padding = same, activation = tanh)(seq);
        let b = MaxPooling1D(2, padding = same)(a);
        let c = AveragePooling1D(2, strides = 1)(Conv1D(3, 2, dilation_rate = 2, activation = tanh)(seq));
        let img = Reshape((4, 3, -1))(Dense(24, activation = tanh)(flat));
        let e = GlobalAveragePooling2D()(Conv2D(2, 2, activation = tanh)(img));
        let merged = Concatenate()([GlobalAveragePooling1D()(b), GlobalMaxPooling1D()(c), Reshape((-1,))(a), e]);
        output out = Dense(2)(merged);
    }
}

fn random4(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut rng = Rng::new(seed);
    Array4::from_shape_fn(shape, |_| rng.uniform(-1.0, 1.0))
}

#[test]
fn conv2d_forward_matches_a_direct_convolution_with_keras_same_padding() {
    let mut model = OneConv::new(3);
    model.set_param("conv2d/bias", modelc::ndarray::arr1(&[0.1f32, -0.2, 0.3]).view()).unwrap();
    let x = random4((2, 7, 6, 2), 1);
    let y = model.predict(&OneConvInputs { image: x.view() }).unwrap().y;
    // Keras 'same' at stride 2: out = ceil(in / 2); pad_total = (out-1)*2 + k - in, the smaller half first.
    assert_eq!(y.shape(), &[2, 4, 3, 3]);
    let w: ArrayD<f32> = model.param("conv2d/kernel").unwrap().to_owned();
    assert_eq!(w.shape(), &[3, 2, 2, 3]);
    let b: ArrayD<f32> = model.param("conv2d/bias").unwrap().to_owned();
    // Height: (4-1)*2 + 3 - 7 = 2 -> 1 on top; width: (3-1)*2 + 2 - 6 = 0.
    let (pad_top, pad_left) = (1, 0);
    for n in 0..2 {
        for oy in 0..4 {
            for ox in 0..3 {
                for o in 0..3 {
                    let mut s = b[[o]];
                    for ki in 0..3 {
                        for kj in 0..2 {
                            let iy = (oy * 2 + ki) as i64 - pad_top as i64;
                            let ix = (ox * 2 + kj) as i64 - pad_left as i64;
                            if (0..7).contains(&iy) && (0..6).contains(&ix) {
                                for c in 0..2 {
                                    s += x[[n, iy as usize, ix as usize, c]] * w[[ki, kj, c, o]];
                                }
                            }
                        }
                    }
                    let got = y[[n, oy, ox, o]];
                    assert!((got - s.max(0.0)).abs() < 1e-5, "[{n},{oy},{ox},{o}]: {got} vs {}", s.max(0.0));
                }
            }
        }
    }
}

#[test]
fn conv_kernels_have_keras_names_layouts_and_glorot_fans() {
    let model = Vision::new(42);
    let k = model.param("conv2d_1/kernel").unwrap();
    assert_eq!(k.shape(), &[3, 2, 3, 4]);
    // Keras fans: fan_in = kh*kw*cin, fan_out = kh*kw*cout.
    let limit = (6.0f32 / (3.0 * 2.0 * 3.0 + 3.0 * 2.0 * 4.0)).sqrt();
    assert!(k.iter().all(|w| w.abs() <= limit) && k.iter().any(|w| w.abs() > limit / 2.0));
    assert!(model.param("conv2d_3/bias").is_err(), "use_bias = false has no bias");
    assert!(model.param("conv2d_1/bias").unwrap().iter().all(|b| *b == 0.0));
    let seq = Sequence::new(1);
    assert_eq!(seq.param("conv1d/kernel").unwrap().shape(), &[3, 3, 4]);
    assert!(Vision::SUMMARY.contains("(None, 4, 3, 4)"), "{}", Vision::SUMMARY);
    assert!(Vision::SUMMARY.contains("global_average_pooling2d"), "{}", Vision::SUMMARY);
}

#[test]
fn vision_layers_gradients_match_finite_differences() {
    let mut model = Vision::new(11);
    let x = random4((3, 7, 6, 2), 4);
    let report = check_gradients(&mut model, &VisionInputs { image: x.view() }, 1e-2, 2e-3, 2e-2, 9).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn sequence_layers_and_reshape_gradients_match_finite_differences() {
    let mut model = Sequence::new(12);
    let mut rng = Rng::new(5);
    let seq = Array3::from_shape_fn((3, 9, 3), |_| rng.uniform(-1.0, 1.0));
    let flat = Array2::from_shape_fn((3, 12), |_| rng.uniform(-1.0, 1.0));
    let inputs = SequenceInputs { seq: seq.view(), flat: flat.view() };
    let out = model.predict(&inputs).unwrap();
    assert_eq!(out.out.shape(), &[3, 2]);
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 3).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

model! {
    /// Seed pattern 7, small: a conv branch pooled and fused with a tabular branch.
    pub struct SmallVisionMeta {
        input image: [8, 8, 3];
        input meta: [4];
        let v = Conv2D(8, 3, padding = same, activation = relu)(image);
        let v = GlobalAveragePooling2D()(v);
        let m = Dense(8, activation = relu)(meta);
        output probs = Dense(3, activation = softmax)(Concatenate()([v, m]));
    }
}

#[test]
fn small_vision_meta_model_learns_which_channel_is_brightest() {
    let n = 256;
    let mut rng = Rng::new(21);
    let mut image = Array4::from_shape_fn((n, 8, 8, 3), |_| rng.uniform(0.0, 0.5));
    let meta = Array2::from_shape_fn((n, 4), |_| rng.uniform(-1.0, 1.0));
    let mut y = Array2::zeros((n, 3));
    for i in 0..n {
        let class = (rng.next_u64() % 3) as usize;
        image.slice_mut(modelc::ndarray::s![i, .., .., class]).mapv_inplace(|v| v + 0.5);
        y[[i, class]] = 1.0;
    }
    let mut model = SmallVisionMeta::new(3);
    let mut trainer = model.compile(Adam::new(1e-2), SmallVisionMetaLosses { probs: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let history = trainer
        .fit(
            &SmallVisionMetaInputs { image: image.view(), meta: meta.view() },
            &SmallVisionMetaTargets { probs: y.view() },
            &Fit { epochs: 6, verbose: false, ..Fit::default() },
        )
        .unwrap();
    let loss = history.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] * 0.6, "{loss:?}");
    assert!(history.last("accuracy").unwrap() > 0.8, "{:?}", history.get("accuracy"));
}

model! {
    /// Dropout between two dense layers.
    pub struct WithDropout {
        input x: [16];
        let h = Dense(32, activation = tanh)(x);
        let h = Dropout(0.5, seed = 3)(h);
        output y = Dense(2)(h);
    }
}

#[test]
fn dropout_is_the_identity_in_inference_and_drops_half_in_training() {
    let mut model = WithDropout::new(4);
    let mut rng = Rng::new(8);
    let x = Array2::from_shape_fn((64, 16), |_| rng.uniform(-1.0, 1.0));
    let inputs = WithDropoutInputs { x: x.view() };
    let a = model.predict(&inputs).unwrap().y;
    let b = model.predict(&inputs).unwrap().y;
    assert_eq!(a, b, "inference is deterministic");
    let t1 = model.forward(&inputs, true).unwrap().y;
    let t2 = model.forward(&inputs, true).unwrap().y;
    assert_ne!(t1, a, "training drops units");
    assert_ne!(t1, t2, "a new mask every training step");
    // Inference gradients are those of the model without dropout.
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 1).unwrap();
    assert!(report.passed(), "{:?}", report.failures);
}

#[test]
fn dropout_model_trains_with_the_mask_in_backward() {
    let mut rng = Rng::new(9);
    let x = Array2::from_shape_fn((512, 16), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((512, 2), |(i, j)| if j == 0 { x[[i, 0]] + x[[i, 1]] } else { x[[i, 2]] - x[[i, 3]] });
    let mut model = WithDropout::new(5);
    let mut trainer = model.compile(Adam::new(1e-2), WithDropoutLosses { y: Loss::MeanSquaredError }, &[]);
    let history = trainer
        .fit(&WithDropoutInputs { x: x.view() }, &WithDropoutTargets { y: y.view() }, &Fit { epochs: 6, verbose: false, ..Fit::default() })
        .unwrap();
    let loss = history.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] * 0.5, "{loss:?}");
}
