//! Keras' `mixed_bfloat16` dtype policy: outputs, gradients and a short training run against the
//! same model in f32, within bf16 tolerances; AVX512_BF16 against the portable emulation where the
//! CPU has it; and the forced fallback, which is f32 to the bit. The emulation runs on every CPU,
//! so these checks run in CI whatever the machine.
//!
//! The bound: bf16 keeps 8 significant bits (unit roundoff u = 2⁻⁸ ≈ 3.9e-3), so each product of
//! a layer is off by at most 2u·Σ|a·b| ≈ 7.8e-3 of the sum of magnitudes, and a few layers compound
//! that; the checks below allow 2e-2 of the f32 values' scale (the largest magnitude).

use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3};
use modelc::precision::set_dtype_policy_with;
use modelc::prelude::*;
use modelc::Bf16Mode;

model! {
    /// A Dense classifier: three products per forward pass, five in backward. Smooth activations:
    /// a relu's mask flips where a pre-activation lies within bf16 rounding of 0, which makes its
    /// gradient jump there (by 13% of the first layer's gradients' scale in this test), a property
    /// of the function, not an error of the products. (The relu epilogue is checked on the kernel.)
    struct Mlp {
        input x: [48];
        let h = Dense(64, activation = tanh)(x);
        let h = Dense(32, activation = tanh)(h);
        output y = Dense(4, activation = softmax)(h);
    }
}

model! {
    /// Recurrent and attention products (the sgemm entry point from other layers than Dense).
    /// Sizes large enough for the policy's threshold (`kernels::gemm::bf16_pays`): k ≥ 32.
    struct Seq {
        input s: [6, 32];
        let r = LSTM(32, return_sequences = true)(s);
        let a = MultiHeadAttention(num_heads = 2, key_dim = 16)(r, r);
        output y = Dense(3)(GlobalAveragePooling1D()(a));
    }
}

/// The kernels to check on this CPU: always the emulation, and AVX512_BF16 where it exists.
fn modes() -> Vec<Bf16Mode> {
    let mut v = vec![Bf16Mode::Emulate];
    if modelc::kernels::gemm::avx512_bf16_available() {
        v.push(Bf16Mode::Auto);
    } else {
        eprintln!("notice: no AVX512_BF16 on this CPU; only the emulation is checked");
    }
    v
}

/// Largest |a − b| over the largest |b| (the f32 values' scale).
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// ‖a − b‖ / ‖b‖.
fn l2_err(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    (d / b.iter().map(|y| y * y).sum::<f32>().max(1e-30)).sqrt()
}

fn data(rows: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((rows, 48), |_| rng.uniform(-1.0, 1.0));
    // The class is the quarter of the input's first 4 features' argmax: learnable.
    let y = Array2::from_shape_fn((rows, 4), |(i, k)| {
        let best = (0..4).max_by(|&a, &b| x[[i, a]].total_cmp(&x[[i, b]])).unwrap_or(0);
        f32::from(u8::from(best == k))
    });
    (x, y)
}

/// Outputs and the gradients of sum(outputs · w) of `model` on `x`.
fn forward_backward(model: &mut Mlp, x: &Array2<f32>) -> (Vec<f32>, Vec<f32>) {
    let inputs = MlpInputs { x: x.view() };
    let out = model.forward(&inputs, false).unwrap();
    let y = out.y.iter().copied().collect::<Vec<f32>>();
    let d = MlpOutputs { y: Array2::from_shape_fn(out.y.dim(), |(i, k)| ((i + 3 * k) % 7) as f32 - 3.0) };
    let grads = model.backward(&d).unwrap();
    (y, grads.as_slice().to_vec())
}

#[test]
fn dense_outputs_and_gradients_are_f32_within_bf16_tolerance() {
    let (x, _) = data(37, 1);
    let mut f32_model = Mlp::new(5);
    let (y32, g32) = forward_backward(&mut f32_model, &x);
    let mut results = Vec::new();
    for mode in modes() {
        let mut model = Mlp::new(5);
        let status = set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, mode);
        assert_eq!(status.effective, DTypePolicy::MixedBfloat16, "{status:?}");
        assert_eq!(model.dtype_policy(), status);
        let (y, g) = forward_backward(&mut model, &x);
        let (ey, eg) = (rel_err(&y, &y32), rel_err(&g, &g32));
        eprintln!("{mode:?}: outputs off by {ey:e}, gradients by {eg:e} of their scale, l2 {:e}", l2_err(&g, &g32));
        assert!(ey <= 2e-2 && eg <= 2e-2, "{mode:?}: outputs off by {ey:e}, gradients by {eg:e}");
        // The policy is really taken: bf16 rounding shows.
        assert!(y != y32 && g != g32, "{mode:?}: the results are f32's to the bit");
        // The weights stay f32 and untouched.
        assert_eq!(model.params(), f32_model.params());
        // predict runs under the policy too, and matches forward in inference mode.
        let p = model.predict(&MlpInputs { x: x.view() }).unwrap();
        assert_eq!(p.y.iter().copied().collect::<Vec<_>>(), y);
        results.push((y, g));
    }
    // AVX512_BF16 and the emulation compute the same sums in the same order.
    if let [(ye, ge), (yh, gh)] = &results[..] {
        let (ey, eg) = (rel_err(yh, ye), rel_err(gh, ge));
        assert!(ey <= 1e-5 && eg <= 1e-5, "AVX512_BF16 against the emulation: {ey:e}, {eg:e}");
    }
}

#[test]
fn recurrent_and_attention_outputs_are_f32_within_bf16_tolerance() {
    let mut rng = Rng::new(9);
    let s = Array3::from_shape_fn((8, 6, 32), |_| rng.uniform(-1.0, 1.0));
    let inputs = SeqInputs { s: s.view() };
    let y32 = Seq::new(2).predict(&inputs).unwrap().y.iter().copied().collect::<Vec<f32>>();
    for mode in modes() {
        let mut model = Seq::new(2);
        set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, mode);
        let y = model.predict(&inputs).unwrap().y.iter().copied().collect::<Vec<f32>>();
        let e = rel_err(&y, &y32);
        assert!(e <= 2e-2 && y != y32, "{mode:?}: off by {e:e} (bit-equal: {})", y == y32);
    }
}

#[test]
fn forced_fallback_is_f32_to_the_bit_and_says_why() {
    let (x, _) = data(19, 2);
    let (y32, g32) = forward_backward(&mut Mlp::new(8), &x);
    let mut model = Mlp::new(8);
    let status = set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, Bf16Mode::Off);
    assert_eq!((status.requested, status.effective, status.kernel), (DTypePolicy::MixedBfloat16, DTypePolicy::Float32, None));
    assert!(!status.is_effective() && status.reason.contains("off"), "{status:?}");
    assert_eq!(forward_backward(&mut model, &x), (y32, g32));
    // Back to float32 from bf16: f32 again.
    let mut model = Mlp::new(8);
    set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, Bf16Mode::Emulate);
    let status = model.set_dtype_policy(DTypePolicy::Float32);
    assert_eq!((status.effective, status.kernel), (DTypePolicy::Float32, None));
    assert_eq!(forward_backward(&mut model, &x).0, forward_backward(&mut Mlp::new(8), &x).0);
}

#[test]
fn set_dtype_policy_follows_the_cpu() {
    let mut model = Mlp::new(1);
    let status = model.set_dtype_policy("mixed_bfloat16".parse().unwrap());
    eprintln!("on this CPU: {status:?}");
    assert_eq!(status.requested, DTypePolicy::MixedBfloat16);
    match std::env::var(modelc::precision::BF16_ENV).ok().as_deref() {
        Some(_) => {} // The environment chose; `forced_fallback_is_f32_to_the_bit_and_says_why` covers Off.
        None if modelc::kernels::gemm::avx512_bf16_available() => assert!(status.is_effective(), "{status:?}"),
        None => assert!(!status.is_effective() && status.reason.contains("AVX512_BF16"), "{status:?}"),
    }
    // A clone keeps the policy, as Keras' clone_model keeps the layers' dtype policies.
    assert_eq!(model.clone().dtype_policy(), status);
}

#[test]
fn a_short_training_run_learns_as_in_f32() {
    let (x, y) = data(256, 3);
    let (xt, yt) = data(256, 4);
    let fit = Fit { epochs: 6, batch_size: 32, shuffle: false, verbose: false, ..Fit::default() };
    let run = |mode: Option<Bf16Mode>| {
        let mut model = Mlp::new(11);
        if let Some(m) = mode {
            set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, m);
        }
        let mut trainer = model.compile(Adam::new(0.01), MlpLosses { y: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
        let history = trainer.fit(&MlpInputs { x: x.view() }, &MlpTargets { y: y.view() }, &fit).unwrap();
        let logs = trainer.evaluate(&MlpInputs { x: xt.view() }, &MlpTargets { y: yt.view() }, 64).unwrap();
        let losses = history.history["loss"].clone();
        (losses, logs["accuracy"], trainer.model().params().to_vec())
    };
    let (l32, acc32, p32) = run(None);
    assert!(l32[5] < 0.6 * l32[0], "f32 does not learn: {l32:?}");
    for mode in modes() {
        let (l, acc, p) = run(Some(mode));
        eprintln!("{mode:?}: losses {l:?} against {l32:?}; accuracy {acc} against {acc32}");
        assert!(l[5] < 0.6 * l[0], "{mode:?} does not learn: {l:?}");
        assert!((l[5] - l32[5]).abs() <= 0.1 * l32[5] + 0.01, "{mode:?}: final loss {} against {}", l[5], l32[5]);
        assert!((acc - acc32).abs() <= 0.05, "{mode:?}: test accuracy {acc} against {acc32}");
        assert!(p != p32, "{mode:?}: the training was f32's to the bit");
    }
}

model! {
    /// Convolutions that run im2col + GEMM in f32 too, so bf16 under the policy: a 3×3 window over
    /// 64 channels (a patch of 576, over the direct path's 512) and a pointwise one, both with
    /// products large enough for the threshold (`kernels::gemm::bf16_pays`). (Convolutions on the
    /// direct path stay f32 under the policy: see `Small`.)
    struct Convs {
        input image: [6, 6, 64];
        let v = Conv2D(32, 3, padding = same, activation = tanh)(image);
        let v = Conv2D(32, 1, activation = tanh)(v);
        output y = Flatten()(v);
    }
}

#[test]
fn convolution_outputs_and_gradients_are_f32_within_bf16_tolerance() {
    let mut rng = Rng::new(12);
    let image = modelc::ndarray::Array4::from_shape_fn((6, 6, 6, 64), |_| rng.uniform(-1.0, 1.0));
    let inputs = ConvsInputs { image: image.view() };
    let run = |model: &mut Convs| {
        let out = model.forward(&inputs, false).unwrap();
        let d = ConvsOutputs { y: Array2::from_shape_fn(out.y.dim(), |(i, k)| ((i + 2 * k) % 5) as f32 - 2.0) };
        (out.y.iter().copied().collect::<Vec<f32>>(), model.backward(&d).unwrap().as_slice().to_vec())
    };
    let (y32, g32) = run(&mut Convs::new(4));
    for mode in modes() {
        let mut model = Convs::new(4);
        set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, mode);
        let (y, g) = run(&mut model);
        let (ey, eg) = (rel_err(&y, &y32), rel_err(&g, &g32));
        assert!(ey <= 2e-2 && eg <= 2e-2, "{mode:?}: outputs off by {ey:e}, gradients by {eg:e}");
        assert!(y != y32 && g != g32, "{mode:?}: the convolutions ran in f32");
    }
}

model! {
    /// Products that stay f32 under the policy: a convolution on its direct path (faster than
    /// im2col + bf16, see `kernels::conv`), and dense layers of 4 rows, too few for bf16
    /// (`kernels::gemm::bf16_pays`).
    struct Small {
        input image: [8, 8, 1];
        let v = Conv2D(32, 3, padding = same, activation = relu)(image);
        let v = Flatten()(v);
        output y = Dense(10, activation = softmax)(Dense(64, activation = relu)(v));
    }
}

#[test]
fn products_too_small_to_gain_run_in_f32_to_the_bit_under_the_policy() {
    let mut rng = Rng::new(21);
    let image = modelc::ndarray::Array4::from_shape_fn((4, 8, 8, 1), |_| rng.uniform(-1.0, 1.0));
    let inputs = SmallInputs { image: image.view() };
    let run = |model: &mut Small| {
        let out = model.forward(&inputs, false).unwrap();
        let d = SmallOutputs { y: Array2::from_shape_fn(out.y.dim(), |(i, k)| ((i + 2 * k) % 5) as f32 - 2.0) };
        (out.y.iter().copied().collect::<Vec<f32>>(), model.backward(&d).unwrap().as_slice().to_vec())
    };
    let (y32, g32) = run(&mut Small::new(5));
    for mode in modes() {
        let mut model = Small::new(5);
        set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, mode);
        let (y, g) = run(&mut model);
        assert!(y == y32 && g == g32, "{mode:?}: small products left f32 (outputs equal: {})", y == y32);
    }
}

model! {
    /// The model's policy as an attribute, and one layer kept in float32 (Keras: `dtype="float32"`).
    #[dtype_policy = "mixed_bfloat16"]
    struct KeptF32 {
        input x: [48];
        output y = Dense(64, activation = tanh, dtype = "float32")(x);
    }
}

model! {
    /// The same layer following the model's policy.
    #[dtype_policy = "mixed_bfloat16"]
    struct Follows {
        input x: [48];
        output y = Dense(64, activation = tanh)(x);
    }
}

#[test]
fn the_policy_attribute_sets_the_policy_and_a_float32_layer_stays_f32_to_the_bit() {
    assert_eq!(KeptF32::new(3).dtype_policy().requested, DTypePolicy::MixedBfloat16);
    assert_eq!(Follows::new(3).dtype_policy().requested, DTypePolicy::MixedBfloat16);
    let (x, _) = data(32, 8);
    let d = |rows: usize| Array2::from_shape_fn((rows, 64), |(i, k)| ((i + 3 * k) % 7) as f32 - 3.0);
    macro_rules! run {
        ($ty:ident, $inputs:ident, $outputs:ident, $mode:expr) => {{
            let mut model = $ty::new(3);
            set_dtype_policy_with(&mut model, $mode.0, $mode.1);
            let out = model.forward(&$inputs { x: x.view() }, false).unwrap();
            let y = out.y.iter().copied().collect::<Vec<f32>>();
            let g = model.backward(&$outputs { y: d(out.y.nrows()) }).unwrap().as_slice().to_vec();
            (y, g)
        }};
    }
    let f32_mode = (DTypePolicy::Float32, Bf16Mode::Auto);
    let (y32, g32) = run!(KeptF32, KeptF32Inputs, KeptF32Outputs, f32_mode);
    for mode in modes() {
        let policy = (DTypePolicy::MixedBfloat16, mode);
        let (y, g) = run!(KeptF32, KeptF32Inputs, KeptF32Outputs, policy);
        assert!(y == y32 && g == g32, "{mode:?}: the float32 layer did not compute in f32");
        let (yf, gf) = run!(Follows, FollowsInputs, FollowsOutputs, policy);
        assert!(yf != y32 && gf != g32, "{mode:?}: without `dtype`, the layer follows the policy (bf16)");
        assert!(rel_err(&yf, &y32) <= 2e-2, "{mode:?}");
    }
}
