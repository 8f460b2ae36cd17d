//! Steady-state training steps and inference calls of generated models allocate nothing: a counting global
//! allocator watches a loop of calls after warm-up. It counts only the allocations of the thread being
//! measured, so tests running in parallel do not disturb each other.

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;
#[path = "counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

#[path = "../examples/fusion/model.rs"]
mod fusion;
use fusion::{Fusion, FusionInputs, FusionLosses, FusionTargets};

model! {
    /// Every merge kind, broadcasting and a normalized Dot, two outputs and a shared layer.
    struct Merges {
        input a: [6];
        input s: [3, 6];
        layer shared = Dense(6, activation = tanh);
        let p = shared(a);
        let q = Dense(6)(a);
        let b = Add()([s, p]);
        let all = Concatenate()([Add()([p, q]), Subtract()([p, q]), Multiply()([p, q]), Average()([p, q]), Maximum()([p, q]), Minimum()([p, q]), Dot(axes = 1, normalize = true)([p, q]), Dot(axes = (2, 1))([b, shared(q)])]);
        output y = Dense(1, activation = sigmoid)(all);
        output z = Dense(2)(p);
    }
}

model! {
    /// An encoder-decoder of every recurrent cell: several results, initial states, backward through time.
    struct Recurrent {
        input src: [7, 4];
        input tgt: [5, 3];
        let (enc, h, c) = LSTM(8, return_sequences = true, return_state = true)(src);
        let dec = LSTM(8, go_backwards = true)(tgt, initial_state = [h, c]);
        let (g, hg) = GRU(6, return_state = true)(enc);
        output y = Dense(2)(Concatenate()([dec, g, hg, SimpleRNN(3)(enc)]));
    }
}

#[test]
fn recurrent_train_steps_and_predictions_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(4);
    let src = modelc::ndarray::Array3::from_shape_fn((16, 7, 4), |_| rng.uniform(-1.0, 1.0));
    let tgt = modelc::ndarray::Array3::from_shape_fn((16, 5, 3), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((16, 2), |(i, k)| src[[i, 0, k]]);
    let inputs = RecurrentInputs { src: src.view(), tgt: tgt.view() };
    let targets = RecurrentTargets { y: y.view() };
    let mut model = Recurrent::new(3);
    let mut out = model.predict(&inputs).unwrap();
    let n = allocations_in(|| {
        for _ in 0..10 {
            model.predict_into(&inputs, &mut out).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 steady-state predictions");
    let mut trainer = model.compile(Adam::default(), RecurrentLosses { y: Loss::MeanSquaredError }, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..20 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 20 steady-state training steps");
}

#[test]
fn merge_train_steps_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(2);
    let a = Array2::from_shape_fn((16, 6), |_| rng.uniform(-1.0, 1.0));
    let s = modelc::ndarray::Array3::from_shape_fn((16, 3, 6), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((16, 1), |(i, _)| f32::from(u8::from(a[[i, 0]] > 0.0)));
    let z = Array2::from_shape_fn((16, 2), |(i, k)| a[[i, k]]);
    let inputs = MergesInputs { a: a.view(), s: s.view() };
    let targets = MergesTargets { y: y.view(), z: z.view() };
    let mut model = Merges::new(3);
    let losses = MergesPerOutput { y: Loss::BinaryCrossentropy, z: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::default(), losses, &[Metric::Accuracy]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..20 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 20 steady-state training steps");
}

#[test]
fn train_steps_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(1);
    let l = Array2::from_shape_fn((32, 8), |_| rng.uniform(-1.0, 1.0));
    let r = Array2::from_shape_fn((32, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((32, 1), |(i, _)| f32::from(u8::from(l[[i, 0]] > 0.0)));
    let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
    let targets = FusionTargets { score: y.view() };
    let mut model = Fusion::new(3);
    let mut trainer = model.compile(Adam::default(), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..50 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 50 steady-state training steps");
}

#[test]
fn sample_weighted_train_steps_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(6);
    let l = Array2::from_shape_fn((32, 8), |_| rng.uniform(-1.0, 1.0));
    let r = Array2::from_shape_fn((32, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((32, 1), |(i, _)| f32::from(u8::from(l[[i, 0]] > 0.0)));
    let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
    let targets = FusionTargets { score: y.view() };
    let mut model = Fusion::new(3);
    let weighted = modelc::prelude::SampleWeight::from((0..32).map(|i| (i % 4) as f32 * 0.5).collect::<Vec<_>>());
    let mut trainer = model
        .compile(Adam::default(), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy])
        .with_weighted_metrics(fusion::FusionPerOutput { score: vec![Metric::Accuracy, Metric::Auc(AucCurve::Roc)] });
    assert_warm_calls_allocate_nothing("steady-state sample-weighted training steps", 50, || {
        trainer.train_step_weighted(&inputs, &targets, &weighted).unwrap();
    });
}

#[test]
fn inference_into_reused_outputs_allocates_nothing_after_warm_up() {
    let mut rng = Rng::new(4);
    let l = Array2::from_shape_fn((16, 8), |_| rng.uniform(-1.0, 1.0));
    let r = Array2::from_shape_fn((16, 4), |_| rng.uniform(-1.0, 1.0));
    let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
    let mut model = Fusion::new(5);
    let mut outputs = model.predict(&inputs).unwrap();
    model.predict_into(&inputs, &mut outputs).unwrap();
    let n = allocations_in(|| {
        for _ in 0..50 {
            model.predict_into(&inputs, &mut outputs).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 50 steady-state inference calls");
    assert_eq!(outputs, model.predict(&inputs).unwrap());
}

#[path = "../examples/token_topics/model.rs"]
mod token_topics;

#[test]
fn normalization_embedding_and_dropout_steps_allocate_nothing_after_warm_up() {
    use token_topics::*;
    let (tokens, y) = make_data(32, 5);
    let inputs = TokenTopicsInputs { tokens: tokens.view() };
    let targets = TokenTopicsTargets { topic: y.view() };
    let mut model = TokenTopics::new(1);
    let mut trainer = model.compile(Adam::default(), TokenTopicsLosses { topic: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..20 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 20 steady-state training steps (moving statistics updated)");
    let mut out = model.predict(&inputs).unwrap();
    let n = allocations_in(|| {
        for _ in 0..20 {
            model.predict_into(&inputs, &mut out).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 20 inference calls");
}

model! {
    /// Wide enough that its GEMMs (64×256×512 and up, at least 8 M multiply-adds) are split across threads.
    struct Wide {
        input x: [256];
        let h = Dense(512, activation = relu)(x);
        output y = Dense(4, activation = softmax)(Dense(512, activation = relu)(h));
    }
}

/// With 2 threads the large GEMMs run partly on the pool's workers; the calling thread still
/// allocates nothing. (The workers are covered by model-runtime's `gemm_alloc` test, which counts
/// allocations on every thread.)
#[test]
fn train_steps_split_across_two_threads_allocate_nothing_after_warm_up() {
    modelc::set_num_threads(2);
    let mut rng = Rng::new(6);
    let x = Array2::from_shape_fn((64, 256), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((64, 4), |(i, k)| f32::from(u8::from(i % 4 == k)));
    let inputs = WideInputs { x: x.view() };
    let targets = WideTargets { y: y.view() };
    let mut model = Wide::new(7);
    let mut trainer = model.compile(Adam::default(), WideLosses { y: Loss::CategoricalCrossentropy }, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..10 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 steady-state training steps on 2 threads");
}

model! {
    /// A 3×3 convolution over 64 channels: a patch of 576 values, over the direct path's 512, so
    /// im2col + GEMM, and bf16 under the policy (the product is large enough).
    struct BigPatch {
        input image: [6, 6, 64];
        let v = Conv2D(16, 3, padding = same, activation = relu)(image);
        output y = Dense(2, activation = softmax)(GlobalAveragePooling2D()(v));
    }
}

model! {
    /// Two 3×3 convolutions (direct path; the first one's input gradient is not needed) and global pooling.
    struct Convs {
        input image: [12, 12, 3];
        let v = Conv2D(8, 3, padding = same, activation = relu)(image);
        let v = Conv2D(16, 3, padding = same, activation = relu)(v);
        output y = Dense(2, activation = softmax)(GlobalAveragePooling2D()(v));
    }
}

#[test]
fn convolution_train_steps_and_inference_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(8);
    let image = modelc::ndarray::Array4::from_shape_fn((16, 12, 12, 3), |_| rng.uniform(0.0, 1.0));
    let y = Array2::from_shape_fn((16, 2), |(i, k)| f32::from(u8::from(i % 2 == k)));
    let inputs = ConvsInputs { image: image.view() };
    let targets = ConvsTargets { y: y.view() };
    let mut model = Convs::new(9);
    let mut trainer = model.compile(Adam::default(), ConvsLosses { y: Loss::CategoricalCrossentropy }, &[]);
    assert_warm_calls_allocate_nothing("steady-state convolution training steps", 10, || {
        trainer.train_step(&inputs, &targets).unwrap();
    });
    let mut out = model.predict(&inputs).unwrap();
    assert_warm_calls_allocate_nothing("convolution inference calls", 10, || model.predict_into(&inputs, &mut out).unwrap());
}

/// Reads the batch logs after every step, as a user callback would.
struct ReadsBatchLogs(f64);

impl Callback<Fusion> for ReadsBatchLogs {
    fn on_train_batch_end(&mut self, _: usize, logs: &LogsView<'_>, _: &mut Control<'_, Fusion>) -> modelc::Result<()> {
        self.0 += logs.loss().unwrap_or(0.0) + logs.metric("accuracy").unwrap_or(0.0);
        Ok(())
    }
}

model! {
    /// A transformer encoder block: causal multi-head self-attention with dropout, Add, LayerNormalization,
    /// a gelu feed-forward, a masked cross-attention, and Keras' `Attention` (concat scores with dropout,
    /// returned, and causal dot-product).
    struct Attend {
        input x: [8, 16];
        input m: [1, 8];
        let a = MultiHeadAttention(num_heads = 4, key_dim = 4, dropout = 0.1)(x, x, use_causal_mask = true);
        let h = LayerNormalization()(Add()([x, a]));
        let f = Dense(16)(Dense(32, activation = gelu)(h));
        let h = LayerNormalization()(Add()([h, f]));
        let c = MultiHeadAttention(2, 8, value_dim = 4)(h, x, attention_mask = m);
        let (d, s) = Attention(use_scale = true, score_mode = concat, dropout = 0.1)([c, h], return_attention_scores = true);
        let e = Attention()([h, x], use_causal_mask = true);
        let c = Concatenate()([c, d, e, s]);
        output y = Dense(2, activation = softmax)(GlobalAveragePooling1D()(c));
    }
}

#[test]
fn fit_with_batch_callbacks_allocates_per_epoch_not_per_step() {
    // One epoch of 8 batches and one of 16 allocate the same: the steps and the batch logs the callbacks
    // read allocate nothing once warm.
    let count = |rows: usize| {
        let mut rng = Rng::new(1);
        let l = Array2::from_shape_fn((rows, 8), |_| rng.uniform(-1.0, 1.0));
        let r = Array2::from_shape_fn((rows, 4), |_| rng.uniform(-1.0, 1.0));
        let y = Array2::from_shape_fn((rows, 1), |(i, _)| f32::from(u8::from(l[[i, 0]] > 0.0)));
        let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
        let targets = FusionTargets { score: y.view() };
        let mut model = Fusion::new(3);
        let mut trainer = model.compile(Adam::default(), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
        let fit = Fit { batch_size: 8, verbose: false, ..Fit::default() };
        let (mut reads, mut nan) = (ReadsBatchLogs(0.0), TerminateOnNaN::default());
        let n = allocations_in(|| {
            trainer.fit_with_callbacks(&inputs, &targets, None, &fit, &mut [&mut reads, &mut nan]).unwrap();
        });
        assert!(reads.0 > 0.0);
        n
    };
    // A first run takes the process's one-time initializations (environment settings, CPU features).
    count(64);
    let (short, long) = (count(64), count(128));
    assert_eq!(short, long, "{short} allocations for 8 steps, {long} for 16");
}

#[test]
fn attention_train_steps_and_inference_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(10);
    let x = modelc::ndarray::Array3::from_shape_fn((16, 8, 16), |_| rng.uniform(-1.0, 1.0));
    let m = modelc::ndarray::Array3::from_shape_fn((16, 1, 8), |(i, _, j)| f32::from(u8::from(j + i % 3 < 8)));
    let y = Array2::from_shape_fn((16, 2), |(i, k)| f32::from(u8::from(i % 2 == k)));
    let inputs = AttendInputs { x: x.view(), m: m.view() };
    let targets = AttendTargets { y: y.view() };
    let mut model = Attend::new(11);
    let mut trainer = model.compile(Adam::default(), AttendLosses { y: Loss::CategoricalCrossentropy }, &[]);
    assert_warm_calls_allocate_nothing("steady-state attention training steps", 10, || {
        trainer.train_step(&inputs, &targets).unwrap();
    });
    let mut out = model.predict(&inputs).unwrap();
    assert_warm_calls_allocate_nothing("attention inference calls", 10, || model.predict_into(&inputs, &mut out).unwrap());
}

model! {
    /// Masks (docs/masks.md): padded ids, Masking, a merge ORing both masks, masked recurrent layers and
    /// pooling, and a masked per-step output whose loss weighs its steps by the mask.
    struct Masked {
        input ids: [7] as i32;
        input x: [7, 3];
        let e = Embedding(20, 3, mask_zero = true)(ids);
        let s = LSTM(4, return_sequences = true)(Add()([e, Masking()(x)]));
        let b = Bidirectional(GRU(2, return_sequences = true))(s);
        output y = Dense(2)(GlobalAveragePooling1D()(b));
        output z = TimeDistributed(Dense(2))(s);
    }
}

#[test]
fn masked_train_steps_and_predictions_allocate_nothing_after_warm_up() {
    let mut rng = Rng::new(12);
    let ids = Array2::from_shape_fn((16, 7), |(i, t)| if t + i % 4 >= 7 { 0 } else { 1 + (i * 7 + t) as i32 % 19 });
    let x = modelc::ndarray::Array3::from_shape_fn((16, 7, 3), |(i, t, _)| if (i + t) % 5 == 0 { 0.0 } else { rng.uniform(-1.0, 1.0) });
    let y = Array2::from_shape_fn((16, 2), |(i, k)| f32::from(u8::from(i % 2 == k)));
    let z = modelc::ndarray::Array3::from_shape_fn((16, 7, 2), |(i, t, k)| (i + t + k) as f32 * 0.1);
    let inputs = MaskedInputs { ids: ids.view(), x: x.view() };
    let targets = MaskedTargets { y: y.view(), z: z.view() };
    let mut model = Masked::new(13);
    let mut trainer = model.compile(Adam::default(), MaskedLosses { y: Loss::MeanSquaredError, z: Loss::MeanAbsoluteError }, &[]);
    assert_warm_calls_allocate_nothing("steady-state masked training steps", 10, || {
        trainer.train_step(&inputs, &targets).unwrap();
    });
    let mut out = model.predict(&inputs).unwrap();
    assert_warm_calls_allocate_nothing("masked inference calls", 10, || model.predict_into(&inputs, &mut out).unwrap());
}

/// Calls `f` once to warm up (buffers grow to the batch, thread pools start), then asserts that `times`
/// more calls allocate nothing.
fn assert_warm_calls_allocate_nothing(what: &str, times: usize, mut f: impl FnMut()) {
    f();
    let n = allocations_in(|| {
        for _ in 0..times {
            f();
        }
    });
    assert_eq!(n, 0, "{n} allocations in {times} {what}");
}

/// The bf16 kernel of this CPU: AVX512_BF16 where it exists, else the portable emulation (the same
/// packing and scratch), so the check runs everywhere.
fn bf16_mode() -> modelc::Bf16Mode {
    match modelc::kernels::gemm::avx512_bf16_available() {
        true => modelc::Bf16Mode::Auto,
        false => modelc::Bf16Mode::Emulate,
    }
}

#[test]
fn mixed_bfloat16_steps_and_predictions_allocate_nothing_after_warm_up() {
    // Recurrent layers (many small products, sgemm), convolutions, and a wide Dense model on two
    // threads (large products split across the pool, the packed operands in the caller's scratch).
    let mut rng = Rng::new(4);
    let src = modelc::ndarray::Array3::from_shape_fn((16, 7, 4), |_| rng.uniform(-1.0, 1.0));
    let tgt = modelc::ndarray::Array3::from_shape_fn((16, 5, 3), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((16, 2), |(i, k)| src[[i, 0, k]]);
    let (inputs, targets) = (RecurrentInputs { src: src.view(), tgt: tgt.view() }, RecurrentTargets { y: y.view() });
    let mut model = Recurrent::new(3);
    let status = modelc::precision::set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, bf16_mode());
    assert!(status.kernel.is_some(), "{status:?}");
    let mut out = model.predict(&inputs).unwrap();
    assert_warm_calls_allocate_nothing("bf16 recurrent predictions", 10, || model.predict_into(&inputs, &mut out).unwrap());
    let mut trainer = model.compile(Adam::default(), RecurrentLosses { y: Loss::MeanSquaredError }, &[]);
    assert_warm_calls_allocate_nothing("bf16 recurrent training steps", 10, || {
        trainer.train_step(&inputs, &targets).unwrap();
    });

    // Convolutions: the im2col path with its GEMM in bf16 (one the direct path cannot take: under
    // the policy a convolution keeps the path it takes in f32).
    let image = modelc::ndarray::Array4::from_shape_fn((16, 6, 6, 64), |_| rng.uniform(0.0, 1.0));
    let y = Array2::from_shape_fn((16, 2), |(i, k)| f32::from(u8::from(i % 2 == k)));
    let (inputs, targets) = (BigPatchInputs { image: image.view() }, BigPatchTargets { y: y.view() });
    let mut model = BigPatch::new(9);
    modelc::precision::set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, bf16_mode());
    let mut out = model.predict(&inputs).unwrap();
    assert_warm_calls_allocate_nothing("bf16 convolution inference calls", 10, || model.predict_into(&inputs, &mut out).unwrap());
    let mut trainer = model.compile(Adam::default(), BigPatchLosses { y: Loss::CategoricalCrossentropy }, &[]);
    assert_warm_calls_allocate_nothing("bf16 convolution training steps", 10, || {
        trainer.train_step(&inputs, &targets).unwrap();
    });

    modelc::set_num_threads(2);
    let x = Array2::from_shape_fn((64, 256), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((64, 4), |(i, k)| f32::from(u8::from(i % 4 == k)));
    let (inputs, targets) = (WideInputs { x: x.view() }, WideTargets { y: y.view() });
    let mut model = Wide::new(7);
    modelc::precision::set_dtype_policy_with(&mut model, DTypePolicy::MixedBfloat16, bf16_mode());
    let mut trainer = model.compile(Adam::default(), WideLosses { y: Loss::CategoricalCrossentropy }, &[]);
    assert_warm_calls_allocate_nothing("bf16 training steps on 2 threads", 10, || {
        trainer.train_step(&inputs, &targets).unwrap();
    });
}
