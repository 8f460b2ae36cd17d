//! Parity of MultiHeadAttention (issue #18) with Keras itself, against the fixtures written by
//! `scripts/keras_attention.py` (Keras 3, JAX backend) in the format of tests/keras_parity.rs: outputs
//! within 1e-5, the training loss, every gradient within 1e-4 relative, the weights after three Adam(1e-2)
//! steps. Causal self-attention, cross-attention with a padding mask (value_dim and output_shape set),
//! a transformer encoder block on embedded tokens, and cross-attention returning its scores
//! (`return_attention_scores = true`, Keras' `[batch, heads, Tq, Tv]`) with a loss on them; Keras'
//! `Attention` layer (scaled causal dot-product with a key and its scores, and scaled "concat" scores).

use modelc::prelude::*;

use crate::parity;
use parity::*;

model! {
    /// scripts/keras_attention.py, `self_causal`.
    struct SelfCausal {
        input x: [5, 3];
        let h = Dense(6, activation = tanh)(x);
        layer mha = MultiHeadAttention(num_heads = 2, key_dim = 3);
        output y = mha(h, h, use_causal_mask = true);
    }
}

model! {
    /// scripts/keras_attention.py, `cross_masked`.
    struct CrossMasked {
        input q: [4, 3];
        input v: [6, 2];
        input m: [4, 6];
        let hq = Dense(5, activation = tanh)(q);
        let hv = Dense(4, activation = tanh)(v);
        layer mha = MultiHeadAttention(num_heads = 3, key_dim = 2, value_dim = 4, output_shape = 7);
        output y = mha(hq, hv, attention_mask = m);
    }
}

model! {
    /// scripts/keras_attention.py, `cross_scores`: the attention scores returned and trained on.
    struct CrossScores {
        input q: [4, 3];
        input v: [6, 2];
        let hq = Dense(5, activation = tanh)(q);
        let hv = Dense(4, activation = tanh)(v);
        layer mha = MultiHeadAttention(num_heads = 2, key_dim = 3);
        let (out, s) = mha(hq, hv, return_attention_scores = true);
        output y = out;
        output scores = s;
    }
}

model! {
    /// scripts/keras_attention.py, `dot_scores`: Keras' `Attention`, scaled, causal, with a key, returning
    /// its scores.
    struct DotScores {
        input q: [5, 3];
        input v: [6, 2];
        let hq = Dense(4, activation = tanh)(q);
        let hv = Dense(3, activation = tanh)(v);
        let hk = Dense(4, activation = tanh)(v);
        let (out, s) = Attention(use_scale = true)([hq, hv, hk], use_causal_mask = true, return_attention_scores = true);
        output y = out;
        output scores = s;
    }
}

model! {
    /// scripts/keras_attention.py, `concat_self`: Keras' `Attention` with additive scores.
    struct ConcatSelf {
        input x: [5, 3];
        let h = Dense(4, activation = tanh)(x);
        let a = Attention(use_scale = true, score_mode = concat)([h, h]);
        output y = Dense(2)(a);
    }
}

model! {
    /// scripts/keras_attention.py, `encoder`: one transformer encoder block.
    struct Encoder {
        input tokens: [8] as i32;
        let x = Embedding(20, 8)(tokens);
        let a = MultiHeadAttention(num_heads = 2, key_dim = 4)(x, x);
        let x = LayerNormalization()(Add()([x, a]));
        let f = Dense(16, activation = gelu)(x);
        let f = Dense(8)(f);
        let x = LayerNormalization()(Add()([x, f]));
        output probs = Dense(3, activation = softmax)(GlobalAveragePooling1D()(x));
    }
}

#[test]
fn causal_self_attention_matches_keras() {
    let fx = fixture("attention_self_causal");
    let mut model = SelfCausal::new(0);
    set_params(&mut model, &fx);
    let inputs = SelfCausalInputs { x: view(&fx, "input/x") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&SelfCausalOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads::<SelfCausal>(&grads, &fx);
    set_params(&mut model, &fx);
    let mut trainer = model.compile(Adam::new(1e-2), SelfCausalLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &SelfCausalTargets { y: view(&fx, "target/y") }).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

#[test]
fn masked_cross_attention_matches_keras() {
    let fx = fixture("attention_cross_masked");
    let mut model = CrossMasked::new(0);
    set_params(&mut model, &fx);
    let inputs = CrossMaskedInputs { q: view(&fx, "input/q"), v: view(&fx, "input/v"), m: view(&fx, "input/m") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&CrossMaskedOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads::<CrossMasked>(&grads, &fx);
    set_params(&mut model, &fx);
    let mut trainer = model.compile(Adam::new(1e-2), CrossMaskedLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &CrossMaskedTargets { y: view(&fx, "target/y") }).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

#[test]
fn encoder_block_matches_keras() {
    let fx = fixture("attention_encoder");
    let mut model = Encoder::new(0);
    set_params(&mut model, &fx);
    let ids = get(&fx, "input/tokens").mapv(|v| v as i32).into_dimensionality().unwrap();
    let inputs = EncoderInputs { tokens: ids.view() };
    let out = model.predict(&inputs).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), get(&fx, "target/probs"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&EncoderOutputs { probs: d.into_dimensionality().unwrap() }).unwrap();
    check_grads::<Encoder>(&grads, &fx);
    set_params(&mut model, &fx);
    let mut trainer = model.compile(Adam::new(1e-2), EncoderLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &EncoderTargets { probs: view(&fx, "target/probs") }).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

#[test]
fn returned_attention_scores_and_their_gradients_match_keras() {
    let fx = fixture("attention_cross_scores");
    let mut model = CrossScores::new(0);
    set_params(&mut model, &fx);
    let inputs = CrossScoresInputs { q: view(&fx, "input/q"), v: view(&fx, "input/v") };
    let out = model.predict(&inputs).unwrap();
    assert_eq!(out.scores.shape(), &[6, 2, 4, 6]);
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("scores", out.scores.as_slice().unwrap(), get(&fx, "output/scores").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (ly, dy) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    let (ls, ds) = loss_and_grad(Loss::MeanSquaredError, &out.scores.into_dyn(), get(&fx, "target/scores"));
    assert_close("loss", &[(ly + ls) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads =
        model.backward(&CrossScoresOutputs { y: dy.into_dimensionality().unwrap(), scores: ds.into_dimensionality().unwrap() }).unwrap();
    check_grads::<CrossScores>(&grads, &fx);
    set_params(&mut model, &fx);
    let losses = CrossScoresLosses { y: Loss::MeanSquaredError, scores: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &CrossScoresTargets { y: view(&fx, "target/y"), scores: view(&fx, "target/scores") }).unwrap();
    }
    // `key/bias` has no true gradient (it shifts every score of a row alike, which the softmax ignores), so
    // both frameworks' Adam steps on it normalize float noise (~1e-8): those weights agree to 1.3e-5.
    check_adam3(&model, &fx, 5e-5);
}

#[test]
fn dot_product_attention_layer_with_scores_matches_keras() {
    let fx = fixture("attention_dot_scores");
    let mut model = DotScores::new(0);
    set_params(&mut model, &fx);
    let inputs = DotScoresInputs { q: view(&fx, "input/q"), v: view(&fx, "input/v") };
    let out = model.predict(&inputs).unwrap();
    assert_eq!(out.scores.shape(), &[6, 5, 6]);
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    assert_close("scores", out.scores.as_slice().unwrap(), get(&fx, "output/scores").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (ly, dy) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    let (ls, ds) = loss_and_grad(Loss::MeanSquaredError, &out.scores.into_dyn(), get(&fx, "target/scores"));
    assert_close("loss", &[(ly + ls) as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads =
        model.backward(&DotScoresOutputs { y: dy.into_dimensionality().unwrap(), scores: ds.into_dimensionality().unwrap() }).unwrap();
    check_grads::<DotScores>(&grads, &fx);
    set_params(&mut model, &fx);
    let losses = DotScoresLosses { y: Loss::MeanSquaredError, scores: Loss::MeanSquaredError };
    let mut trainer = model.compile(Adam::new(1e-2), losses, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &DotScoresTargets { y: view(&fx, "target/y"), scores: view(&fx, "target/scores") }).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

#[test]
fn concat_attention_layer_matches_keras() {
    let fx = fixture("attention_concat_self");
    let mut model = ConcatSelf::new(0);
    set_params(&mut model, &fx);
    let inputs = ConcatSelfInputs { x: view(&fx, "input/x") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&ConcatSelfOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads::<ConcatSelf>(&grads, &fx);
    set_params(&mut model, &fx);
    let mut trainer = model.compile(Adam::new(1e-2), ConcatSelfLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &ConcatSelfTargets { y: view(&fx, "target/y") }).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}
