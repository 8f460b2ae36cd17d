//! ONNX export, checked by a second runtime: every example model and models using every layer kind are
//! exported with `save_onnx`/`onnx::to_bytes`, loaded into tract, run at batch 1 and 7, and their outputs
//! compared with `predict` (within 1e-5, relative to the value's size past 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use modelc::ndarray::{ArrayD, IxDyn};
use modelc::prelude::*;
use tract_onnx::prelude::{Datum, Framework, InferenceFact, InferenceModelExt, TValue, Tensor};

#[path = "../../examples/branch_concat/model.rs"]
mod branch_concat;
#[allow(dead_code)]
#[path = "../../examples/denoise/model.rs"]
mod denoise;
#[path = "../../examples/digits/model.rs"]
mod digits;
#[path = "../../examples/fusion/model.rs"]
mod fusion;
#[path = "../../examples/merges/model.rs"]
mod merges;
#[path = "../../examples/multitask/model.rs"]
mod multitask;
#[path = "../../examples/nested_models/model.rs"]
mod nested_models;
#[path = "../../examples/residual/model.rs"]
mod residual;
#[path = "../../examples/shared_layer/model.rs"]
mod shared_layer;
#[allow(dead_code)]
#[path = "../../examples/sunspots/model.rs"]
mod sunspots;
#[allow(dead_code)]
#[path = "../../examples/token_topics/model.rs"]
mod token_topics;
#[path = "../../examples/vision_meta/model.rs"]
mod vision_meta;
#[path = "../../examples/vit_digits/model.rs"]
mod vit_digits;

/// A small deterministic generator (xorshift) for parameters and inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Every parameter random (biases and statistics included), moving variances positive.
fn randomize<N: Network>(model: &mut N) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for spec in N::PARAMS {
        let variance = spec.name.ends_with("moving_variance");
        for v in &mut model.state_mut().params[spec.range()] {
            *v = if variance { 0.5 + rng.next() } else { rng.next() - 0.5 };
        }
    }
}

/// An input element type: random values for a model input, and the tract tensor of an array.
trait Elem: Datum + Copy + std::fmt::Debug {
    /// The numpy dtype.
    const NAME: &'static str;
    fn random(rng: &mut Rng, limit: Option<usize>) -> Self;
}

impl Elem for f32 {
    const NAME: &'static str = "float32";
    fn random(rng: &mut Rng, _: Option<usize>) -> Self {
        rng.next() * 2.0 - 1.0
    }
}

impl Elem for i32 {
    const NAME: &'static str = "int32";
    fn random(rng: &mut Rng, limit: Option<usize>) -> Self {
        (rng.next() * limit.unwrap_or(10) as f32) as i32
    }
}

/// Random values for input `name` of `N` at `batch`.
fn input<N: Network, T: Elem>(name: &str, batch: usize, seed: u64) -> ArrayD<T> {
    let i = N::INPUTS.iter().position(|s| s.name == name).expect("an input of the model");
    let limit = N::ID_BOUNDS.iter().find(|b| b.input == i).map(|b| b.limit);
    let mut shape = vec![batch];
    shape.extend_from_slice(N::INPUTS[i].shape);
    let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    ArrayD::from_shape_fn(IxDyn(&shape), |_| T::random(&mut rng, limit))
}

fn tensor<T: Elem>(a: &ArrayD<T>) -> TValue {
    let data: Vec<T> = a.iter().copied().collect();
    Tensor::from_shape(a.shape(), &data).unwrap().into()
}

/// Runs the ONNX file `bytes` in tract on `feeds` (model input order), every output flat.
fn run_tract(bytes: &[u8], feeds: Vec<TValue>) -> Vec<Vec<f32>> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).expect("tract reads the file");
    for (i, t) in feeds.iter().enumerate() {
        model.set_input_fact(i, InferenceFact::dt_shape(t.datum_type(), t.shape())).unwrap();
    }
    let plan = model.into_optimized().expect("tract optimizes the graph").into_runnable().unwrap();
    let out = plan.run(feeds.into_iter().collect()).expect("tract runs the graph");
    out.iter().map(|t| t.as_slice::<f32>().unwrap().to_vec()).collect()
}

/// `predict`'s outputs, flat, in output order.
fn flat_outputs<N: Network>(out: &N::Outputs) -> Vec<Vec<f32>> {
    let mut all = Vec::new();
    N::visit_outputs(out, &mut |_, v| {
        all.push(v.iter().copied().collect());
        Ok(())
    })
    .unwrap();
    all
}

fn compare(model: &str, batch: usize, ours: &[Vec<f32>], theirs: &[Vec<f32>]) {
    assert_eq!(ours.len(), theirs.len(), "{model}: output count");
    for (o, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a.len(), b.len(), "{model}: output {o} length at batch {batch}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{model} batch {batch} output {o}[{i}]: predict {x}, tract {y}");
        }
    }
}

/// One tensor as JSON for scripts/check_onnx.py: `{"dtype", "shape", "data"}`.
fn json_tensor<T: std::fmt::Debug + Copy>(dtype: &str, shape: &[usize], data: impl Iterator<Item = T>) -> String {
    let values: Vec<String> = data.map(|v| format!("{v:?}")).collect();
    format!("{{\"dtype\": \"{dtype}\", \"shape\": {shape:?}, \"data\": [{}]}}", values.join(", "))
}

/// Runs scripts/check_onnx.py (the onnx checker, then onnxruntime against `predict`) on `onnx` and its
/// cases when `MODELC_CI_PYTHON` names a Python with `onnx` and `onnxruntime` (CI always sets it).
fn check_in_python(onnx: &std::path::Path, cases: &[std::path::PathBuf]) {
    let Some(python) = std::env::var_os("MODELC_CI_PYTHON") else {
        eprintln!("MODELC_CI_PYTHON is unset: skipping the onnxruntime check of {}", onnx.display());
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/check_onnx.py");
    let out = std::process::Command::new(python).arg(script).arg(onnx).args(cases).output().expect("run python");
    assert!(
        out.status.success(),
        "check_onnx.py failed on {}:\n{}{}",
        onnx.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exports `$m` (random parameters) and compares tract with `predict` at batch 1 and 7.
macro_rules! check {
    ($m:ty, $inputs:ident { $($name:ident : $t:ty),* $(,)? }) => {
        check!(@tract true, $m, $inputs { $($name: $t),* })
    };
    (@tract $tract:expr, $m:ty, $inputs:ident { $($name:ident : $t:ty),* $(,)? }) => {{
        let mut model = <$m>::new(5);
        randomize(&mut model);
        let dir = std::env::temp_dir().join(format!("modelc-onnx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.onnx", <$m as Network>::NAME));
        model.save_onnx(&path).expect("export");
        let bytes = std::fs::read(&path).unwrap();
        let mut cases = Vec::new();
        for batch in [1usize, 7] {
            let mut seed = 1u64;
            $( let $name = { seed += 1; input::<$m, $t>(stringify!($name), batch, seed + batch as u64) }; )*
            let _ = seed;
            let out = model.predict(&$inputs { $( $name: $name.view().into_dimensionality().unwrap() ),* }).unwrap();
            let ours = flat_outputs::<$m>(&out);
            let order: Vec<&str> = <$m as Network>::INPUTS.iter().map(|s| s.name).collect();
            let mut feeds: Vec<(usize, TValue)> = vec![$( (order.iter().position(|n| *n == stringify!($name)).unwrap(), tensor(&$name)) ),*];
            feeds.sort_by_key(|f| f.0);
            if $tract {
                let theirs = run_tract(&bytes, feeds.into_iter().map(|f| f.1).collect());
                compare(<$m as Network>::NAME, batch, &ours, &theirs);
            }
            let ins: Vec<String> = vec![$( format!("\"{}\": {}", stringify!($name), json_tensor(<$t as Elem>::NAME, $name.shape(), $name.iter().copied())) ),*];
            let mut outs = Vec::new();
            for (spec, data) in <$m as Network>::OUTPUTS.iter().zip(&ours) {
                let mut shape = vec![batch];
                shape.extend_from_slice(spec.shape);
                outs.push(format!("\"{}\": {}", spec.name, json_tensor("float32", &shape, data.iter().copied())));
            }
            let case = dir.join(format!("{}.b{batch}.json", <$m as Network>::NAME));
            std::fs::write(&case, format!("{{\"inputs\": {{{}}}, \"outputs\": {{{}}}}}", ins.join(", "), outs.join(", "))).unwrap();
            cases.push(case);
        }
        check_in_python(&path, &cases);
    }};
}

#[test]
fn every_example_model_exports_and_runs_in_tract() {
    use branch_concat::{Branches, BranchesInputs};
    use denoise::{Denoiser, DenoiserInputs};
    use digits::{DigitNet, DigitNetInputs};
    use fusion::{Fusion, FusionInputs};
    use merges::{Interactions, InteractionsInputs};
    use multitask::{MultiTask, MultiTaskInputs};
    use nested_models::{Composed, ComposedInputs};
    use residual::{ResNet, ResNetInputs};
    use shared_layer::{Siamese, SiameseInputs};
    use sunspots::{SunspotNet, SunspotNetInputs};
    use token_topics::{TokenTopics, TokenTopicsInputs};
    use vision_meta::{VisionMeta, VisionMetaInputs};
    use vit_digits::{DigitTransformer, DigitTransformerInputs};
    check!(Branches, BranchesInputs { features: f32 });
    check!(DigitNet, DigitNetInputs { image: f32, stats: f32 });
    check!(Fusion, FusionInputs { left_features: f32, right_features: f32 });
    check!(Interactions, InteractionsInputs { a: f32, b: f32 });
    check!(MultiTask, MultiTaskInputs { x: f32 });
    check!(Composed, ComposedInputs { left: f32, right: f32, meta: f32 });
    check!(ResNet, ResNetInputs { x: f32 });
    check!(Siamese, SiameseInputs { a: f32, b: f32 });
    check!(TokenTopics, TokenTopicsInputs { tokens: i32 });
    check!(VisionMeta, VisionMetaInputs { image: f32, meta: f32 });
    check!(Denoiser, DenoiserInputs { noisy: f32 });
    check!(SunspotNet, SunspotNetInputs { past: f32 });
    check!(DigitTransformer, DigitTransformerInputs { rows: f32, positions: i32 });
}

model! {
    /// Dense-world kinds: Dense, Activation, Dropout, Softmax, Reshape, Flatten, Dot, the merges,
    /// Concatenate, LayerNormalization, Rescaling.
    pub struct DenseKinds {
        input a: [6];
        input b: [6];
        let x = Dense(6, activation = gelu)(a);
        let y = Activation(silu)(Dense(6, activation = elu)(b));
        let y = Dropout(0.5)(Activation(leaky_relu)(y));
        let s = Add()([x, y]);
        let d = Subtract()([x, y]);
        let m = Multiply()([x, y, s]);
        let v = Average()([x, y]);
        let hi = Maximum()([x, y, d]);
        let lo = Minimum()([x, y]);
        let c = Concatenate()([s, d, m, v, hi, lo]);
        let c = LayerNormalization()(Rescaling(0.5, offset = 0.1)(c));
        let r = Reshape((6, 6))(c);
        let t = Dot(axes = (1, 2), normalize = true)([r, r]);
        let u = Dot(axes = 1)([x, y]);
        output p = Softmax()(Dense(4, activation = softplus)(Flatten()(t)));
        output q = Dense(2, activation = tanh)(Concatenate()([u, Activation(sigmoid)(lo)]));
    }
}

model! {
    /// 2D kinds: ZeroPadding2D, Conv2D, BatchNormalization, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose, Cropping2D,
    /// UpSampling2D, MaxPooling2D, AveragePooling2D, the global poolings.
    pub struct ImageKinds {
        input image: [7, 7, 2];
        let x = ZeroPadding2D(1)(image);
        let x = Conv2D(4, 3, strides = 2, padding = same, activation = relu)(x);
        let x = BatchNormalization()(x);
        let x = DepthwiseConv2D(3, padding = same, depth_multiplier = 2)(x);
        let x = SeparableConv2D(5, 3, padding = same, depth_multiplier = 2, activation = relu)(x);
        let x = Conv2DTranspose(3, 3, strides = 2, padding = same)(x);
        let x = Cropping2D(1)(x);
        let n = UpSampling2D(2)(x);
        let l = UpSampling2D((1, 2))(x);
        let n = MaxPooling2D(2)(n);
        let l = AveragePooling2D(3, strides = 2, padding = same)(l);
        let g = Conv2D(2, 3, dilation_rate = 2, groups = 1)(n);
        output avg = GlobalAveragePooling2D()(l);
        output max = GlobalMaxPooling2D()(g);
        output bn = Conv2DTranspose(2, 2, padding = valid)(BatchNormalization(axis = 1)(image));
    }
}

model! {
    /// 1D kinds: ZeroPadding1D, Conv1D, DepthwiseConv1D, SeparableConv1D, Conv1DTranspose, Cropping1D, UpSampling1D,
    /// MaxPooling1D, AveragePooling1D, the global poolings.
    pub struct SequenceKinds {
        input seq: [10, 3];
        let x = ZeroPadding1D(2)(seq);
        let x = Conv1D(4, 3, activation = relu)(x);
        let x = DepthwiseConv1D(3, padding = same)(x);
        let x = SeparableConv1D(4, 3, dilation_rate = 2, use_bias = false)(x);
        let x = Conv1DTranspose(3, 3, strides = 2)(x);
        let x = Cropping1D((1, 2))(x);
        let x = UpSampling1D(2)(x);
        let m = MaxPooling1D(2)(x);
        let a = AveragePooling1D(3, padding = same)(x);
        output avg = GlobalAveragePooling1D()(a);
        output max = GlobalMaxPooling1D()(m);
    }
}

model! {
    /// Embedding on integer ids.
    pub struct TokenKinds {
        input ids: [5] as i32;
        output y = Dense(3)(Flatten()(Embedding(20, 4)(ids)));
    }
}

model! {
    /// One layer: `UpSampling2D((2, 3), interpolation = bilinear)(x)`.
    pub struct OneBilinear {
        input x: [3, 4, 2];
        output y = UpSampling2D((2, 3), interpolation = bilinear)(x);
    }
}

model! {
    /// One layer: `UpSampling2D((2, 3))(x)`.
    pub struct OneNearest {
        input x: [3, 4, 2];
        output y = UpSampling2D((2, 3))(x);
    }
}

model! {
    /// One layer: `AveragePooling2D(3, strides = 2, padding = same)(x)`.
    pub struct OneAvgSame {
        input x: [6, 7, 2];
        output y = AveragePooling2D(3, strides = 2, padding = same)(x);
    }
}

model! {
    /// One layer: `MaxPooling2D(3, strides = 2, padding = same)(x)`.
    pub struct OneMaxSame {
        input x: [6, 7, 2];
        output y = MaxPooling2D(3, strides = 2, padding = same)(x);
    }
}

model! {
    /// One layer: `Conv2D(3, 3, strides = 2, padding = same)(x)`.
    pub struct OneConvSame {
        input x: [6, 7, 2];
        output y = Conv2D(3, 3, strides = 2, padding = same)(x);
    }
}

model! {
    /// One layer: `DepthwiseConv2D(3, padding = same, depth_multiplier = 2)(x)`.
    pub struct OneDepthwise {
        input x: [6, 7, 2];
        output y = DepthwiseConv2D(3, padding = same, depth_multiplier = 2)(x);
    }
}

model! {
    /// One layer: `SeparableConv2D(4, 3, strides = 2, padding = same, depth_multiplier = 3)(x)`.
    pub struct OneSeparable {
        input x: [7, 6, 2];
        output y = SeparableConv2D(4, 3, strides = 2, padding = same, depth_multiplier = 3)(x);
    }
}

model! {
    /// One layer: `Conv2DTranspose(3, 3, strides = 2, padding = same)(x)`.
    pub struct OneConvT {
        input x: [4, 5, 2];
        output y = Conv2DTranspose(3, 3, strides = 2, padding = same)(x);
    }
}

model! {
    /// One layer: `Conv2DTranspose(3, (3, 2), strides = (2, 3))(x)`.
    pub struct OneConvTValid {
        input x: [4, 5, 2];
        output y = Conv2DTranspose(3, (3, 2), strides = (2, 3))(x);
    }
}

model! {
    /// One layer: `BatchNormalization()(x)`.
    pub struct OneBatchNorm {
        input x: [4, 5, 2];
        output y = BatchNormalization()(x);
    }
}

model! {
    /// One layer: `Cropping2D(((1, 2), (0, 1)))(ZeroPadding2D((1, 2))(x))`.
    pub struct OneCropPad {
        input x: [6, 7, 2];
        output y = Cropping2D(((1, 2), (0, 1)))(ZeroPadding2D((1, 2))(x));
    }
}

model! {
    /// One layer: `Conv2D(2, 3, dilation_rate = 2)(x)`.
    pub struct OneDilated {
        input x: [8, 8, 2];
        output y = Conv2D(2, 3, dilation_rate = 2)(x);
    }
}

model! {
    /// Sequence glue on vectors: RepeatVector, TimeDistributed(Dense), Permute.
    pub struct RepeatKinds {
        input v: [5];
        let r = RepeatVector(4)(v);
        let t = TimeDistributed(Dense(3, activation = relu))(r);
        output p = Permute((2, 1))(t);
    }
}

model! {
    /// Recurrent kinds with the default activations (tract runs those): LSTM with sequences, states and
    /// initial states, GRU going backwards from a state, SimpleRNN without a bias, Bidirectional in every
    /// merge mode, going backwards, with states and initial states.
    pub struct RecurrentKinds {
        input seq: [6, 3];
        input h0: [4];
        input c0: [4];
        let (s, h, c) = LSTM(4, return_sequences = true, return_state = true)(seq, initial_state = [h0, c0]);
        let g = GRU(4, return_sequences = true, go_backwards = true)(s, initial_state = [h]);
        let r = SimpleRNN(3, use_bias = false)(g);
        let b = Bidirectional(LSTM(3, return_sequences = true))(seq);
        let bs = Bidirectional(GRU(2, return_sequences = true), merge_mode = sum)(b);
        let bm = Bidirectional(SimpleRNN(2, return_sequences = true, go_backwards = true), merge_mode = mul)(bs);
        let (fw, bw) = Bidirectional(GRU(2, go_backwards = true), merge_mode = none)(seq);
        let (ba, fh, fc, bh, bc) = Bidirectional(LSTM(4, return_state = true), merge_mode = ave)(seq, initial_state = [h0, c0, c, h]);
        output y = Concatenate()([r, fw, bw, ba, fh, fc, bh, bc, c]);
        output m = bm;
        let (sf, sb, sfh, sbh) = Bidirectional(SimpleRNN(3, return_sequences = true, return_state = true), merge_mode = none)(g);
        output sq = Concatenate()([sf, sb]);
        output sh = Concatenate()([sfh, sbh]);
    }
}

model! {
    /// TimeDistributed around Conv2D, MaxPooling2D and TimeDistributed(Dense) on frames, and a Permute of rank 4.
    pub struct FrameKinds {
        input frames: [3, 6, 5, 2];
        let c = TimeDistributed(Conv2D(4, 3, padding = same, activation = relu))(frames);
        let c = TimeDistributed(Conv2D(3, 2))(c);
        output q = Permute((2, 3, 1, 4))(TimeDistributed(MaxPooling2D())(c));
        output r = TimeDistributed(TimeDistributed(Dense(2, activation = tanh)))(c);
    }
}

model! {
    /// Causal self-attention, and cross-attention returning its scores (a second ONNX output).
    pub struct SelfAttention {
        input x: [6, 8];
        input v: [4, 3];
        layer mha = MultiHeadAttention(2, 4);
        output y = mha(x, x, use_causal_mask = true);
        layer cross = MultiHeadAttention(3, 2);
        let (c, s) = cross(x, v, return_attention_scores = true);
        output z = c;
        output scores = s;
    }
}

model! {
    /// Cross-attention with a key and an attention mask, value_dim != key_dim and an output_shape; a
    /// second layer without biases, a broadcast mask and the causal mask together, on a query of rank 4
    /// (attention over all its positions).
    pub struct CrossAttention {
        input q: [5, 8];
        input v: [7, 6];
        input k: [7, 3];
        input m: [5, 7];
        input row: [1, 7];
        input grid: [2, 3, 4];
        layer cross = MultiHeadAttention(3, 4, value_dim = 2, output_shape = 10);
        output y = cross(q, v, k, attention_mask = m);
        layer plain = MultiHeadAttention(2, 3, use_bias = false);
        output z = plain(q, v, attention_mask = row, use_causal_mask = true);
        layer wide = MultiHeadAttention(2, 2, value_dim = 5);
        output w = wide(grid, grid, use_causal_mask = true);
    }
}

model! {
    /// Keras' `Attention`: scaled causal dot-product with a key, returning its scores, and scaled
    /// additive ("concat") self-attention.
    pub struct DotAttention {
        input q: [5, 4];
        input v: [6, 3];
        input k: [6, 4];
        let (a, s) = Attention(use_scale = true)([q, v, k], use_causal_mask = true, return_attention_scores = true);
        output y = a;
        output scores = s;
        output c = Attention(use_scale = true, score_mode = concat)([q, q]);
    }
}

#[test]
fn sequence_glue_and_attention_export_and_run_in_tract() {
    check!(RepeatKinds, RepeatKindsInputs { v: f32 });
    check!(FrameKinds, FrameKindsInputs { frames: f32 });
    check!(SelfAttention, SelfAttentionInputs { x: f32, v: f32 });
    check!(DotAttention, DotAttentionInputs { q: f32, v: f32, k: f32 });
    check!(CrossAttention, CrossAttentionInputs { q: f32, v: f32, k: f32, m: f32, row: f32, grid: f32 });
}

model! {
    /// Recurrent layers with other activations than tanh and sigmoid, which ONNX writes in the
    /// operators' `activations` attribute (with `activation_alpha` for elu, leaky_relu, linear).
    pub struct RecurrentActivations {
        input seq: [5, 3];
        let a = SimpleRNN(3, activation = relu, return_sequences = true)(seq);
        let b = LSTM(3, activation = elu, return_sequences = true)(a);
        let c = GRU(3, activation = linear, recurrent_activation = relu, return_sequences = true)(b);
        let d = LSTM(3, activation = softplus, recurrent_activation = tanh, return_sequences = true, go_backwards = true)(c);
        output y = Bidirectional(GRU(2, activation = leaky_relu))(d);
        output z = SimpleRNN(2, activation = linear)(c);
    }
}

/// The recurrent layers export as ONNX `LSTM`, `GRU` and `RNN` (seq-major, one direction each,
/// `go_backwards` as a reversal of the steps before the operator), which tract runs.
#[test]
fn recurrent_layers_export_and_run_in_tract() {
    check!(RecurrentKinds, RecurrentKindsInputs { seq: f32, h0: f32, c0: f32 });
}

/// tract 0.22 reads neither `activations` nor `direction` of the recurrent operators (it always runs
/// the ONNX defaults): the other activations are checked with onnxruntime (`MODELC_CI_PYTHON`).
#[test]
fn recurrent_activations_match_onnxruntime() {
    check!(@tract false, RecurrentActivations, RecurrentActivationsInputs { seq: f32 });
}

/// Bilinear `UpSampling2D` exports as `Resize(mode = linear, coordinate_transformation_mode =
/// half_pixel)`, which onnxruntime runs as the kernel does (checked through `MODELC_CI_PYTHON`), but
/// tract 0.22 gives other values, in either layout: tract is not asked here.
#[test]
fn bilinear_upsampling_matches_onnxruntime() {
    check!(@tract false, OneBilinear, OneBilinearInputs { x: f32 });
}

#[test]
fn one_model_per_2d_layer_kind_runs_in_tract() {
    check!(OneNearest, OneNearestInputs { x: f32 });
    check!(OneAvgSame, OneAvgSameInputs { x: f32 });
    check!(OneMaxSame, OneMaxSameInputs { x: f32 });
    check!(OneConvSame, OneConvSameInputs { x: f32 });
    check!(OneDepthwise, OneDepthwiseInputs { x: f32 });
    check!(OneSeparable, OneSeparableInputs { x: f32 });
    check!(OneConvT, OneConvTInputs { x: f32 });
    check!(OneConvTValid, OneConvTValidInputs { x: f32 });
    check!(OneBatchNorm, OneBatchNormInputs { x: f32 });
    check!(OneCropPad, OneCropPadInputs { x: f32 });
    check!(OneDilated, OneDilatedInputs { x: f32 });
}

#[test]
fn every_layer_kind_exports_and_runs_in_tract() {
    check!(DenseKinds, DenseKindsInputs { a: f32, b: f32 });
    check!(ImageKinds, ImageKindsInputs { image: f32 });
    check!(SequenceKinds, SequenceKindsInputs { seq: f32 });
    check!(TokenKinds, TokenKindsInputs { ids: i32 });
}

#[test]
fn the_file_keeps_the_interface_and_the_metadata() {
    use modelc::onnx::proto::ModelProto;
    let model = DenseKinds::new(1);
    let file = modelc::onnx::model_proto(&model).unwrap();
    let _: &ModelProto = &file;
    assert_eq!(file.opset_import[0].version, Some(17));
    assert!(file.metadata_props.iter().any(|e| e.key.as_deref() == Some("model_name") && e.value.as_deref() == Some("DenseKinds")));
    assert!(file.metadata_props.iter().any(|e| e.key.as_deref() == Some("modelc_version")));
    let g = file.graph.unwrap();
    let names: Vec<_> = g.input.iter().map(|i| i.name.clone().unwrap()).collect();
    assert_eq!(names, ["a", "b"]);
    let outs: Vec<_> = g.output.iter().map(|i| i.name.clone().unwrap()).collect();
    assert_eq!(outs, ["p", "q"]);
    let params: Vec<&str> = <DenseKinds as Network>::PARAMS.iter().map(|p| p.name).collect();
    for p in &params {
        assert!(g.initializer.iter().any(|t| t.name.as_deref() == Some(p)), "initializer {p}");
    }
    assert!(g.node.iter().all(|n| n.op_type.as_deref() != Some("Dropout")), "Dropout is gone in inference mode");
    assert!(g.node.iter().all(|n| n.domain.as_deref().unwrap_or("").is_empty()), "standard operators only");
}

model! {
    /// Masks (docs/masks.md): `mask_zero` and `Masking` make them, `Add` ORs them (`Max`), and masked
    /// `GlobalAveragePooling1D` averages the kept steps (`ReduceSum` of the masked values over
    /// `ReduceSum` of the mask). Token ids below 3 include padding id 0 often.
    pub struct MaskKinds {
        input ids: [6] as i32;
        input x: [6, 4];
        let e = Embedding(3, 4, mask_zero = true)(ids);
        let m = Masking(mask_value = 0.5)(x);
        let a = Add()([e, Dense(4)(m)]);
        output y = GlobalAveragePooling1D()(a);
        output z = GlobalAveragePooling1D()(Dense(2)(e));
        output w = m;
    }
}

model! {
    /// A recurrent layer reading a mask: ONNX's recurrent operators take sequence lengths, not masks.
    pub struct MaskedRecurrent {
        input x: [6, 4];
        output y = GRU(2)(Masking()(x));
    }
}

model! {
    /// Attention reading its operands' masks: its ONNX export does not read them yet.
    pub struct MaskedAttentionOnnx {
        input ids: [6] as i32;
        let e = Embedding(9, 4, mask_zero = true)(ids);
        output y = MultiHeadAttention(2, 2)(e, e);
    }
}

model! {
    /// Keras' `Attention` reading its query's and value's masks, causal and not, with scores.
    pub struct MaskedDotAttentionOnnx {
        input ids: [6] as i32;
        input x: [6, 4];
        let e = Embedding(3, 4, mask_zero = true)(ids);
        let (a, s) = Attention(use_scale = true)([Dense(4)(x), e], use_causal_mask = true, return_attention_scores = true);
        output y = a;
        output scores = s;
        output z = Attention(score_mode = concat)([e, Dense(4)(x)]);
        output w = Attention()([e, e, Dense(4)(e)]);
    }
}

model! {
    /// Two masked sequences joined along the steps: their masks joined.
    pub struct JoinedMasks {
        input ids: [6] as i32;
        input x: [3, 4];
        let j = Concatenate(axis = 1)([Embedding(3, 4, mask_zero = true)(ids), Masking(mask_value = 0.5)(x)]);
        output y = GlobalAveragePooling1D()(j);
    }
}

model! {
    /// A masked and an unmasked sequence joined along the steps: the all-kept part is not exported yet.
    pub struct HalfMasked {
        input ids: [6] as i32;
        input x: [3, 4];
        output y = GlobalAveragePooling1D()(Concatenate(axis = 1)([Embedding(3, 4, mask_zero = true)(ids), x]));
    }
}

#[test]
fn masks_export_where_onnx_expresses_them_and_run_in_tract() {
    check!(JoinedMasks, JoinedMasksInputs { ids: i32, x: f32 });
    let err = modelc::onnx::to_bytes(&HalfMasked::new(0)).unwrap_err().to_string();
    assert!(err.contains("(Concatenate) cannot be exported to ONNX: it joins along the steps a masked and an unmasked sequence"), "{err}");
    check!(MaskKinds, MaskKindsInputs { ids: i32, x: f32 });
    check!(MaskedDotAttentionOnnx, MaskedDotAttentionOnnxInputs { ids: i32, x: f32 });
    let err = modelc::onnx::to_bytes(&MaskedRecurrent::new(0)).unwrap_err().to_string();
    assert!(err.contains("layer `gru` (GRU) cannot be exported to ONNX: its input carries a mask"), "{err}");
    assert!(err.contains("sequence lengths, not per-step masks"), "{err}");
    let err = modelc::onnx::to_bytes(&MaskedAttentionOnnx::new(0)).unwrap_err().to_string();
    assert!(err.contains("(MultiHeadAttention) cannot be exported to ONNX: its operands carry masks"), "{err}");
}
