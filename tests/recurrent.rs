//! Recurrent layers (issue #17): SimpleRNN, LSTM and GRU end to end, and the multi-result calls and
//! keyword tensor arguments they use (`let (y, h, c) = LSTM(.., return_state = true)(x)`,
//! `LSTM(..)(y, initial_state = [h, c])`). Every parameter and input gradient against finite
//! differences, for every cell and option; forward against a direct loop written here; Keras names,
//! layouts and initializers.

use modelc::gradcheck::check_gradients;
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3};
use modelc::prelude::*;

model! {
    /// An encoder-decoder: the encoder's final states start the decoder.
    pub struct Seq2Seq {
        input src: [5, 3];
        input tgt: [4, 2];
        let (enc, h, c) = LSTM(6, return_state = true)(src);
        let dec = LSTM(6, return_sequences = true)(tgt, initial_state = [h, c]);
        let both = Concatenate()([Dense(6)(enc), GlobalAveragePooling1D()(dec)]);
        output y = Dense(2)(both);
    }
}

model! {
    /// Every cell and option: go_backwards, return_sequences, other activations, no bias, GRU states.
    pub struct Cells {
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
    /// The options `Cells` leaves out: SimpleRNN returning its state and started from one, LSTM going
    /// backwards with its sequence and states out from computed initial states, GRU with other
    /// activations going backwards over that reversed sequence.
    pub struct Options {
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
    /// One LSTM whose output is the last state, for the direct-loop check.
    pub struct One {
        input x: [3, 2];
        output y = LSTM(2)(x);
    }
}

model! {
    /// Bidirectional with every merge mode, states in and out.
    pub struct Both {
        input x: [5, 3];
        let c = Bidirectional(LSTM(3, return_sequences = true))(x);
        let (f, b, hf, cf, hb, cb) = Bidirectional(LSTM(2, return_state = true), merge_mode = none)(c);
        let s = Bidirectional(GRU(2, return_sequences = true), merge_mode = sum)(c, initial_state = [hf, hb]);
        let m = Bidirectional(SimpleRNN(2), merge_mode = mul)(s);
        let a = Bidirectional(GRU(2, go_backwards = true), merge_mode = ave)(c);
        output y = Concatenate()([f, b, hf, cf, hb, cb, m, a, GlobalAveragePooling1D()(s)]);
    }
}

fn random3(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    let mut rng = Rng::new(seed);
    Array3::from_shape_fn(shape, |_| rng.uniform(-1.0, 1.0))
}

#[test]
fn seq2seq_gradients_match_finite_differences() {
    let mut model = Seq2Seq::new(3);
    let (src, tgt) = (random3((2, 5, 3), 1), random3((2, 4, 2), 2));
    let inputs = Seq2SeqInputs { src: src.view(), tgt: tgt.view() };
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 4).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn every_cell_and_option_gradients_match_finite_differences() {
    let mut model = Cells::new(5);
    let x = random3((3, 6, 3), 3);
    let report = check_gradients(&mut model, &CellsInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn the_remaining_options_gradients_match_finite_differences() {
    let mut model = Options::new(5);
    let x = random3((3, 5, 3), 4);
    let report = check_gradients(&mut model, &OptionsInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

#[test]
fn lstm_forward_matches_a_direct_loop_in_keras_gate_order() {
    let mut model = One::new(7);
    let x = random3((2, 3, 2), 9);
    let y = model.predict(&OneInputs { x: x.view() }).unwrap().y;
    let w = model.param("lstm/lstm_cell/kernel").unwrap().to_owned();
    let r = model.param("lstm/lstm_cell/recurrent_kernel").unwrap().to_owned();
    let b = model.param("lstm/lstm_cell/bias").unwrap().to_owned();
    assert_eq!(w.shape(), &[2, 8]);
    assert_eq!(r.shape(), &[2, 8]);
    // unit_forget_bias: the forget block (second of i, f, c, o) starts at one.
    assert_eq!(b.iter().copied().collect::<Vec<f32>>(), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    for n in 0..2 {
        let (mut h, mut c) = ([0.0f32; 2], [0.0f32; 2]);
        for t in 0..3 {
            let mut z = [0.0f32; 8];
            for (j, zj) in z.iter_mut().enumerate() {
                *zj = b[[j]] + (0..2).map(|k| x[[n, t, k]] * w[[k, j]] + h[k] * r[[k, j]]).sum::<f32>();
            }
            for u in 0..2 {
                let (i, f, g, o) = (sigmoid(z[u]), sigmoid(z[2 + u]), z[4 + u].tanh(), sigmoid(z[6 + u]));
                c[u] = f * c[u] + i * g;
                h[u] = o * c[u].tanh();
            }
        }
        for u in 0..2 {
            assert!((y[[n, u]] - h[u]).abs() < 1e-5, "sample {n} unit {u}: {} vs {}", y[[n, u]], h[u]);
        }
    }
}

#[test]
fn recurrent_weights_have_keras_names_layouts_and_initializers() {
    let model = Cells::new(1);
    assert_eq!(model.param("gru/gru_cell/bias").unwrap().shape(), &[2, 15]);
    assert_eq!(model.param("gru/gru_cell/kernel").unwrap().shape(), &[4, 15]);
    assert!(model.param("gru_1/gru_cell/bias").is_err(), "use_bias = false has no bias");
    assert_eq!(model.param("simple_rnn/simple_rnn_cell/recurrent_kernel").unwrap().shape(), &[4, 4]);
    // The recurrent kernel is orthogonal: R·Rᵀ = I for a square one.
    let r = model.param("simple_rnn/simple_rnn_cell/recurrent_kernel").unwrap().to_owned();
    for i in 0..4 {
        for j in 0..4 {
            let dot: f32 = (0..4).map(|k| r[[i, k]] * r[[j, k]]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-4, "row {i} . row {j} = {dot}");
        }
    }
    assert!(Seq2Seq::SUMMARY.contains("[(None, 6), (None, 6), (None, 6)]"), "{}", Seq2Seq::SUMMARY);
}

#[test]
fn a_recurrent_model_trains() {
    // The sum of a sequence's first feature, learned by an LSTM: the loss falls.
    let mut model = One::new(2);
    let mut rng = Rng::new(4);
    let x = Array3::from_shape_fn((64, 3, 2), |_| rng.uniform(-1.0, 1.0));
    let t = Array2::from_shape_fn((64, 2), |(n, _)| (0..3).map(|s| x[[n, s, 0]]).sum::<f32>() * 0.3);
    let mut trainer = model.compile(Adam::new(0.03), OneLosses { y: Loss::MeanSquaredError }, &[]);
    let (inputs, targets) = (OneInputs { x: x.view() }, OneTargets { y: t.view() });
    let h = trainer.fit(&inputs, &targets, &Fit { epochs: 60, batch_size: 16, verbose: false, ..Fit::default() }).unwrap();
    let losses = h.get("loss").unwrap();
    let (a, b) = (losses[0], losses[losses.len() - 1]);
    assert!(b < a * 0.3, "loss {a} -> {b}");
}

/// A batch of one runs each step's products as matrix-vector products (`sgemv`, `sgemv_t`) instead
/// of the GEMM: every cell and option, and Bidirectional, against finite differences there too.
#[test]
fn every_cell_gradients_match_finite_differences_at_batch_one() {
    let mut cells = Cells::new(5);
    let x = random3((1, 6, 3), 13);
    let report = check_gradients(&mut cells, &CellsInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 6).unwrap();
    assert_eq!(report.checked, cells.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
    let mut both = Both::new(8);
    let x = random3((1, 5, 3), 14);
    let report = check_gradients(&mut both, &BothInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 7).unwrap();
    assert_eq!(report.checked, both.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn bidirectional_gradients_match_finite_differences_for_every_merge_mode() {
    let mut model = Both::new(8);
    let x = random3((3, 5, 3), 12);
    let out = model.predict(&BothInputs { x: x.view() }).unwrap();
    assert_eq!(out.y.dim(), (3, 2 + 2 + 2 * 4 + 2 + 2 + 2));
    let report = check_gradients(&mut model, &BothInputs { x: x.view() }, 1e-2, 2e-3, 2e-2, 7).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
    assert_eq!(model.param("bidirectional/forward_lstm/lstm_cell/kernel").unwrap().shape(), &[3, 12]);
    assert_eq!(model.param("bidirectional/backward_lstm/lstm_cell/recurrent_kernel").unwrap().shape(), &[3, 12]);
    assert_eq!(model.param("bidirectional_2/backward_gru/gru_cell/bias").unwrap().shape(), &[2, 6]);
}
