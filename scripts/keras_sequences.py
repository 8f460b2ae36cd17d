#!/usr/bin/env python3
"""Keras reference fixtures for the recurrent layers of issue #17 (tests/sequence_parity.rs).

Two models in Keras 3 (JAX backend): an encoder-decoder (`seq2seq`: an LSTM encoder's `return_state`
states start an LSTM decoder through `initial_state`), and one that uses every cell and option
(`rnn_cells`: SimpleRNN with `go_backwards` and `return_sequences`, GRU with `return_state`, a GRU
started from a computed state without bias, an LSTM with other activations and without
`unit_forget_bias`, a sigmoid SimpleRNN), and `Bidirectional` with every merge mode, states in and out
(`bidirectional`); and masks (docs/masks.md): padded token rows through `Embedding(mask_zero=True)` and
`GlobalAveragePooling1D` (`masked_tokens`), `Masking` and a per-step loss on a masked sequence output
(`masked_steps`), and masked LSTM, GRU (`go_backwards`) and Bidirectional SimpleRNN layers
(`masked_lstm`), MultiHeadAttention reading its operands' masks (`masked_attention`), Keras' `Attention` reading them
(`masked_dot_attention`), masks joined by Concatenate along the steps and both sequences of
`Bidirectional(merge_mode=None)` carrying the mask (`masked_glue`), their inputs padded by `pad_ids` / `pad_steps`;
and the options the first models leave out (`rnn_options`: SimpleRNN with `return_state` and
`initial_state`, LSTM with `go_backwards`, GRU with other activations). Writes
tests/fixtures/{seq2seq,rnn_cells,bidirectional,masked_*,rnn_options}.safetensors in the
format of scripts/keras_reference.py (param/, input/, target/, output/, loss, grad/, adam3/) with its
`export`; a recurrent layer's weights are named by their Keras path, through the cell
(`lstm/lstm_cell/kernel`), as modelc names them.

Run from the repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_sequences.py
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
import keras_reference  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402


def weight_names(model):
    """`w.path` of every weight (`dense/kernel`, `lstm/lstm_cell/kernel`), in model.weights order."""
    return [w.path for w in model.weights]


keras_reference.weight_names = weight_names


def seq2seq():
    src = keras.Input(shape=(5, 3), name="src")
    tgt = keras.Input(shape=(4, 2), name="tgt")
    _, h, c = layers.LSTM(6, return_state=True, name="lstm")(src)
    dec = layers.LSTM(6, return_sequences=True, name="lstm_1")(tgt, initial_state=[h, c])
    y = layers.Dense(3, name="dense")(dec)
    model = keras.Model([src, tgt], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def rnn_cells():
    x = keras.Input(shape=(6, 3), name="x")
    a = layers.SimpleRNN(4, return_sequences=True, go_backwards=True, name="simple_rnn")(x)
    b, hb = layers.GRU(5, return_sequences=True, return_state=True, name="gru")(a)
    h0 = layers.Dense(3, name="dense")(hb)
    g = layers.GRU(3, go_backwards=True, use_bias=False, name="gru_1")(b, initial_state=[h0])
    lstm = layers.LSTM(4, activation="relu", recurrent_activation="tanh", unit_forget_bias=False, name="lstm")(x)
    s = layers.SimpleRNN(2, activation="sigmoid", use_bias=False, name="simple_rnn_1")(b)
    y = layers.Concatenate(name="concatenate")([g, lstm, s, hb])
    model = keras.Model([x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def bidirectional():
    x = keras.Input(shape=(5, 3), name="x")
    c = layers.Bidirectional(layers.LSTM(3, return_sequences=True, name="lstm"), name="bidirectional")(x)
    f, b, hf, hb = layers.Bidirectional(layers.GRU(2, return_state=True, name="gru"), merge_mode=None, name="bidirectional_1")(c)
    s = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True, name="simple_rnn"), merge_mode="sum", name="bidirectional_2")(
        c, initial_state=[hf, hb]
    )
    m = layers.Bidirectional(layers.GRU(2, name="gru"), merge_mode="mul", name="bidirectional_3")(s)
    a = layers.Bidirectional(layers.LSTM(2, name="lstm"), merge_mode="ave", name="bidirectional_4")(c)
    pooled = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(s)
    y = layers.Concatenate(name="concatenate")([f, b, hf, hb, m, a, pooled])
    model = keras.Model([x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def rnn_options():
    """The options `rnn_cells` and `bidirectional` leave out: SimpleRNN returning its state and started
    from one, LSTM going backwards with its sequence and states out and computed initial states, GRU
    with other activations going backwards over that reversed sequence."""
    x = keras.Input(shape=(5, 3), name="x")
    s, h = layers.SimpleRNN(4, return_sequences=True, return_state=True, name="simple_rnn")(x)
    h0 = layers.Dense(3, name="dense")(h)
    c0 = layers.Dense(3, activation="tanh", name="dense_1")(h)
    seq, hl, cl = layers.LSTM(3, go_backwards=True, return_sequences=True, return_state=True, name="lstm")(s, initial_state=[h0, c0])
    r0 = layers.Dense(2, name="dense_2")(hl)
    r = layers.SimpleRNN(2, go_backwards=True, name="simple_rnn_1")(seq, initial_state=[r0])
    g = layers.GRU(2, activation="elu", recurrent_activation="tanh", go_backwards=True, return_sequences=True, name="gru")(seq)
    p = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(g)
    y = layers.Concatenate(name="concatenate")([layers.Flatten(name="flatten")(seq), hl, cl, h, r, p])
    model = keras.Model([x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def masked_tokens():
    """docs/masks.md: padded token rows, `mask_zero`, the mean of the kept steps."""
    ids = keras.Input(shape=(7,), dtype="int32", name="ids")
    e = layers.Embedding(20, 8, mask_zero=True, name="embedding")(ids)
    pooled = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(e)
    y = layers.Dense(3, name="dense")(pooled)
    model = keras.Model([ids], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def masked_steps():
    """docs/masks.md: Masking, a per-step Dense and a per-step loss on the masked sequence output."""
    x = keras.Input(shape=(6, 3), name="x")
    m = layers.Masking(0.0, name="masking")(x)
    h = layers.TimeDistributed(layers.Dense(4, activation="tanh", name="dense"), name="time_distributed")(m)
    y = layers.Dense(2, name="dense_1")(h)
    model = keras.Model([x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def masked_lstm():
    """Masked recurrent layers: steps masked at the start, in between and at the end."""
    x = keras.Input(shape=(6, 3), name="x")
    m = layers.Masking(0.0, name="masking")(x)
    s = layers.LSTM(4, return_sequences=True, name="lstm")(m)
    g = layers.GRU(3, go_backwards=True, name="gru")(s)
    b = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True, name="simple_rnn"), name="bidirectional")(s)
    pooled = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(b)
    y = layers.Dense(2, name="dense")(layers.Concatenate(name="concatenate")([g, pooled]))
    model = keras.Model([x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def masked_attention():
    """MultiHeadAttention reading the masks of its query and value (Keras' `_compute_attention_mask`):
    causal self-attention over padded tokens, cross-attention to a Masking-masked sequence. No kept query
    step has every key masked: there Keras' JAX path (`dot_product_attention`) averages all the values,
    its `return_attention_scores` path and modelc give zero weights."""
    ids = keras.Input(shape=(7,), dtype="int32", name="ids")
    x = keras.Input(shape=(5, 3), name="x")
    e = layers.Embedding(20, 8, mask_zero=True, name="embedding")(ids)
    a = layers.MultiHeadAttention(2, 4, name="multi_head_attention")(e, e, use_causal_mask=True)
    m = layers.Dense(8, name="dense")(layers.Masking(0.0, name="masking")(x))
    c = layers.MultiHeadAttention(2, 3, name="multi_head_attention_1")(a, m)
    pooled = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(c)
    y = layers.Dense(2, name="dense_1")(pooled)
    model = keras.Model([ids, x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def masked_dot_attention():
    """Keras' `Attention` reading its operands' masks (`mask = [query_mask, value_mask]`, docs/masks.md):
    causal self-attention over padded tokens (masked query steps output 0), additive cross-attention
    to a Masking-masked sequence, and causal attention of an unmasked query over that masked sequence,
    whose first query step of sample 0 has every key masked (its scores all become s − 1e9). Flatten
    drops the masks, so the zeroed query steps reach the output."""
    ids = keras.Input(shape=(7,), dtype="int32", name="ids")
    x = keras.Input(shape=(5, 6), name="x")
    e = layers.Embedding(20, 6, mask_zero=True, name="embedding")(ids)
    a = layers.Attention(use_scale=True, name="attention")([e, e], use_causal_mask=True)
    m = layers.Masking(0.0, name="masking")(x)
    c = layers.Attention(score_mode="concat", name="attention_1")([a, m])
    q = layers.Dense(6, name="dense")(x)
    d = layers.Attention(name="attention_2")([q, m], use_causal_mask=True)
    flat = layers.Concatenate(name="concatenate")([layers.Flatten(name="flatten")(c), layers.Flatten(name="flatten_1")(d)])
    y = layers.Dense(2, name="dense_1")(flat)
    model = keras.Model([ids, x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def masked_glue():
    """Masks through the sequence glue (docs/masks.md): Concatenate along the steps joins a masked and
    an unmasked sequence's masks (all kept for the unmasked one) and a masked LSTM reads the joined mask;
    `Bidirectional(..., merge_mode=None)` gives both its sequences the input's mask, which two poolings
    read."""
    x = keras.Input(shape=(5, 3), name="x")
    z = keras.Input(shape=(4, 3), name="z")
    m = layers.Masking(0.0, name="masking")(x)
    j = layers.Concatenate(axis=1, name="join_steps")([m, z])
    s = layers.LSTM(4, return_sequences=True, name="lstm")(j)
    f, b = layers.Bidirectional(layers.GRU(3, return_sequences=True, name="gru"), merge_mode=None, name="bidirectional")(m)
    pools = [layers.GlobalAveragePooling1D(name=f"global_average_pooling1d{k}")(t) for k, t in (("", s), ("_1", f), ("_2", b))]
    y = layers.Dense(2, name="dense")(layers.Concatenate(name="join_pools")(pools))
    model = keras.Model([x, z], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def pad_both(name, v, rng):
    """`pad_ids` for the ids, `pad_steps` for a sequence."""
    return pad_ids(name, v, rng) if v.ndim == 2 else pad_steps(name, v, rng)


def pad_ids(name, ids, rng):
    """Token rows of 1 to 6 ids padded with id 0, no 0 before the padding. (A row of padding only
    would make the pooled mean 0/0 = NaN, in Keras and modelc alike.)"""
    ids = np.where(ids == 0, 1, ids)
    for row in range(ids.shape[0]):
        ids[row, 1 + row % (ids.shape[1] - 1):] = 0
    return ids


def pad_steps(name, x, rng):
    """Steps set to 0.0 everywhere (masked): gaps, a masked first step and masked suffixes."""
    for row in range(x.shape[0]):
        for t in range(x.shape[1]):
            if (row + 2 * t) % 5 == 0 or t >= x.shape[1] - row % 3:
                x[row, t, :] = 0.0
    return x


def masked_metrics():
    """The compiled metrics of a masked per-step output (docs/masks.md): Keras 3 passes the mask to its
    mean metrics as sample weights (`MeanMetricWrapper.update_state`: `apply_mask(..., reduction="sum")`),
    so `mae`, `mse` and `categorical_accuracy` are `Σ m·v / Σ m` streamed over the batches; the squared
    errors of `RootMeanSquaredError` lose the mask. Writes tests/fixtures/masked_metrics.safetensors:
    param/<path>, input/x, target/y, and metric/<name> from `evaluate(batch_size=4)` on 6 samples
    (a full and a partial batch, so a mean of the batch means would differ)."""
    keras.utils.set_random_seed(400)
    rng = np.random.default_rng(400)
    x = keras.Input(shape=(4, 3), name="x")
    y = layers.Dense(3, name="dense")(layers.Masking(0.0, name="masking")(x))
    model = keras.Model(x, y)
    model.compile("sgd", "mse", metrics=["mae", "mse", "categorical_accuracy", keras.metrics.RootMeanSquaredError()])
    xs = pad_steps("x", rng.normal(size=(6, 4, 3)).astype(np.float32), rng)
    xs[5, 1:] = 0.0
    ys = rng.normal(size=(6, 4, 3)).astype(np.float32)
    logs = model.evaluate(xs, ys, batch_size=4, verbose=0, return_dict=True)
    out = {f"param/{w.path}": np.asarray(w.numpy()) for w in model.weights}
    out.update({"input/x": xs, "target/y": ys})
    out.update({f"metric/{k}": np.asarray([v], dtype=np.float32) for k, v in logs.items()})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "masked_metrics.safetensors")
    save_file(out, path)
    print(f"wrote {path}: {logs}")


MODELS = {
    "seq2seq": seq2seq,
    "rnn_cells": rnn_cells,
    "bidirectional": bidirectional,
    "masked_tokens": masked_tokens,
    "masked_steps": masked_steps,
    "masked_lstm": masked_lstm,
    "masked_attention": masked_attention,
    "masked_dot_attention": masked_dot_attention,
    "masked_glue": masked_glue,
    "rnn_options": rnn_options,
}
PADS = {"masked_tokens": pad_ids, "masked_steps": pad_steps, "masked_lstm": pad_steps, "masked_attention": pad_both, "masked_dot_attention": pad_both, "masked_glue": pad_steps}

if __name__ == "__main__":
    # `keras_sequences.py [name ...]` rewrites only those fixtures; seeds stay tied to MODELS order.
    wanted = set(sys.argv[1:])
    for i, (name, build) in enumerate(MODELS.items()):
        if not wanted or name in wanted:
            keras_reference.export(name, build, seed=300 + i, pad=PADS.get(name))
    if not wanted or "masked_metrics" in wanted:
        masked_metrics()
