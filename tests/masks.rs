//! Masks (issue #17, docs/masks.md): `Masking` and `Embedding(mask_zero = true)` make them, the layers
//! that support masking pass them on, merges OR them, and the recurrent layers, `Bidirectional`,
//! `GlobalAveragePooling1D` and the losses read them. Every masked path's gradients against finite
//! differences; a masked recurrent layer against the same layer run on the kept steps only; a masked
//! output's loss against Keras' `apply_mask` written out here.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3};
use modelc::prelude::*;

model! {
    /// Every recurrent cell on a masked sequence, carried sequences and last states, go_backwards.
    pub struct MaskedCells {
        input x: [6, 3];
        let m = Masking()(x);
        let a = LSTM(4, return_sequences = true)(m);
        let g = GRU(3, go_backwards = true, return_sequences = true)(Dense(3)(a));
        let s = SimpleRNN(2, go_backwards = true)(g);
        let l = LSTM(2)(a);
        output y = Concatenate()([GlobalAveragePooling1D()(g), s, l]);
        output z = TimeDistributed(Dense(2))(a);
    }
}

model! {
    /// An encoder-decoder on padded sequences: a masked encoder's final states (carried over its masked
    /// steps) start a masked decoder, which skips its masked steps too. (Keras 3.15 does not: a layer
    /// called with more than one tensor argument, here `initial_state`, gets no mask from its input, so
    /// its decoder steps through the padding while the mask still reaches the loss. No Keras fixture
    /// for this model, then.)
    pub struct MaskedSeq2Seq {
        input src: [5, 3];
        input tgt: [4, 2];
        let (enc, h, c) = LSTM(4, return_state = true)(Masking(0.0)(src));
        let dec = LSTM(4, return_sequences = true)(Masking(0.0)(tgt), initial_state = [h, c]);
        output y = Dense(2)(dec);
    }
}

model! {
    /// Bidirectional on a masked sequence: zero outputs at masked steps (Keras' `zero_output_for_mask`).
    pub struct MaskedBidi {
        input x: [5, 3];
        let m = Masking(mask_value = 0.0)(x);
        let c = Bidirectional(LSTM(3, return_sequences = true))(m);
        let s = Bidirectional(GRU(2, return_sequences = true), merge_mode = sum)(c);
        let last = Bidirectional(SimpleRNN(2), merge_mode = concat)(c);
        output y = Concatenate()([GlobalAveragePooling1D()(s), last]);
        output seq = c;
    }
}

model! {
    /// Token ids with padding id 0: the mask of `mask_zero` through a merge and pooling.
    pub struct Tokens {
        input ids: [6] as i32;
        input x: [6, 4];
        let e = Embedding(12, 4, mask_zero = true)(ids);
        let m = Masking()(x);
        let both = Add()([e, Dense(4)(m)]);
        output y = Dense(2)(GlobalAveragePooling1D()(both));
        output s = Dense(1)(GRU(3)(e));
    }
}

model! {
    /// MultiHeadAttention reading its query's, value's and key's masks, with an explicit mask and the
    /// causal one too.
    pub struct MaskedAttend {
        input ids: [6] as i32;
        input x: [5, 4];
        input m: [6, 5];
        let e = Embedding(12, 4, mask_zero = true)(ids);
        let s = MultiHeadAttention(2, 3)(e, e, use_causal_mask = true);
        let v = Masking()(x);
        let c = MultiHeadAttention(2, 2)(s, v, Dense(3)(v), attention_mask = m);
        output y = Dense(2)(GlobalAveragePooling1D()(c));
    }
}

model! {
    /// Keras' `Attention` reading its query's and value's masks: causal self-attention over padded
    /// tokens, additive cross-attention to a masked sequence, with a key and returned scores.
    pub struct MaskedDotAttend {
        input ids: [6] as i32;
        input x: [5, 4];
        let e = Embedding(12, 4, mask_zero = true)(ids);
        let s = Attention(use_scale = true)([e, e], use_causal_mask = true);
        let v = Masking()(x);
        let (c, p) = Attention(score_mode = concat)([s, v, Dense(4)(x)], return_attention_scores = true);
        output y = Dense(2)(Flatten()(c));
        output scores = Flatten()(p);
    }
}

model! {
    /// Masks joined along the steps (one operand unmasked), and both sequences of
    /// `Bidirectional(merge_mode = none)` masked.
    pub struct MaskedGlue {
        input x: [4, 3];
        input z: [3, 3];
        let m = Masking()(x);
        let s = GRU(3, return_sequences = true)(Concatenate(axis = 1)([z, m]));
        let (f, b) = Bidirectional(SimpleRNN(2, return_sequences = true), merge_mode = none)(m);
        output y = Dense(2)(Concatenate()([GlobalAveragePooling1D()(s), GlobalAveragePooling1D()(f), GlobalAveragePooling1D()(b)]));
        output steps = b;
    }
}

model! {
    /// The mean of the kept steps of padded token rows.
    pub struct PoolRows {
        input ids: [4] as i32;
        output y = GlobalAveragePooling1D()(Embedding(5, 3, mask_zero = true)(ids));
    }
}

model! {
    /// A masked LSTM's last state...
    pub struct Long {
        input x: [5, 2];
        output y = LSTM(3)(Masking()(x));
    }
}

model! {
    /// ...equals the unmasked LSTM's on the kept steps alone.
    pub struct Short {
        input x: [3, 2];
        output y = LSTM(3)(x);
    }
}

model! {
    /// A per-step output carrying a mask: its loss leaves the masked steps out.
    pub struct PerStep {
        input x: [4, 3];
        output y = Dense(2)(Masking()(x));
    }
}

/// Uniform inputs in [-1, 1] with the steps `masked` (sample, step) set to 0 everywhere: gaps, a
/// masked first step and a masked suffix.
fn masked_input(shape: (usize, usize, usize), seed: u64, masked: &[(usize, usize)]) -> Array3<f32> {
    let mut rng = Rng::new(seed);
    let mut x = Array3::from_shape_fn(shape, |_| rng.uniform(-1.0, 1.0));
    for &(n, t) in masked {
        x.slice_mut(modelc::ndarray::s![n, t, ..]).fill(0.0);
    }
    x
}

const GAPS: &[(usize, usize)] = &[(0, 1), (0, 4), (1, 0), (1, 5), (2, 3), (2, 4), (2, 5)];

#[test]
fn masked_recurrent_layers_gradients_match_finite_differences() {
    let mut model = MaskedCells::new(3);
    let x = masked_input((3, 6, 3), 1, GAPS);
    let report = check_gradients(&mut model, &MaskedCellsInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 4).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn a_masked_seq2seq_gradients_match_finite_differences() {
    let mut model = MaskedSeq2Seq::new(3);
    let src = masked_input((3, 5, 3), 3, &[(0, 0), (0, 4), (1, 2), (2, 3), (2, 4)]);
    let tgt = masked_input((3, 4, 2), 4, &[(0, 3), (1, 0), (2, 1), (2, 2)]);
    let report = check_gradients(&mut model, &MaskedSeq2SeqInputs { src: src.view(), tgt: tgt.view() }, 1e-2, 2e-3, 2e-2, 4).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn masked_bidirectional_gradients_match_finite_differences_and_masked_steps_are_zero() {
    let mut model = MaskedBidi::new(5);
    let x = masked_input((3, 5, 3), 2, &[(0, 1), (1, 0), (1, 4), (2, 2)]);
    let report = check_gradients(&mut model, &MaskedBidiInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
    let seq = model.predict(&MaskedBidiInputs { x: x.view() }).unwrap().seq;
    for n in 0..3 {
        for t in 0..5 {
            let zero = seq.slice(modelc::ndarray::s![n, t, ..]).iter().all(|v| *v == 0.0);
            assert_eq!(zero, x.slice(modelc::ndarray::s![n, t, ..]).iter().all(|v| *v == 0.0), "sample {n} step {t}");
        }
    }
}

#[test]
fn masks_of_ids_and_merges_gradients_match_finite_differences() {
    let mut model = Tokens::new(7);
    let ids = Array2::from_shape_vec((2, 6), vec![3, 0, 5, 7, 0, 0, 0, 1, 2, 11, 4, 9]).unwrap();
    let x = masked_input((2, 6, 4), 3, &[(0, 0), (0, 1), (1, 0), (1, 3)]);
    let report = check_gradients(&mut model, &TokensInputs { ids: ids.view(), x: x.view() }, 1e-2, 2e-3, 2e-2, 8).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn attention_reading_masks_gradients_match_finite_differences() {
    let mut model = MaskedAttend::new(9);
    let ids = Array2::from_shape_vec((2, 6), vec![3, 5, 0, 7, 0, 0, 1, 2, 11, 4, 9, 6]).unwrap();
    let x = masked_input((2, 5, 4), 7, &[(0, 1), (1, 4)]);
    let m = Array3::from_shape_fn((2, 6, 5), |(n, i, j)| if (n + i + j) % 7 == 0 { 0.0 } else { 1.0 });
    let inputs = MaskedAttendInputs { ids: ids.view(), x: x.view(), m: m.view() };
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 10).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn dot_attention_reading_masks_gradients_match_finite_differences() {
    let mut model = MaskedDotAttend::new(11);
    let ids = Array2::from_shape_vec((2, 6), vec![3, 5, 0, 7, 0, 0, 1, 2, 11, 4, 9, 6]).unwrap();
    let x = masked_input((2, 5, 4), 7, &[(0, 1), (1, 4)]);
    let inputs = MaskedDotAttendInputs { ids: ids.view(), x: x.view() };
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 12).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
    // Masked query steps (ids 0) output 0 before the Dense; the scores of a masked value step are 0.
    let out = model.predict(&inputs).unwrap();
    let scores = out.scores.into_shape_with_order((2, 6, 5)).unwrap();
    for n in 0..2 {
        for i in 0..6 {
            for j in 0..5 {
                let masked = x.slice(modelc::ndarray::s![n, j, ..]).iter().all(|v| *v == 0.0);
                assert_eq!(scores[[n, i, j]] == 0.0, masked, "sample {n} query {i} key {j}");
            }
        }
    }
}

#[test]
fn masks_through_concatenate_on_steps_and_bidirectional_without_merge_gradients_match_finite_differences() {
    let mut model = MaskedGlue::new(13);
    let x = masked_input((3, 4, 3), 5, &[(0, 0), (1, 2), (2, 3)]);
    let z = masked_input((3, 3, 3), 6, &[]);
    let inputs = MaskedGlueInputs { x: x.view(), z: z.view() };
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 14).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
    // The backward sequence is 0 at masked steps (Keras' zero_output_for_mask inside Bidirectional).
    let steps = model.predict(&inputs).unwrap().steps;
    for n in 0..3 {
        for t in 0..4 {
            let zero = steps.slice(modelc::ndarray::s![n, t, ..]).iter().all(|v| *v == 0.0);
            assert_eq!(zero, x.slice(modelc::ndarray::s![n, t, ..]).iter().all(|v| *v == 0.0), "sample {n} step {t}");
        }
    }
}

#[test]
fn a_fully_masked_row_pools_to_keras_nan_and_passes_no_gradient() {
    // Keras 3: `sum(where(m, x, 0)) / sum(m)` is 0 / 0 = NaN for a row without a kept step, and the
    // gradient of `where` gives its steps 0 (checked in Keras 3.15, JAX: docs/masks.md).
    let mut model = PoolRows::new(3);
    let both = Array2::from_shape_vec((2, 4), vec![0, 0, 0, 0, 2, 0, 4, 1]).unwrap();
    let y = model.predict(&PoolRowsInputs { ids: both.view() }).unwrap().y;
    assert!(y.row(0).iter().all(|v| v.is_nan()), "{y:?}");
    let emb: Vec<f32> = model.param("embedding/embeddings").unwrap().iter().copied().collect();
    for (c, v) in y.row(1).iter().enumerate() {
        let want = (emb[2 * 3 + c] + emb[4 * 3 + c] + emb[3 + c]) / 3.0;
        assert!((v - want).abs() < 1e-6, "channel {c}: {v} vs {want}");
    }
    let mut grads = |ids: &Array2<i32>| {
        model.forward(&PoolRowsInputs { ids: ids.view() }, true).unwrap();
        model.backward(&PoolRowsOutputs { y: Array2::ones((ids.nrows(), 3)) }).unwrap().into_vec()
    };
    let kept = Array2::from_shape_vec((1, 4), vec![2, 0, 4, 1]).unwrap();
    let (g_both, g_kept) = (grads(&both), grads(&kept));
    assert!(g_both.iter().all(|g| g.is_finite()));
    assert_eq!(g_both, g_kept, "the masked row passes no gradient");
}

#[test]
fn a_masked_lstm_skips_masked_steps_exactly() {
    let mut long = Long::new(1);
    let mut short = Short::new(2);
    for name in ["lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias"] {
        let p = long.param(name).unwrap().to_owned();
        short.set_param(name, p.view()).unwrap();
    }
    // Sample 0 keeps steps 0, 2, 3; sample 1 keeps 1, 2, 4 (masked first and in between).
    let x = masked_input((2, 5, 2), 4, &[(0, 1), (0, 4), (1, 0), (1, 3)]);
    let kept = [[0, 2, 3], [1, 2, 4]];
    let compact = Array3::from_shape_fn((2, 3, 2), |(n, t, k)| x[[n, kept[n][t], k]]);
    let y = long.predict(&LongInputs { x: x.view() }).unwrap().y;
    let want = short.predict(&ShortInputs { x: compact.view() }).unwrap().y;
    for (a, b) in y.iter().zip(want.iter()) {
        assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
    }
}

#[test]
fn a_masked_output_s_loss_weighs_out_masked_steps_as_keras_apply_mask() {
    let mut model = PerStep::new(3);
    let x = masked_input((2, 4, 3), 5, &[(0, 2), (0, 3), (1, 1)]);
    let t = masked_input((2, 4, 2), 6, &[]);
    let p = model.predict(&PerStepInputs { x: x.view() }).unwrap().y;
    // Keras: per-step mean squared errors, weighted by mask · total / valid, mean over all steps.
    let mask = [[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0]];
    let mut sum = 0.0f64;
    for n in 0..2 {
        for s in 0..4 {
            let l: f32 = (0..2).map(|k| (p[[n, s, k]] - t[[n, s, k]]).powi(2)).sum::<f32>() / 2.0;
            sum += f64::from(l * mask[n][s]);
        }
    }
    let want = sum / 5.0;
    let mut trainer = model.compile(Sgd::new(0.1), PerStepLosses { y: Loss::MeanSquaredError }, &[]);
    let targets = PerStepTargets { y: t.view() };
    let (loss, grads) = trainer.compute_gradients(&PerStepInputs { x: x.view() }, &targets).unwrap();
    assert!((loss - want).abs() < 1e-6, "loss {loss} vs Keras' {want}");
    assert!(grads.iter().all(|g| g.is_finite()) && grads.iter().any(|g| *g != 0.0));
    let logs = trainer.test_on_batch(&PerStepInputs { x: x.view() }, &targets).unwrap();
    assert!((logs["loss"] - want).abs() < 1e-6, "evaluation loss {} vs {want}", logs["loss"]);
}
