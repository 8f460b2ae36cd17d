//! MultiHeadAttention (issue #18) compiled into models: Keras weight names and layouts, attention
//! probabilities that respect masks, and every parameter gradient against finite differences for each
//! option (self-attention with a causal mask, cross-attention with a separate key and a padding mask,
//! no biases with `value_dim` and `output_shape`, a shared instance), each attention operand's input
//! gradient checked through the Dense layers in front of it. Dropout is checked at the kernel level
//! (model-runtime/src/kernels/attention.rs), where the training step is fixed.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::Array3;
use modelc::prelude::*;

model! {
    /// Causal self-attention on projected features.
    pub struct SelfCausal {
        input x: [5, 3];
        let h = Dense(6, activation = tanh)(x);
        layer mha = MultiHeadAttention(num_heads = 2, key_dim = 3);
        output y = mha(h, h, use_causal_mask = true);
    }
}

model! {
    /// Cross-attention: query, value and key of different lengths and widths, with a padding mask.
    pub struct Cross {
        input q: [4, 3];
        input v: [6, 2];
        input m: [1, 6];
        let hq = Dense(5, activation = tanh)(q);
        let hv = Dense(4, activation = tanh)(v);
        let hk = Dense(3, activation = tanh)(v);
        layer mha = MultiHeadAttention(3, 2, value_dim = 4, use_bias = false, output_shape = 7);
        output y = mha(hq, hv, hk, attention_mask = m);
    }
}

model! {
    /// One instance called twice (shared weights), once per direction.
    pub struct Shared {
        input a: [3, 4];
        input b: [3, 4];
        let ha = Dense(4, activation = tanh)(a);
        let hb = Dense(4, activation = tanh)(b);
        layer mha = MultiHeadAttention(2, 2);
        output y = Add()([mha(ha, hb), mha(hb, ha)]);
    }
}

fn assert_gradients_pass(report: modelc::gradcheck::GradCheck, params: usize) {
    assert_eq!(report.checked, params);
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

fn random(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    let mut rng = Rng::new(seed);
    Array3::from_shape_fn(shape, |_| rng.uniform(-1.0, 1.0))
}

#[test]
fn weights_have_keras_names_and_layouts() {
    let model = SelfCausal::new(1);
    assert_eq!(model.param("multi_head_attention/query/kernel").unwrap().shape(), &[6, 2, 3]);
    assert_eq!(model.param("multi_head_attention/query/bias").unwrap().shape(), &[2, 3]);
    assert_eq!(model.param("multi_head_attention/key/kernel").unwrap().shape(), &[6, 2, 3]);
    assert_eq!(model.param("multi_head_attention/value/kernel").unwrap().shape(), &[6, 2, 3]);
    assert_eq!(model.param("multi_head_attention/attention_output/kernel").unwrap().shape(), &[2, 3, 6]);
    assert_eq!(model.param("multi_head_attention/attention_output/bias").unwrap().shape(), &[6]);
    let model = Cross::new(1);
    assert_eq!(model.param("multi_head_attention/query/kernel").unwrap().shape(), &[5, 3, 2]);
    assert_eq!(model.param("multi_head_attention/key/kernel").unwrap().shape(), &[3, 3, 2]);
    assert_eq!(model.param("multi_head_attention/value/kernel").unwrap().shape(), &[4, 3, 4]);
    assert_eq!(model.param("multi_head_attention/attention_output/kernel").unwrap().shape(), &[3, 4, 7]);
    assert!(model.param("multi_head_attention/query/bias").is_err());
    assert!(Cross::SUMMARY.contains("(None, 4, 7)"), "{}", Cross::SUMMARY);
}

#[test]
fn a_causal_first_position_only_sees_itself() {
    // With causal masking, output position 0 depends only on input position 0.
    let mut model = SelfCausal::new(3);
    let x = random((1, 5, 3), 4);
    let y0 = model.predict(&SelfCausalInputs { x: x.view() }).unwrap().y;
    let mut x2 = x.clone();
    for t in 1..5 {
        for f in 0..3 {
            x2[[0, t, f]] += 0.5;
        }
    }
    let y1 = model.predict(&SelfCausalInputs { x: x2.view() }).unwrap().y;
    for f in 0..6 {
        assert!((y0[[0, 0, f]] - y1[[0, 0, f]]).abs() < 1e-6, "position 0 saw the future");
    }
    assert!((0..6).any(|f| (y0[[0, 4, f]] - y1[[0, 4, f]]).abs() > 1e-4), "position 4 ignores the past");
}

#[test]
fn masked_values_do_not_change_the_output() {
    let mut model = Cross::new(5);
    let (q, v) = (random((1, 4, 3), 6), random((1, 6, 2), 7));
    let mut m = Array3::from_elem((1, 1, 6), 1.0f32);
    m[[0, 0, 4]] = 0.0;
    m[[0, 0, 5]] = 0.0;
    let y0 = model.predict(&CrossInputs { q: q.view(), v: v.view(), m: m.view() }).unwrap().y;
    let mut v2 = v.clone();
    v2[[0, 4, 0]] += 1.0;
    v2[[0, 5, 1]] -= 1.0;
    let y1 = model.predict(&CrossInputs { q: q.view(), v: v2.view(), m: m.view() }).unwrap().y;
    assert!(y0.iter().zip(y1.iter()).all(|(a, b)| (a - b).abs() < 1e-6), "a masked value leaked");
}

#[test]
fn causal_self_attention_gradients_match_finite_differences() {
    let mut model = SelfCausal::new(7);
    let x = random((2, 5, 3), 8);
    let report = check_gradients(&mut model, &SelfCausalInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 5).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn masked_cross_attention_gradients_match_finite_differences() {
    let mut model = Cross::new(9);
    let (q, v) = (random((2, 4, 3), 10), random((2, 6, 2), 11));
    let mut m = Array3::from_elem((2, 1, 6), 1.0f32);
    m[[0, 0, 5]] = 0.0;
    m[[1, 0, 0]] = 0.0;
    m[[1, 0, 3]] = 0.0;
    let report = check_gradients(&mut model, &CrossInputs { q: q.view(), v: v.view(), m: m.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_gradients_pass(report, model.count_params());
}

#[test]
fn shared_attention_gradients_match_finite_differences() {
    let mut model = Shared::new(12);
    let (a, b) = (random((2, 3, 4), 13), random((2, 3, 4), 14));
    let report = check_gradients(&mut model, &SharedInputs { a: a.view(), b: b.view() }, 1e-2, 2e-3, 2e-2, 7).unwrap();
    assert_gradients_pass(report, model.count_params());
}
