//! The inference memory plan (buffers shared by liveness, `forward_inference`) gives exactly the outputs
//! of the training-layout forward in inference mode: `predict`, `predict_into`, `Trainer::predict` and
//! `evaluate` against `forward(.., false)`, bit for bit, on models with branches, merges, shared layers,
//! nested models, convolutions, embeddings, normalization and dropout; batches that shrink and grow
//! between calls (shared buffers longer than the value they hold); and the training activations that
//! `backward` reads stay untouched by inference.

use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3, Array4};
use modelc::prelude::*;
use modelc::{ops, train};

/// Every output's elements as bit patterns, in output order.
fn bits<N: Network>(out: &N::Outputs) -> Vec<Vec<u32>> {
    let mut v = Vec::new();
    N::visit_outputs(out, &mut |_, a| {
        v.push(a.iter().map(|x| x.to_bits()).collect());
        Ok(())
    })
    .unwrap();
    v
}

/// Per-sample elements of the training and the inference buffers (activations and scratch).
fn footprint<N: Network>() -> (usize, usize) {
    let train = N::BUFFERS.iter().sum::<usize>() + N::SCRATCH.iter().sum::<usize>();
    let infer = N::INFER_BUFFERS.iter().sum::<usize>() + N::INFER_SCRATCH.iter().sum::<usize>();
    (train, infer)
}

/// `predict`, `predict_batched` (one chunk) and `predict_into` on `small` equal `forward(small, false)`
/// bit for bit, after a `predict` on the larger batch `big` left longer values in the shared buffers; the
/// training workspace (what `backward` reads) is the same before and after the inference calls.
macro_rules! check_equivalent {
    ($ty:ty, $model:expr, $big:expr, $small:expr, $n:expr) => {{
        let m = &mut $model;
        let _ = m.predict(&$big).unwrap();
        let reference = ops::forward(m, &$small, false).unwrap();
        let training_ws = m.state().ws.values.clone();
        let predicted = m.predict(&$small).unwrap();
        assert_eq!(bits::<$ty>(&predicted), bits::<$ty>(&reference), "predict");
        let batched = train::predict_batched(m, &$small, $n).unwrap();
        assert_eq!(bits::<$ty>(&batched), bits::<$ty>(&reference), "predict_batched");
        let mut into = m.predict(&$big).unwrap();
        m.predict_into(&$small, &mut into).unwrap();
        assert_eq!(bits::<$ty>(&into), bits::<$ty>(&reference), "predict_into");
        assert_eq!(m.state().ws.values, training_ws, "inference touched the training activations");
        let (train, infer) = footprint::<$ty>();
        assert!(infer <= train, "inference plan larger than training: {infer} > {train}");
        reference
    }};
}

#[path = "../examples/fusion/model.rs"]
mod fusion;
#[path = "../examples/nested_models/model.rs"]
mod nested_models;
#[path = "../examples/residual/model.rs"]
mod residual;
#[path = "../examples/token_topics/model.rs"]
mod token_topics;
#[path = "../examples/vision_meta/model.rs"]
mod vision_meta;

#[test]
fn fusion_branches_predict_exactly_like_forward() {
    use fusion::*;
    let (l, r, _) = make_data(40, 1);
    let (bl, br, _) = make_data(64, 2);
    let mut m = Fusion::new(3);
    check_equivalent!(
        Fusion,
        m,
        FusionInputs { left_features: bl.view(), right_features: br.view() },
        FusionInputs { left_features: l.view(), right_features: r.view() },
        40
    );
}

/// Contiguous float inputs are read where the caller holds them, the others are staged: a view of
/// every column of a wider array, and a transposed (column-major) one, give the outputs of their
/// contiguous copies bit for bit, through `predict` and `predict_into`, in either order of calls.
#[test]
fn inputs_read_in_place_and_staged_inputs_predict_alike() {
    use fusion::*;
    use modelc::ndarray::{s, ShapeBuilder};
    let (l, r, _) = make_data(24, 5);
    let mut m = Fusion::new(6);
    let contiguous = FusionInputs { left_features: l.view(), right_features: r.view() };
    let want = bits::<Fusion>(&m.predict(&contiguous).unwrap());
    // `left` inside a wider array: rows 12 apart; `right` column-major.
    let mut wide = Array2::zeros((24, 12));
    wide.slice_mut(s![.., 2..10]).assign(&l);
    let mut right_f = Array2::zeros((24, 4).f());
    right_f.assign(&r);
    let strided = FusionInputs { left_features: wide.slice(s![.., 2..10]), right_features: right_f.view() };
    assert!(strided.left_features.as_slice().is_none() && strided.right_features.as_slice().is_none());
    assert_eq!(bits::<Fusion>(&m.predict(&strided).unwrap()), want, "staged");
    let mixed = FusionInputs { left_features: l.view(), right_features: right_f.view() };
    let mut out = m.predict(&strided).unwrap();
    m.predict_into(&mixed, &mut out).unwrap();
    assert_eq!(bits::<Fusion>(&out), want, "one in place, one staged");
    m.predict_into(&contiguous, &mut out).unwrap();
    assert_eq!(bits::<Fusion>(&out), want, "both in place");
    assert_eq!(bits::<Fusion>(&ops::forward(&mut m, &strided, false).unwrap()), want, "training forward, staged");
}

#[test]
fn residual_skips_predict_exactly_like_forward() {
    use residual::*;
    let (x, _) = data(33, 1);
    let (bx, _) = data(70, 2);
    let mut m = ResNet::new(4);
    check_equivalent!(ResNet, m, ResNetInputs { x: bx.view() }, ResNetInputs { x: x.view() }, 33);
    let (train, infer) = footprint::<ResNet>();
    assert!(infer < train, "a residual chain reuses buffers: {infer} vs {train}");
}

#[test]
fn nested_and_frozen_submodels_predict_exactly_like_forward() {
    use nested_models::*;
    let (l, r, meta, _) = data(17, 1);
    let (bl, br, bmeta, _) = data(50, 2);
    let mut m = Composed::new(5);
    check_equivalent!(
        Composed,
        m,
        ComposedInputs { left: bl.view(), right: br.view(), meta: bmeta.view() },
        ComposedInputs { left: l.view(), right: r.view(), meta: meta.view() },
        17
    );
}

#[test]
fn convolutions_predict_exactly_like_forward() {
    use vision_meta::*;
    let (image, meta, _) = make_data(5, 1);
    let (bimage, bmeta, _) = make_data(9, 2);
    let mut m = VisionMeta::new(6);
    check_equivalent!(
        VisionMeta,
        m,
        VisionMetaInputs { image: bimage.view(), meta: bmeta.view() },
        VisionMetaInputs { image: image.view(), meta: meta.view() },
        5
    );
    let (train, infer) = footprint::<VisionMeta>();
    assert!(infer * 2 < train, "inference drops the im2col gradient and shares scratch: {infer} vs {train}");
}

#[test]
fn embedding_normalization_and_dropout_predict_exactly_like_forward_after_training() {
    use token_topics::*;
    let (tokens, y) = make_data(48, 1);
    let (btokens, _) = make_data(96, 2);
    let mut m = TokenTopics::new(7);
    {
        // Moving statistics away from their initial values, dropout masks drawn.
        let mut trainer = m.compile(Adam::default(), TokenTopicsLosses { topic: Loss::CategoricalCrossentropy }, &[]);
        for _ in 0..5 {
            trainer.train_step(&TokenTopicsInputs { tokens: tokens.view() }, &TokenTopicsTargets { topic: y.view() }).unwrap();
        }
    }
    check_equivalent!(TokenTopics, m, TokenTopicsInputs { tokens: btokens.view() }, TokenTopicsInputs { tokens: tokens.view() }, 48);
}

model! {
    /// A small encoder, used as a layer twice below.
    pub struct Encoder {
        input v: [6];
        let h = Dense(8, activation = gelu)(v);
        output e = Dense(6, activation = tanh)(h);
    }

    /// Shared layers, a nested model used twice, every merge (one broadcasting, a normalized Dot), a model
    /// output that other layers also read, and an input read late.
    pub struct Graph {
        input a: [6];
        input b: [6];
        input c: [4, 6];
        layer shared = Dense(6, activation = tanh);
        layer enc = Encoder;
        let sa = shared(a);
        let sb = shared(b);
        let sab = shared(Average()([a, b]));
        let ea = enc(a);
        let eb = enc(sb);
        let added = Add()([sa, ea]);
        let diff = Subtract()([sb, eb]);
        let prod = Multiply()([sa, sb, sab]);
        let hi = Maximum()([sa, sb]);
        let lo = Minimum()([ea, eb, sab]);
        let sim = Dot(axes = 1)([sa, sb]);
        let cos = Dot(axes = -1, normalize = true)([ea, eb]);
        let cs = Add()([c, sa]);
        let cd = Dot(axes = (2, 1))([cs, sab]);
        output mixed = Concatenate()([added, diff, prod, hi, lo, sim, cos, cd]);
        output score = Dense(1, activation = sigmoid)(Dense(12, activation = relu)(mixed));
        output value = Dense(2)(Concatenate()([Average()([added, prod]), cd, b]));
    }
}

fn graph_data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array3<f32>) {
    let mut rng = Rng::new(seed);
    let a = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let b = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let c = Array3::from_shape_fn((n, 4, 6), |_| rng.uniform(-1.0, 1.0));
    (a, b, c)
}

#[test]
fn shared_layers_nested_models_and_merges_predict_exactly_like_forward() {
    let (a, b, c) = graph_data(21, 1);
    let (ba, bb, bc) = graph_data(45, 2);
    let mut m = Graph::new(8);
    check_equivalent!(
        Graph,
        m,
        GraphInputs { a: ba.view(), b: bb.view(), c: bc.view() },
        GraphInputs { a: a.view(), b: b.view(), c: c.view() },
        21
    );
    let (train, infer) = footprint::<Graph>();
    assert!(infer < train, "{infer} vs {train}");
}

model! {
    /// Convolutions whose activation needs the pre-activation scratch (gelu, silu), 1-D and 2-D, pooling,
    /// reshapes, a softmax over a middle axis, frozen and trainable batch normalization, dropout.
    pub struct Mixed {
        input img: [10, 10, 2];
        input seq: [12, 3];
        let v = Conv2D(6, 3, padding = same, activation = gelu)(img);
        let v = BatchNormalization(trainable = false)(v);
        let v = MaxPooling2D(2)(v);
        let v = Conv2D(4, 3, strides = 2, activation = silu)(v);
        let v = Flatten()(v);
        let s = Conv1D(5, 3, activation = elu)(seq);
        let s = AveragePooling1D(2)(s);
        let s = Softmax(axis = 1)(s);
        let s = GlobalMaxPooling1D()(Reshape((5, 5))(Flatten()(s)));
        let h = Concatenate()([v, s]);
        let h = BatchNormalization()(Dense(16, activation = softplus)(h));
        let h = Dropout(0.3, seed = 3)(h);
        output y = Dense(3, activation = softmax)(h);
    }
}

fn mixed_data(n: usize, seed: u64) -> (Array4<f32>, Array3<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let img = Array4::from_shape_fn((n, 10, 10, 2), |_| rng.uniform(-1.0, 1.0));
    let seq = Array3::from_shape_fn((n, 12, 3), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 3), |(i, k)| f32::from(u8::from(i % 3 == k)));
    (img, seq, y)
}

#[test]
fn convolutions_with_pre_activations_pooling_and_batch_norm_predict_exactly_like_forward() {
    let (img, seq, y) = mixed_data(12, 1);
    let (bimg, bseq, _) = mixed_data(30, 2);
    let mut m = Mixed::new(9);
    {
        let mut trainer = m.compile(Adam::default(), MixedLosses { y: Loss::CategoricalCrossentropy }, &[]);
        for _ in 0..3 {
            trainer.train_step(&MixedInputs { img: img.view(), seq: seq.view() }, &MixedTargets { y: y.view() }).unwrap();
        }
    }
    check_equivalent!(Mixed, m, MixedInputs { img: bimg.view(), seq: bseq.view() }, MixedInputs { img: img.view(), seq: seq.view() }, 12);
}

#[test]
fn a_model_only_used_for_inference_never_allocates_training_buffers() {
    let (a, b, c) = graph_data(8, 3);
    let mut m = Graph::new(1);
    let _ = m.predict(&GraphInputs { a: a.view(), b: b.view(), c: c.view() }).unwrap();
    let st = m.state();
    assert!(st.ws.values.is_empty() && st.ws.grads.is_empty() && st.ws.scratch.is_empty(), "training workspace allocated");
    assert_eq!(st.infer.values.len(), <Graph as Network>::INFER_BUFFERS.len());
    assert!(st.infer.grads.is_empty(), "inference holds no gradients");
    let held: usize = st.infer.values.iter().chain(&st.infer.scratch).map(Vec::len).sum();
    let (_, infer) = footprint::<Graph>();
    assert_eq!(held, 8 * infer);
}

#[test]
fn a_model_only_trained_never_allocates_inference_buffers() {
    use fusion::*;
    let (l, r, y) = make_data(16, 1);
    let mut m = Fusion::new(2);
    let mut trainer = m.compile(Adam::default(), FusionLosses { score: Loss::BinaryCrossentropy }, &[]);
    trainer.train_step(&FusionInputs { left_features: l.view(), right_features: r.view() }, &FusionTargets { score: y.view() }).unwrap();
    assert!(m.state().infer.values.is_empty() && m.state().infer.scratch.is_empty());
    assert!(!m.state().ws.values.is_empty());
}

#[test]
fn backward_after_predict_differentiates_the_last_forward() {
    let (a, b, c) = graph_data(6, 4);
    let (a2, b2, c2) = graph_data(9, 5);
    let inputs = GraphInputs { a: a.view(), b: b.view(), c: c.view() };
    let mut m = Graph::new(2);
    let out = m.forward(&inputs, false).unwrap();
    let expected = m.backward(&out).unwrap();
    let _ = m.forward(&inputs, false).unwrap();
    let _ = m.predict(&GraphInputs { a: a2.view(), b: b2.view(), c: c2.view() }).unwrap();
    let got = m.backward(&out).unwrap();
    assert_eq!(got.as_slice(), expected.as_slice());
}

#[test]
fn evaluate_scores_the_outputs_forward_gives() {
    use fusion::*;
    let (l, r, y) = make_data(50, 6);
    let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
    let mut m = Fusion::new(4);
    let out = m.forward(&inputs, false).unwrap();
    let hits = out.score.iter().zip(&y).filter(|(p, t)| f32::from(u8::from(**p > 0.5)) == **t).count();
    let bce: f64 = out
        .score
        .iter()
        .zip(&y)
        .map(|(&p, &t)| {
            let p = f64::from(p.clamp(1e-7, 1.0 - 1e-7));
            -(f64::from(t) * p.ln() + (1.0 - f64::from(t)) * (1.0 - p).ln())
        })
        .sum::<f64>()
        / 50.0;
    let mut trainer = m.compile(Adam::default(), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let logs = trainer.evaluate(&inputs, &FusionTargets { score: y.view() }, 50).unwrap();
    assert_eq!(logs["accuracy"], hits as f64 / 50.0);
    assert!((logs["loss"] - bce).abs() < 1e-5, "{} vs {bce}", logs["loss"]);
}

#[test]
fn a_state_built_with_default_workspaces_still_predicts_on_the_inference_plan() {
    use fusion::*;
    let (l, r, _) = make_data(10, 7);
    let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
    let mut m = Fusion::new(1);
    let expected = m.forward(&inputs, false).unwrap();
    let st = m.state_mut();
    st.infer = modelc::__private::workspace::Workspace::default(); // training layout
    let got = m.predict(&inputs).unwrap();
    assert_eq!(bits::<Fusion>(&got), bits::<Fusion>(&expected));
    assert_eq!(m.state().infer.values.len(), <Fusion as Network>::INFER_BUFFERS.len());
}
