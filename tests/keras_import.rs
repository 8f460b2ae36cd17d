//! Keras import, end to end: the golden sources `modelc import` wrote for the Keras models of
//! `scripts/keras_import.py` (checked against the importer by `modelc-cli/tests/goldens.rs`) compile
//! here, load the weights the importer wrote, and predict what Keras predicted on the same batch
//! within 1e-5.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use modelc::io::read_tensors;
use modelc::ndarray::{ArrayD, ArrayView, Dimension, Ix2, Ix3, Ix4};
use modelc::network::Network;
use std::collections::BTreeMap;

mod mlp {
    use modelc::prelude::*;
    include!("fixtures/keras_import/mlp.rs");
}
mod graph {
    use modelc::prelude::*;
    include!("fixtures/keras_import/graph.rs");
}
mod vision {
    use modelc::prelude::*;
    include!("fixtures/keras_import/vision.rs");
}
mod sequence {
    use modelc::prelude::*;
    include!("fixtures/keras_import/sequence.rs");
}
mod nested {
    use modelc::prelude::*;
    include!("fixtures/keras_import/nested.rs");
}
mod masked {
    use modelc::prelude::*;
    include!("fixtures/keras_import/masked.rs");
}

mod masked_attention {
    use modelc::prelude::*;
    include!("fixtures/keras_import/masked_attention.rs");
}

mod seq2seq {
    use modelc::prelude::*;
    include!("fixtures/keras_import/seq2seq.rs");
}

mod masked_glue {
    use modelc::prelude::*;
    include!("fixtures/keras_import/masked_glue.rs");
}

mod recurrent {
    use modelc::prelude::*;
    include!("fixtures/keras_import/recurrent.rs");
}

mod recurrent_sum {
    use modelc::prelude::*;
    include!("fixtures/keras_import/recurrent_sum.rs");
}

mod seq_attention {
    use modelc::prelude::*;
    include!("fixtures/keras_import/seq_attention.rs");
}

mod cross_attention {
    use modelc::prelude::*;
    include!("fixtures/keras_import/cross_attention.rs");
}

mod mixed {
    use modelc::prelude::*;
    include!("fixtures/keras_import/mixed.rs");
}

type Tensors = BTreeMap<String, ArrayD<f32>>;

fn path(file: &str) -> String {
    format!("{}/tests/fixtures/keras_import/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// The fixed batch and Keras' predictions on it.
fn io(model: &str) -> Tensors {
    read_tensors(path(&format!("{model}.io.safetensors"))).unwrap()
}

fn view<'f, D: Dimension>(t: &'f Tensors, key: &str) -> ArrayView<'f, f32, D> {
    t.get(key).unwrap_or_else(|| panic!("no `{key}`")).view().into_dimensionality::<D>().unwrap()
}

/// A model with the weights the importer wrote, every parameter filled.
fn loaded<N: Network>(mut model: N, name: &str) -> N {
    modelc::io::load(&mut model, path(&format!("{name}.weights.safetensors"))).unwrap();
    let file = read_tensors(path(&format!("{name}.weights.safetensors"))).unwrap();
    assert_eq!(file.len(), N::PARAMS.len(), "{name}: every parameter comes from the file");
    model
}

fn assert_close(what: &str, got: &[f32], want: &ArrayD<f32>) {
    let want = want.as_slice().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: {} values vs {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{what}[{i}]: modelc {g} vs Keras {w}");
    }
}

#[test]
fn imported_sequential_model_predicts_what_keras_predicts() {
    let t = io("mlp");
    let mut m = loaded(mlp::Mlp::new(0), "mlp");
    let out = m.predict(&mlp::MlpInputs { x: view::<Ix2>(&t, "input/x") }).unwrap();
    assert_close("mlp probs", out.probs.as_slice().unwrap(), &t["output/probs"]);
}

#[test]
fn imported_graph_with_two_inputs_two_outputs_and_a_shared_layer_predicts_what_keras_predicts() {
    let t = io("graph");
    let mut m = loaded(graph::Graph::new(0), "graph");
    let out = m.predict(&graph::GraphInputs { a: view::<Ix2>(&t, "input/a"), b: view::<Ix2>(&t, "input/b") }).unwrap();
    assert_close("graph score", out.score.as_slice().unwrap(), &t["output/score"]);
    assert_close("graph dot", out.dot.as_slice().unwrap(), &t["output/dot"]);
}

#[test]
fn imported_convolutional_model_predicts_what_keras_predicts() {
    let t = io("vision");
    let mut m = loaded(vision::Vision::new(0), "vision");
    let out = m.predict(&vision::VisionInputs { image: view::<Ix4>(&t, "input/image") }).unwrap();
    assert_close("vision logits", out.logits.as_slice().unwrap(), &t["output/logits"]);
}

#[test]
fn imported_sequence_model_with_token_ids_predicts_what_keras_predicts() {
    let t = io("sequence");
    let ids = view::<Ix2>(&t, "input/ids").mapv(|v| v as i32);
    let mut m = loaded(sequence::Sequence::new(0), "sequence");
    let out = m.predict(&sequence::SequenceInputs { ids: ids.view() }).unwrap();
    assert_close("sequence y", out.y.as_slice().unwrap(), &t["output/y"]);
}

#[test]
fn imported_nested_functional_and_sequential_models_predict_what_keras_predicts() {
    let t = io("nested");
    let mut m = loaded(nested::Nested::new(0), "nested");
    let out = m.predict(&nested::NestedInputs { left: view::<Ix2>(&t, "input/left"), right: view::<Ix2>(&t, "input/right") }).unwrap();
    assert_close("nested head", out.head.as_slice().unwrap(), &t["output/head"]);
    // The nested models' weights are named as the generated model expects them.
    assert_eq!(m.param("tower/tower_dense1/kernel").unwrap().shape(), &[5, 8]);
    assert_eq!(m.param("head/head_dense2/bias").unwrap().shape(), &[2]);
}

#[test]
fn weights_under_keras_own_nested_paths_load_without_a_name_map() {
    // Keras 3 names a nested functional model's weights `tower_dense1/kernel` (no `tower/` prefix):
    // `load` places them in `tower/tower_dense1/kernel` by themselves.
    let t = io("nested");
    let mut m = nested::Nested::new(0);
    modelc::io::load(&mut m, path("nested.paths.safetensors")).unwrap();
    let out = m.predict(&nested::NestedInputs { left: view::<Ix2>(&t, "input/left"), right: view::<Ix2>(&t, "input/right") }).unwrap();
    assert_close("nested head", out.head.as_slice().unwrap(), &t["output/head"]);
}

#[test]
fn imported_cross_attention_with_value_dim_unlike_key_dim_predicts_what_keras_predicts() {
    // `value_dim = 4` against `key_dim = 3`, an `output_shape`, a query of 4 steps reading a value of 5,
    // and the call's second result (the scores) as an output of its own.
    let t = io("cross_attention");
    let mut m = loaded(cross_attention::CrossAttention::new(0), "cross_attention");
    let inputs = cross_attention::CrossAttentionInputs { q: view::<Ix3>(&t, "input/q"), v: view::<Ix3>(&t, "input/v") };
    let out = m.predict(&inputs).unwrap();
    assert_close("cross_attention y", out.y.as_slice().unwrap(), &t["output/y"]);
    assert_close("cross_attention scores", out.scores.as_slice().unwrap(), &t["output/scores"]);
    assert_eq!(m.param("cross/value/kernel").unwrap().shape(), &[3, 2, 4]);
    assert_eq!(m.param("cross/attention_output/kernel").unwrap().shape(), &[2, 4, 5]);
}

#[test]
fn imported_causal_attention_with_time_distributed_permute_and_repeat_predicts_what_keras_predicts() {
    // `mha(x, x, use_causal_mask = true)` from the call's args and kwargs, `TimeDistributed(Dense(..))`
    // from the nested config, and their weights from Keras' sublayer groups.
    let t = io("seq_attention");
    let mut m = loaded(seq_attention::SeqAttention::new(0), "seq_attention");
    let out = m.predict(&seq_attention::SeqAttentionInputs { x: view::<Ix3>(&t, "input/x") }).unwrap();
    assert_close("seq_attention y", out.y.as_slice().unwrap(), &t["output/y"]);
    assert_eq!(m.param("mha/attention_output/kernel").unwrap().shape(), &[2, 4, 8]);
    assert_eq!(m.param("per_step/step_dense/kernel").unwrap().shape(), &[8, 4]);
}

#[test]
fn imported_recurrent_model_predicts_what_keras_predicts() {
    // Bidirectional LSTM (concat), SimpleRNN (ave), GRU (none: both outputs) and LSTM (mul, with its
    // states), GRU with and without a bias, a backwards LSTM's sequence and final cell state: weights
    // from the cells' groups of the archive.
    let t = io("recurrent");
    let ids = view::<Ix2>(&t, "input/ids").mapv(|v| v as i32);
    let mut m = loaded(recurrent::Recurrent::new(0), "recurrent");
    let out = m.predict(&recurrent::RecurrentInputs { ids: ids.view() }).unwrap();
    assert_close("recurrent y", out.y.as_slice().unwrap(), &t["output/y"]);
    assert_eq!(m.param("bilstm/backward_lstm/lstm_cell/recurrent_kernel").unwrap().shape(), &[4, 16]);
    assert_eq!(m.param("gru/gru_cell/bias").unwrap().shape(), &[2, 9]);
}

#[test]
fn imported_bidirectional_sum_and_simple_rnn_states_predict_what_keras_predicts() {
    // `merge_mode="sum"`, the one merge mode the model above leaves out, and a SimpleRNN returning its
    // sequence and its state.
    let t = io("recurrent_sum");
    let mut m = loaded(recurrent_sum::RecurrentSum::new(0), "recurrent_sum");
    let out = m.predict(&recurrent_sum::RecurrentSumInputs { x: view::<Ix3>(&t, "input/x") }).unwrap();
    assert_close("recurrent_sum y", out.y.as_slice().unwrap(), &t["output/y"]);
    assert_eq!(m.param("bisum/backward_lstm/lstm_cell/kernel").unwrap().shape(), &[3, 12]);
}

#[test]
fn imported_masked_model_predicts_what_keras_predicts() {
    // Embedding(mask_zero=True) and Masking, their masks ORed by Add, a masked LSTM, pooling and GRU: the
    // ops Keras saved to compute the masks are left out, modelc derives the same masks from the graph.
    let t = io("masked");
    let ids = view::<Ix2>(&t, "input/ids").mapv(|v| v as i32);
    assert!(ids.iter().filter(|&&i| i == 0).count() >= 4, "the fixture pads its ids");
    let mut m = loaded(masked::Masked::new(0), "masked");
    let out = m.predict(&masked::MaskedInputs { ids: ids.view(), x: view(&t, "input/x") }).unwrap();
    assert_close("masked y", out.y.as_slice().unwrap(), &t["output/y"]);
}

#[test]
fn imported_attention_reading_masks_predicts_what_keras_predicts() {
    // Keras' `Attention` on operands carrying masks (mask_zero, Masking): Keras saves no `mask` argument
    // for it; modelc derives the query's and value's masks from the graph.
    let t = io("masked_attention");
    let ids = view::<Ix2>(&t, "input/ids").mapv(|v| v as i32);
    assert!(ids.iter().filter(|&&i| i == 0).count() >= 4, "the fixture pads its ids");
    let mut m = loaded(masked_attention::MaskedAttention::new(0), "masked_attention");
    let out = m.predict(&masked_attention::MaskedAttentionInputs { ids: ids.view(), x: view(&t, "input/x") }).unwrap();
    assert_close("masked_attention y", out.y.as_slice().unwrap(), &t["output/y"]);
}

#[test]
fn imported_encoder_decoder_with_keyword_initial_state_matches_keras_outputs_and_gradients() {
    // Issue #16: `LSTM(...)(tgt, initial_state=[h, c])` from the encoder's `return_state`, saved by
    // Keras with the states as a keyword argument; the importer binds them as `initial_state = [..]`.
    use modelc::prelude::{Loss, Sgd};
    let t = io("seq2seq");
    let g = read_tensors(path("seq2seq.grads.safetensors")).unwrap();
    let mut m = loaded(seq2seq::Seq2seq::new(0), "seq2seq");
    let inputs = seq2seq::Seq2seqInputs { src: view(&t, "input/src"), tgt: view(&t, "input/tgt") };
    let out = m.predict(&inputs).unwrap();
    assert_close("seq2seq y", out.y.as_slice().unwrap(), &t["output/y"]);
    let targets = seq2seq::Seq2seqTargets { y: view(&g, "target/y") };
    let mut trainer = m.compile(Sgd::new(0.01), seq2seq::Seq2seqLosses { y: Loss::MeanSquaredError }, &[]);
    let (loss, grads) = trainer.compute_gradients(&inputs, &targets).unwrap();
    assert!((loss as f32 - g["loss"].as_slice().unwrap()[0]).abs() <= 1e-5, "loss {loss} vs Keras {}", g["loss"]);
    for spec in <seq2seq::Seq2seq as Network>::PARAMS {
        let want = &g[&format!("grad/{}", spec.name)];
        let scale = want.iter().fold(1.0f32, |a, v| a.max(v.abs()));
        for (i, (a, b)) in grads[spec.range()].iter().zip(want.iter()).enumerate() {
            assert!((a - b).abs() <= 1e-6 * scale + 1e-4 * b.abs(), "gradient of {}[{i}]: modelc {a} vs Keras {b}", spec.name);
        }
    }
}

#[test]
fn imported_masks_joined_along_the_steps_and_of_bidirectional_without_merge_predict_what_keras_predicts() {
    // Keras saves the ops joining the masks (ExpandDims, ZerosLike, LogicalOr, OnesLike, a Concatenate
    // op, Any); the importer leaves them out, in the .keras and the legacy .h5 format alike.
    let t = io("masked_glue");
    let mut m = loaded(masked_glue::MaskedGlue::new(0), "masked_glue");
    let out = m.predict(&masked_glue::MaskedGlueInputs { x: view(&t, "input/x"), z: view(&t, "input/z") }).unwrap();
    assert_close("masked_glue y", out.y.as_slice().unwrap(), &t["output/y"]);
}

#[test]
fn imported_mixed_bfloat16_model_takes_the_policy_and_predicts_what_keras_predicts_within_bf16_tolerance() {
    use modelc::precision::{set_dtype_policy_with, Bf16Mode, DTypePolicy};
    let t = io("mixed");
    let model = loaded(mixed::Mixed::new(0), "mixed");
    // `#[dtype_policy = "mixed_bfloat16"]` in the generated source: the policy is the model's from `new`
    // (in effect where the CPU has AVX512_BF16, float32 with the reason elsewhere).
    let status = model.dtype_policy();
    assert_eq!(status.requested, DTypePolicy::MixedBfloat16, "{status:?}");
    eprintln!("mixed: {} in effect: {}", status.effective, status.reason);
    let inputs = mixed::MixedInputs { x: view::<Ix2>(&t, "input/x") };
    // The float32 fallback (a CPU without AVX512_BF16, or MODELC_BF16=off) is the same weights in
    // float32, which Keras computed too: to 1e-5, as every import.
    let mut f32_model = model.clone();
    set_dtype_policy_with(&mut f32_model, DTypePolicy::MixedBfloat16, Bf16Mode::Off);
    assert_close("mixed probs in float32", f32_model.predict(&inputs).unwrap().probs.as_slice().unwrap(), &t["output/probs_f32"]);
    // Keras computed in bf16 (its activations are bf16 tensors, modelc's stay f32): both lie within
    // bf16's tolerance of the exact values, so of each other; the fallback's f32 values differ from
    // Keras' bf16 ones by 1.2e-2 at most. The outputs are probabilities: 2e-2, as tests/mixed_bfloat16.rs.
    let want = t["output/probs"].as_slice().unwrap().to_vec();
    let mut modes = vec![None, Some(Bf16Mode::Off), Some(Bf16Mode::Emulate)];
    if modelc::kernels::gemm::avx512_bf16_available() {
        modes.push(Some(Bf16Mode::Auto));
    }
    for mode in modes {
        let mut m = model.clone();
        if let Some(mode) = mode {
            set_dtype_policy_with(&mut m, DTypePolicy::MixedBfloat16, mode);
        }
        let out = m.predict(&inputs).unwrap();
        let got = out.probs.as_slice().unwrap();
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
        eprintln!("mixed, {mode:?}: largest difference from Keras {worst:e}");
        assert!(worst <= 2e-2, "{mode:?}: modelc differs from Keras by {worst}");
    }
}
