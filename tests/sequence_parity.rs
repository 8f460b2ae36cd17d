//! Parity of the recurrent layers (issue #17) with Keras itself, against the fixtures written by
//! `scripts/keras_sequences.py` (Keras 3, JAX backend) in the format of tests/keras_parity.rs: outputs
//! within 1e-5, the training loss, every gradient within 1e-4 relative, the weights after three
//! Adam(1e-2) steps. An encoder-decoder (return_state, initial_state), a model of every cell and option, and
//! `Bidirectional` with every merge mode. Masks (docs/masks.md): padded token rows through
//! `Embedding(mask_zero = true)` and pooling, `Masking` with a per-step loss on a masked output, and
//! masked LSTM, GRU and Bidirectional layers; and the options those leave out (SimpleRNN's states,
//! LSTM going backwards, GRU's activations).

use modelc::prelude::*;

use crate::parity;
use parity::*;

model! {
    /// The encoder's final states start the decoder (scripts/keras_sequences.py, `seq2seq`).
    struct Seq2Seq {
        input src: [5, 3];
        input tgt: [4, 2];
        let (enc, h, c) = LSTM(6, return_state = true)(src);
        let dec = LSTM(6, return_sequences = true)(tgt, initial_state = [h, c]);
        output y = Dense(3)(dec);
    }
}

model! {
    /// Every cell and option (scripts/keras_sequences.py, `rnn_cells`).
    struct RnnCells {
        input x: [6, 3];
        let a = SimpleRNN(4, return_sequences = true, go_backwards = true)(x);
        let (b, hb) = GRU(5, return_sequences = true, return_state = true)(a);
        let g = GRU(3, go_backwards = true, use_bias = false)(b, initial_state = [Dense(3)(hb)]);
        let l = LSTM(4, activation = relu, recurrent_activation = tanh, unit_forget_bias = false)(x);
        let s = SimpleRNN(2, activation = sigmoid, use_bias = false)(b);
        output y = Concatenate()([g, l, s, hb]);
    }
}

model! {
    /// Bidirectional with every merge mode, states in and out (scripts/keras_sequences.py, `bidirectional`).
    struct Bidi {
        input x: [5, 3];
        let c = Bidirectional(LSTM(3, return_sequences = true))(x);
        let (f, b, hf, hb) = Bidirectional(GRU(2, return_state = true), merge_mode = none)(c);
        let s = Bidirectional(SimpleRNN(2, return_sequences = true), merge_mode = sum)(c, initial_state = [hf, hb]);
        let m = Bidirectional(GRU(2), merge_mode = mul)(s);
        let a = Bidirectional(LSTM(2), merge_mode = ave)(c);
        output y = Concatenate()([f, b, hf, hb, m, a, GlobalAveragePooling1D()(s)]);
    }
}

model! {
    /// The options the models above leave out (scripts/keras_sequences.py, `rnn_options`): SimpleRNN
    /// returning its state and started from one, LSTM going backwards with its reversed sequence and its
    /// states out from computed initial states, GRU with other activations going backwards over it.
    struct RnnOptions {
        input x: [5, 3];
        let (s, h) = SimpleRNN(4, return_sequences = true, return_state = true)(x);
        let h0 = Dense(3)(h);
        let c0 = Dense(3, activation = tanh)(h);
        let (seq, hl, cl) = LSTM(3, go_backwards = true, return_sequences = true, return_state = true)(s, initial_state = [h0, c0]);
        let r = SimpleRNN(2, go_backwards = true)(seq, initial_state = [Dense(2)(hl)]);
        let g = GRU(2, activation = elu, recurrent_activation = tanh, go_backwards = true, return_sequences = true)(seq);
        output y = Concatenate()([Flatten()(seq), hl, cl, h, r, GlobalAveragePooling1D()(g)]);
    }
}

model! {
    /// Padded token rows (scripts/keras_sequences.py, `masked_tokens`).
    struct MaskedTokens {
        input ids: [7] as i32;
        let e = Embedding(20, 8, mask_zero = true)(ids);
        output y = Dense(3)(GlobalAveragePooling1D()(e));
    }
}

model! {
    /// A per-step loss on a masked sequence output (scripts/keras_sequences.py, `masked_steps`).
    struct MaskedSteps {
        input x: [6, 3];
        let m = Masking(0.0)(x);
        let h = TimeDistributed(Dense(4, activation = tanh))(m);
        output y = Dense(2)(h);
    }
}

model! {
    /// Masked recurrent layers (scripts/keras_sequences.py, `masked_lstm`).
    struct MaskedLstm {
        input x: [6, 3];
        let m = Masking(0.0)(x);
        let s = LSTM(4, return_sequences = true)(m);
        let g = GRU(3, go_backwards = true)(s);
        let b = Bidirectional(SimpleRNN(2, return_sequences = true))(s);
        output y = Dense(2)(Concatenate()([g, GlobalAveragePooling1D()(b)]));
    }
}

/// Outputs, the loss and gradients (taken by the trainer, which weighs a masked output's steps as
/// Keras' `apply_mask`), and three Adam steps, against fixture `name`.
macro_rules! masked_parity {
    ($name:literal, $model:ident, $fx:ident => $inputs:expr, $targets:ident, $losses:ident) => {{
        let $fx = fixture($name);
        let fx = &$fx;
        let mut model = $model::new(0);
        set_params(&mut model, fx);
        let inputs = $inputs;
        let out = model.predict(&inputs).unwrap();
        assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 1e-5);
        let targets = $targets { y: view(fx, "target/y") };
        let mut trainer = model.compile(Adam::new(1e-2), $losses { y: Loss::MeanSquaredError }, &[]);
        let (loss, grads) = trainer.compute_gradients(&inputs, &targets).unwrap();
        assert_close("loss", &[loss as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
        for spec in <$model as modelc::network::Network>::PARAMS {
            let want = get(&fx, &format!("grad/{}", spec.name));
            let scale = want.iter().fold(1.0f32, |a, v| a.max(v.abs()));
            assert_close(&format!("gradient of {}", spec.name), &grads[spec.range()], want.as_slice().unwrap(), 1e-6 * scale, 1e-4);
        }
        for _ in 0..3 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
        check_adam3(&model, fx, 1e-5);
    }};
}

model! {
    /// MultiHeadAttention reading its operands' masks (scripts/keras_sequences.py, `masked_attention`).
    struct MaskedAttention {
        input ids: [7] as i32;
        input x: [5, 3];
        let e = Embedding(20, 8, mask_zero = true)(ids);
        let a = MultiHeadAttention(2, 4)(e, e, use_causal_mask = true);
        let m = Dense(8)(Masking(0.0)(x));
        let c = MultiHeadAttention(2, 3)(a, m);
        output y = Dense(2)(GlobalAveragePooling1D()(c));
    }
}

#[test]
fn attention_reading_masks_matches_keras() {
    let ids = fixture("masked_attention")["input/ids"].mapv(|v| v as i32).into_dimensionality().unwrap();
    masked_parity!(
        "masked_attention",
        MaskedAttention,
        f => MaskedAttentionInputs { ids: ids.view(), x: view(&f, "input/x") },
        MaskedAttentionTargets,
        MaskedAttentionLosses
    );
}

model! {
    /// Keras' `Attention` reading its operands' masks (scripts/keras_sequences.py, `masked_dot_attention`).
    struct MaskedDotAttention {
        input ids: [7] as i32;
        input x: [5, 6];
        let e = Embedding(20, 6, mask_zero = true)(ids);
        let a = Attention(use_scale = true)([e, e], use_causal_mask = true);
        let m = Masking(0.0)(x);
        let c = Attention(score_mode = concat)([a, m]);
        let d = Attention()([Dense(6)(x), m], use_causal_mask = true);
        output y = Dense(2)(Concatenate()([Flatten()(c), Flatten()(d)]));
    }
}

#[test]
fn dot_attention_reading_masks_matches_keras() {
    // Masked query steps output 0, masked value steps get no weight, and a kept query step whose every
    // key is masked (causal, over a value masked at its first step) gets Keras' s − 1e9 softmax.
    let fx = fixture("masked_dot_attention");
    let x = get(&fx, "input/x");
    assert!(x.slice(modelc::ndarray::s![0, 0, ..]).iter().all(|v| *v == 0.0), "the fixture masks the first step of sample 0");
    let ids = fx["input/ids"].mapv(|v| v as i32).into_dimensionality().unwrap();
    masked_parity!(
        "masked_dot_attention",
        MaskedDotAttention,
        f => MaskedDotAttentionInputs { ids: ids.view(), x: view(&f, "input/x") },
        MaskedDotAttentionTargets,
        MaskedDotAttentionLosses
    );
}

model! {
    /// Masks joined along the steps, and both sequences of `Bidirectional(merge_mode = none)` masked
    /// (scripts/keras_sequences.py, `masked_glue`).
    struct MaskedGlue {
        input x: [5, 3];
        input z: [4, 3];
        let m = Masking(0.0)(x);
        let s = LSTM(4, return_sequences = true)(Concatenate(axis = 1)([m, z]));
        let (f, b) = Bidirectional(GRU(3, return_sequences = true), merge_mode = none)(m);
        let pools = Concatenate()([GlobalAveragePooling1D()(s), GlobalAveragePooling1D()(f), GlobalAveragePooling1D()(b)]);
        output y = Dense(2)(pools);
    }
}

#[test]
fn masks_through_concatenate_on_steps_and_bidirectional_without_merge_match_keras() {
    masked_parity!(
        "masked_glue",
        MaskedGlue,
        f => MaskedGlueInputs { x: view(&f, "input/x"), z: view(&f, "input/z") },
        MaskedGlueTargets,
        MaskedGlueLosses
    );
}

model! {
    /// A masked per-step output for the metrics (scripts/keras_sequences.py, `masked_metrics`).
    struct MaskedMetrics {
        input x: [4, 3];
        output y = Dense(3)(Masking(0.0)(x));
    }
}

#[test]
fn metrics_of_a_masked_output_weigh_its_steps_by_the_mask_as_keras() {
    // Keras 3 passes the mask to its mean metrics as sample weights: Σ m·v / Σ m over every batch (two
    // here, the second partial); RootMeanSquaredError's squared errors lose the mask.
    let fx = fixture("masked_metrics");
    let mut model = MaskedMetrics::new(0);
    set_params(&mut model, &fx);
    let inputs = MaskedMetricsInputs { x: view(&fx, "input/x") };
    let targets = MaskedMetricsTargets { y: view(&fx, "target/y") };
    let metrics = [Metric::MeanAbsoluteError, Metric::MeanSquaredError, Metric::CategoricalAccuracy, Metric::RootMeanSquaredError];
    let mut trainer = model.compile(Sgd::new(0.01), MaskedMetricsLosses { y: Loss::MeanSquaredError }, &metrics);
    let logs = trainer.evaluate(&inputs, &targets, 4).unwrap();
    for (ours, keras) in [
        ("loss", "loss"),
        ("mean_absolute_error", "mae"),
        ("mean_squared_error", "mse"),
        ("categorical_accuracy", "categorical_accuracy"),
        ("root_mean_squared_error", "root_mean_squared_error"),
    ] {
        let got = logs.get(ours).copied().unwrap_or_else(|| panic!("no `{ours}` in {logs:?}"));
        assert_close(ours, &[got as f32], get(&fx, &format!("metric/{keras}")).as_slice().unwrap(), 1e-5, 1e-5);
    }
    // A weighted metric weighs each step by mask · sample weight (Keras refuses per-sample weights with
    // a per-step mask: broadcasting (batch,) against (batch, steps)), here against the sum by hand.
    let x = view::<modelc::ndarray::Ix3>(&fx, "input/x");
    let y = view::<modelc::ndarray::Ix3>(&fx, "target/y");
    let w = vec![1.0f32, 2.0, 0.5, 1.0, 3.0, 1.0];
    let pred = model.predict(&inputs).unwrap().y;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for n in 0..6 {
        for t in 0..4 {
            if x.slice(modelc::ndarray::s![n, t, ..]).iter().any(|v| *v != 0.0) {
                let e: f32 = (0..3).map(|c| (pred[[n, t, c]] - y[[n, t, c]]).abs()).sum::<f32>() / 3.0;
                num += f64::from(w[n] * e);
                den += f64::from(w[n]);
            }
        }
    }
    let mut trainer = model
        .compile(Sgd::new(0.01), MaskedMetricsLosses { y: Loss::MeanSquaredError }, &[])
        .with_weighted_metrics(MaskedMetricsPerOutput { y: vec![Metric::MeanAbsoluteError] });
    let logs = trainer.evaluate_weighted(&inputs, &targets, 4, &SampleWeight::All(w)).unwrap();
    assert_close("weighted mae", &[logs["mean_absolute_error"] as f32], &[(num / den) as f32], 1e-5, 1e-5);
}

#[test]
fn masked_token_rows_match_keras() {
    let ids = fixture("masked_tokens")["input/ids"].mapv(|v| v as i32).into_dimensionality().unwrap();
    masked_parity!("masked_tokens", MaskedTokens, f => MaskedTokensInputs { ids: ids.view() }, MaskedTokensTargets, MaskedTokensLosses);
}

#[test]
fn a_masked_per_step_loss_matches_keras() {
    masked_parity!("masked_steps", MaskedSteps, f => MaskedStepsInputs { x: view(&f, "input/x") }, MaskedStepsTargets, MaskedStepsLosses);
}

#[test]
fn masked_recurrent_layers_match_keras() {
    masked_parity!("masked_lstm", MaskedLstm, f => MaskedLstmInputs { x: view(&f, "input/x") }, MaskedLstmTargets, MaskedLstmLosses);
}

#[test]
fn seq2seq_matches_keras() {
    let fx = fixture("seq2seq");
    let mut model = Seq2Seq::new(0);
    set_params(&mut model, &fx);
    let inputs = Seq2SeqInputs { src: view(&fx, "input/src"), tgt: view(&fx, "input/tgt") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&Seq2SeqOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads_scaled::<Seq2Seq>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = Seq2SeqTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(1e-2), Seq2SeqLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

#[test]
fn every_cell_and_option_matches_keras() {
    let fx = fixture("rnn_cells");
    let mut model = RnnCells::new(0);
    set_params(&mut model, &fx);
    let inputs = RnnCellsInputs { x: view(&fx, "input/x") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&RnnCellsOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads_scaled::<RnnCells>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = RnnCellsTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(1e-2), RnnCellsLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

#[test]
fn the_remaining_recurrent_options_match_keras() {
    let fx = fixture("rnn_options");
    let mut model = RnnOptions::new(0);
    set_params(&mut model, &fx);
    let inputs = RnnOptionsInputs { x: view(&fx, "input/x") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&RnnOptionsOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads_scaled::<RnnOptions>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = RnnOptionsTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(1e-2), RnnOptionsLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}

#[test]
fn bidirectional_matches_keras() {
    let fx = fixture("bidirectional");
    let mut model = Bidi::new(0);
    set_params(&mut model, &fx);
    let inputs = BidiInputs { x: view(&fx, "input/x") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 1e-5);

    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&BidiOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads_scaled::<Bidi>(&grads, &fx);

    set_params(&mut model, &fx);
    let targets = BidiTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(1e-2), BidiLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam3(&model, &fx, 1e-5);
}
