//! Parity of the vision layers (issue #19) with Keras itself: a U-Net-like model using Rescaling,
//! ZeroPadding1D/2D, Cropping1D/2D and UpSampling1D/2D (nearest and bilinear), against the fixture written
//! by `scripts/keras_vision.py` (Keras 3, JAX backend) in the format of tests/keras_parity.rs: outputs within
//! 1e-5, the training loss, every gradient within 1e-4 relative, the weights after three Adam(1e-2) steps;
//! likewise grouped, depthwise, transposed and separable convolutions, and the two benchmark models
//! (U-Net, MobileNet-like) in small form.

use modelc::io::read_tensors;
use modelc::network::Network;
use modelc::prelude::*;

use crate::parity;
use parity::*;

model! {
    /// Down by pooling, up by nearest and bilinear upsampling, a padded-then-cropped skip, and a 1D head
    /// through ZeroPadding1D, Cropping1D and UpSampling1D (scripts/keras_vision.py, `vision_zoo`).
    struct VisionZoo {
        input image: [8, 8, 2];
        let x = Rescaling(0.5, offset = -0.25)(image);
        let c1 = Conv2D(4, 3, padding = same, activation = tanh)(x);
        let p = MaxPooling2D(2)(c1);
        let c2 = Conv2D(6, 3, activation = tanh)(ZeroPadding2D()(p));
        let up_n = UpSampling2D()(c2);
        let up_b = UpSampling2D((2, 2), interpolation = bilinear)(c2);
        let up_b = Rescaling(2.0, offset = 0.1)(up_b);
        let skip = ZeroPadding2D(((0, 1), (2, 1)))(c1);
        let skip = Cropping2D(((1, 0), (1, 2)))(skip);
        let merged = Concatenate()([up_n, up_b, skip]);
        output mask = Conv2D(1, 1, activation = sigmoid)(merged);

        let seq = Reshape((16, 6))(c2);
        let seq = ZeroPadding1D((1, 2))(seq);
        let seq = Conv1D(3, 3, activation = tanh)(seq);
        let seq = Cropping1D((2, 1))(seq);
        let seq = UpSampling1D(3)(seq);
        output aux = Dense(2)(GlobalAveragePooling1D()(seq));
    }
}

#[test]
fn vision_layers_match_keras() {
    let path = format!("{}/tests/fixtures/vision_zoo.safetensors", env!("CARGO_MANIFEST_DIR"));
    let fx = read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut model = VisionZoo::new(0);
    set_params(&mut model, &fx);
    let inputs = VisionZooInputs { image: view(&fx, "input/image") };

    let out = model.predict(&inputs).unwrap();
    assert_close("mask", out.mask.as_slice().unwrap(), get(&fx, "output/mask").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("aux", out.aux.as_slice().unwrap(), get(&fx, "output/aux").as_slice().unwrap(), 1e-5, 0.0);

    let out = model.forward(&inputs, true).unwrap();
    let (l_mask, d_mask) = loss_and_grad(Loss::BinaryCrossentropy, &out.mask.into_dyn(), get(&fx, "target/mask"));
    let (l_aux, d_aux) = loss_and_grad(Loss::MeanSquaredError, &out.aux.into_dyn(), get(&fx, "target/aux"));
    assert_close("loss", &[(l_mask + l_aux) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let d = VisionZooOutputs { mask: d_mask.into_dimensionality().unwrap(), aux: d_aux.into_dimensionality().unwrap() };
    let grads = model.backward(&d).unwrap();
    for spec in VisionZoo::PARAMS.iter().filter(|s| s.trainable) {
        let got: Vec<f32> = grads.get(spec.name).unwrap().iter().copied().collect();
        assert_close(&format!("gradient of {}", spec.name), &got, get(&fx, &format!("grad/{}", spec.name)).as_slice().unwrap(), 1e-6, 1e-4);
    }

    set_params(&mut model, &fx);
    let targets = VisionZooTargets { mask: view(&fx, "target/mask"), aux: view(&fx, "target/aux") };
    let losses = VisionZooLosses { mask: Loss::BinaryCrossentropy, aux: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    for spec in VisionZoo::PARAMS {
        let got: Vec<f32> = modelc::ops::param(&model, spec.name).unwrap().iter().copied().collect();
        let want = get(&fx, &format!("adam3/{}", spec.name));
        assert_close(&format!("{} after 3 Adam steps", spec.name), &got, want.as_slice().unwrap(), 1e-5, 1e-4);
    }
}

model! {
    /// Conv2D and Conv1D with `groups` (scripts/keras_vision.py, `grouped_conv`).
    struct GroupedConv {
        input image: [7, 6, 4];
        let x = Conv2D(6, 3, padding = same, groups = 2, activation = tanh)(image);
        let x = Conv2D(4, (2, 3), strides = 2, groups = 2, activation = gelu)(x);
        let seq = Reshape((-1, 4))(x);
        let seq = Conv1D(8, 3, padding = same, dilation_rate = 2, groups = 4, activation = tanh)(seq);
        output probs = Dense(3, activation = softmax)(GlobalAveragePooling1D()(seq));
    }
}

#[test]
fn grouped_convolutions_match_keras() {
    let path = format!("{}/tests/fixtures/grouped_conv.safetensors", env!("CARGO_MANIFEST_DIR"));
    let fx = read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut model = GroupedConv::new(0);
    set_params(&mut model, &fx);
    let inputs = GroupedConvInputs { image: view(&fx, "input/image") };

    let out = model.predict(&inputs).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 0.0);

    let out = model.forward(&inputs, true).unwrap();
    let (loss, d) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), get(&fx, "target/probs"));
    assert_close("loss", &[loss as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&GroupedConvOutputs { probs: d.into_dimensionality().unwrap() }).unwrap();
    for spec in GroupedConv::PARAMS.iter().filter(|s| s.trainable) {
        let got: Vec<f32> = grads.get(spec.name).unwrap().iter().copied().collect();
        assert_close(&format!("gradient of {}", spec.name), &got, get(&fx, &format!("grad/{}", spec.name)).as_slice().unwrap(), 1e-6, 1e-4);
    }

    set_params(&mut model, &fx);
    let targets = GroupedConvTargets { probs: view(&fx, "target/probs") };
    let mut trainer = model.compile(Adam::new(1e-2), GroupedConvLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    for spec in GroupedConv::PARAMS {
        let got: Vec<f32> = modelc::ops::param(&model, spec.name).unwrap().iter().copied().collect();
        let want = get(&fx, &format!("adam3/{}", spec.name));
        assert_close(&format!("{} after 3 Adam steps", spec.name), &got, want.as_slice().unwrap(), 1e-5, 1e-4);
    }
}

model! {
    /// A MobileNet-like block twice, and DepthwiseConv1D on a sequence (scripts/keras_vision.py, `depthwise`).
    struct DepthwiseNet {
        input image: [8, 8, 3];
        input seq: [10, 4];
        let x = DepthwiseConv2D(3, padding = same, use_bias = false)(image);
        let x = Activation(relu)(BatchNormalization()(x));
        let x = Conv2D(8, 1)(x);
        let x = DepthwiseConv2D(3, strides = 2, padding = same, depth_multiplier = 2, use_bias = false)(x);
        let x = Activation(relu)(BatchNormalization()(x));
        let x = Conv2D(8, 1)(x);
        output probs = Dense(3, activation = softmax)(GlobalAveragePooling2D()(x));
        let s = DepthwiseConv1D(3, depth_multiplier = 2, dilation_rate = 2, activation = tanh)(seq);
        output aux = Dense(2)(GlobalAveragePooling1D()(s));
    }
}

#[test]
fn depthwise_convolutions_match_keras() {
    let path = format!("{}/tests/fixtures/depthwise.safetensors", env!("CARGO_MANIFEST_DIR"));
    let fx = read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut model = DepthwiseNet::new(0);
    set_params(&mut model, &fx);
    let inputs = DepthwiseNetInputs { image: view(&fx, "input/image"), seq: view(&fx, "input/seq") };

    let out = model.predict(&inputs).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("aux", out.aux.as_slice().unwrap(), get(&fx, "output/aux").as_slice().unwrap(), 1e-5, 0.0);

    let out = model.forward(&inputs, true).unwrap();
    let (l_probs, d_probs) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), get(&fx, "target/probs"));
    let (l_aux, d_aux) = loss_and_grad(Loss::MeanSquaredError, &out.aux.into_dyn(), get(&fx, "target/aux"));
    assert_close("loss", &[(l_probs + l_aux) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let d = DepthwiseNetOutputs { probs: d_probs.into_dimensionality().unwrap(), aux: d_aux.into_dimensionality().unwrap() };
    let grads = model.backward(&d).unwrap();
    for spec in DepthwiseNet::PARAMS.iter().filter(|s| s.trainable) {
        let got: Vec<f32> = grads.get(spec.name).unwrap().iter().copied().collect();
        assert_close(&format!("gradient of {}", spec.name), &got, get(&fx, &format!("grad/{}", spec.name)).as_slice().unwrap(), 1e-6, 1e-4);
    }

    set_params(&mut model, &fx);
    let targets = DepthwiseNetTargets { probs: view(&fx, "target/probs"), aux: view(&fx, "target/aux") };
    let losses = DepthwiseNetLosses { probs: Loss::CategoricalCrossentropy, aux: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    for spec in DepthwiseNet::PARAMS {
        let got: Vec<f32> = modelc::ops::param(&model, spec.name).unwrap().iter().copied().collect();
        let want = get(&fx, &format!("adam3/{}", spec.name));
        assert_close(&format!("{} after 3 Adam steps", spec.name), &got, want.as_slice().unwrap(), 1e-5, 1e-4);
    }
}

model! {
    /// A U-Net-like up path: Conv2DTranspose (strides 2, 'same') joined to the skip, a 'valid' one with
    /// `output_padding` and no bias, a dilated one with gelu, and Conv1DTranspose on a sequence ('same' with
    /// `output_padding`, then a stride larger than the kernel) (scripts/keras_vision.py, `conv_transpose`).
    struct ConvTransposeNet {
        input image: [8, 8, 2];
        let c1 = Conv2D(4, 3, padding = same, activation = tanh)(image);
        let p = MaxPooling2D(2)(c1);
        let c2 = Conv2D(6, 3, padding = same, activation = tanh)(p);
        let u = Conv2DTranspose(4, 3, strides = 2, padding = same, activation = tanh)(c2);
        let merged = Concatenate()([u, c1]);
        output mask = Conv2D(1, 1, activation = sigmoid)(merged);
        let v = Conv2DTranspose(3, (2, 3), strides = (2, 1), output_padding = (1, 0), use_bias = false)(p);
        let d = Conv2DTranspose(2, 3, padding = same, dilation_rate = 2, activation = gelu)(c2);
        let seq = Reshape((16, 6))(c2);
        let s = Conv1DTranspose(3, 4, strides = 2, padding = same, output_padding = 1, activation = tanh)(seq);
        let s = Conv1DTranspose(2, 2, strides = 3)(s);
        let feats = Concatenate()([GlobalAveragePooling1D()(s), Flatten()(v), Flatten()(d)]);
        output aux = Dense(2)(feats);
    }
}

#[test]
fn transposed_convolutions_match_keras() {
    let path = format!("{}/tests/fixtures/conv_transpose.safetensors", env!("CARGO_MANIFEST_DIR"));
    let fx = read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut model = ConvTransposeNet::new(0);
    set_params(&mut model, &fx);
    let inputs = ConvTransposeNetInputs { image: view(&fx, "input/image") };

    let out = model.predict(&inputs).unwrap();
    assert_close("mask", out.mask.as_slice().unwrap(), get(&fx, "output/mask").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("aux", out.aux.as_slice().unwrap(), get(&fx, "output/aux").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (l_mask, d_mask) = loss_and_grad(Loss::BinaryCrossentropy, &out.mask.into_dyn(), get(&fx, "target/mask"));
    let (l_aux, d_aux) = loss_and_grad(Loss::MeanSquaredError, &out.aux.into_dyn(), get(&fx, "target/aux"));
    assert_close("loss", &[(l_mask + l_aux) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let d = ConvTransposeNetOutputs { mask: d_mask.into_dimensionality().unwrap(), aux: d_aux.into_dimensionality().unwrap() };
    let grads = model.backward(&d).unwrap();
    // The first convolution's gradient sums both heads' paths through four layers, with gradients up to
    // ~4: elements near zero there carry the f32 rounding of that scale (~1e-6), so the absolute tolerance
    // is 1e-6 of the tensor's largest gradient (at least 1e-6).
    for spec in ConvTransposeNet::PARAMS.iter().filter(|s| s.trainable) {
        let got: Vec<f32> = grads.get(spec.name).unwrap().iter().copied().collect();
        let want = get(&fx, &format!("grad/{}", spec.name));
        let scale = want.iter().fold(1.0f32, |a, v| a.max(v.abs()));
        assert_close(&format!("gradient of {}", spec.name), &got, want.as_slice().unwrap(), 1e-6 * scale, 1e-4);
    }

    set_params(&mut model, &fx);
    let targets = ConvTransposeNetTargets { mask: view(&fx, "target/mask"), aux: view(&fx, "target/aux") };
    let losses = ConvTransposeNetLosses { mask: Loss::BinaryCrossentropy, aux: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    for spec in ConvTransposeNet::PARAMS {
        let got: Vec<f32> = modelc::ops::param(&model, spec.name).unwrap().iter().copied().collect();
        let want = get(&fx, &format!("adam3/{}", spec.name));
        assert_close(&format!("{} after 3 Adam steps", spec.name), &got, want.as_slice().unwrap(), 1e-5, 1e-4);
    }
}

model! {
    /// SeparableConv2D ('same' with depth_multiplier 2; strided without bias, gelu; dilated) and
    /// SeparableConv1D (scripts/keras_vision.py, `separable`).
    struct SeparableNet {
        input image: [8, 8, 3];
        input seq: [10, 4];
        let x = SeparableConv2D(6, 3, padding = same, depth_multiplier = 2, activation = tanh)(image);
        let y = SeparableConv2D(4, (2, 3), strides = 2, use_bias = false, activation = gelu)(x);
        let z = SeparableConv2D(3, 3, dilation_rate = 2)(x);
        let feats = Concatenate()([GlobalAveragePooling2D()(y), Flatten()(z)]);
        output probs = Dense(3, activation = softmax)(feats);
        let s = SeparableConv1D(5, 3, padding = same, depth_multiplier = 2, activation = tanh)(seq);
        let s = SeparableConv1D(2, 2, strides = 2)(s);
        output aux = Dense(2)(GlobalAveragePooling1D()(s));
    }
}

#[test]
fn separable_convolutions_match_keras() {
    let path = format!("{}/tests/fixtures/separable.safetensors", env!("CARGO_MANIFEST_DIR"));
    let fx = read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut model = SeparableNet::new(0);
    set_params(&mut model, &fx);
    let inputs = SeparableNetInputs { image: view(&fx, "input/image"), seq: view(&fx, "input/seq") };

    let out = model.predict(&inputs).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("aux", out.aux.as_slice().unwrap(), get(&fx, "output/aux").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (l_probs, d_probs) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), get(&fx, "target/probs"));
    let (l_aux, d_aux) = loss_and_grad(Loss::MeanSquaredError, &out.aux.into_dyn(), get(&fx, "target/aux"));
    assert_close("loss", &[(l_probs + l_aux) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let d = SeparableNetOutputs { probs: d_probs.into_dimensionality().unwrap(), aux: d_aux.into_dimensionality().unwrap() };
    let grads = model.backward(&d).unwrap();
    check_grads_scaled::<SeparableNet>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = SeparableNetTargets { probs: view(&fx, "target/probs"), aux: view(&fx, "target/aux") };
    let losses = SeparableNetLosses { probs: Loss::CategoricalCrossentropy, aux: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

model! {
    /// The benchmark U-Net (benches/bench_models) on a 16×16 image with a quarter of the width
    /// (scripts/keras_vision.py, `unet`).
    struct SmallUNet {
        input image: [16, 16, 3];
        let c1 = Conv2D(4, 3, padding = same, activation = relu)(image);
        let c2 = Conv2D(8, 3, padding = same, activation = relu)(MaxPooling2D(2)(c1));
        let u2 = Conv2DTranspose(8, 3, strides = 2, padding = same, activation = relu)(MaxPooling2D(2)(c2));
        let u1 = Conv2DTranspose(4, 3, strides = 2, padding = same, activation = relu)(Concatenate()([u2, c2]));
        output mask = Conv2D(1, 1, activation = sigmoid)(Concatenate()([u1, c1]));
    }
}

#[test]
fn the_benchmark_unet_matches_keras() {
    let path = format!("{}/tests/fixtures/unet.safetensors", env!("CARGO_MANIFEST_DIR"));
    let fx = read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut model = SmallUNet::new(0);
    set_params(&mut model, &fx);
    let inputs = SmallUNetInputs { image: view(&fx, "input/image") };
    let out = model.predict(&inputs).unwrap();
    assert_close("mask", out.mask.as_slice().unwrap(), get(&fx, "output/mask").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (loss, d) = loss_and_grad(Loss::BinaryCrossentropy, &out.mask.into_dyn(), get(&fx, "target/mask"));
    assert_close("loss", &[loss as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&SmallUNetOutputs { mask: d.into_dimensionality().unwrap() }).unwrap();
    check_grads_scaled::<SmallUNet>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = SmallUNetTargets { mask: view(&fx, "target/mask") };
    let mut trainer = model.compile(Adam::new(1e-2), SmallUNetLosses { mask: Loss::BinaryCrossentropy }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

model! {
    /// The benchmark MobileNet-like classifier on a 16×16 image with a quarter of the width
    /// (scripts/keras_vision.py, `mobilenet`).
    struct SmallMobileNet {
        input image: [16, 16, 3];
        let x = DepthwiseConv2D(3, padding = same, use_bias = false)(image);
        let x = Conv2D(8, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        let x = DepthwiseConv2D(3, strides = 2, padding = same, use_bias = false)(x);
        let x = Conv2D(16, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        let x = DepthwiseConv2D(3, padding = same, use_bias = false)(x);
        let x = Conv2D(16, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        let x = DepthwiseConv2D(3, strides = 2, padding = same, use_bias = false)(x);
        let x = Conv2D(32, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        output probs = Dense(10, activation = softmax)(GlobalAveragePooling2D()(x));
    }
}

#[test]
fn the_benchmark_mobilenet_matches_keras() {
    let path = format!("{}/tests/fixtures/mobilenet.safetensors", env!("CARGO_MANIFEST_DIR"));
    let fx = read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut model = SmallMobileNet::new(0);
    set_params(&mut model, &fx);
    let inputs = SmallMobileNetInputs { image: view(&fx, "input/image") };
    let out = model.predict(&inputs).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (loss, d) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), get(&fx, "target/probs"));
    assert_close("loss", &[loss as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&SmallMobileNetOutputs { probs: d.into_dimensionality().unwrap() }).unwrap();
    check_grads_scaled::<SmallMobileNet>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = SmallMobileNetTargets { probs: view(&fx, "target/probs") };
    let mut trainer = model.compile(Adam::new(1e-2), SmallMobileNetLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}
