#!/usr/bin/env python3
"""Keras models for modelc's importer tests (tests/keras_import.rs, model-compiler's import goldens).

Builds small Keras 3 models that together use every layer kind modelc supports and the graph patterns
the importer must handle (several inputs and outputs, a shared layer, a nested functional model used
twice, a nested Sequential model, a Sequential model, calls with several tensors and call options), sets seeded non-trivial weights (biases and
batch-normalization statistics included), and writes into tests/fixtures/keras_import/:

    <model>.keras             the Keras 3 archive (config.json, metadata.json, model.weights.h5)
    <model>.h5                the same model in the legacy full-model HDF5 format
    <model>.io.safetensors    input/<name> (one fixed batch) and output/<name> (Keras' predictions)
    nested.paths.safetensors  the nested model's weights under Keras' own `w.path` names
    seq2seq.grads.safetensors a target, the loss and Keras' gradients of the encoder-decoder

`mixed.keras` / `mixed.h5` / `mixed.io.safetensors`: a model saved under the `mixed_bfloat16` dtype
policy with a float32 output layer, Keras' (bf16) predictions on a batch of 32, and the predictions of
the same weights all in float32 (`output/probs_f32`).

`unsupported.keras` (a Lambda, an LSTM with input dropout, a mixed-precision Dense: the importer
must refuse it with every reason at once), and one HDF5 file whose datasets are chunked and gzip-compressed (`chunked_gzip.weights.h5`, the
weights of `mlp` rewritten by h5py), to test the HDF5 reader on compressed data as well.

Run from the repository root:

    KERAS_BACKEND=jax python scripts/keras_import.py
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "keras_import")
BATCH = 4


def mlp():
    """A Sequential chain."""
    return keras.Sequential(
        [
            keras.Input(shape=(8,), name="x"),
            layers.Dense(16, activation="relu", name="hidden"),
            layers.Dropout(0.25, name="drop"),
            layers.Dense(4, activation="softmax", name="probs"),
        ],
        name="mlp",
    )


def graph():
    """Two inputs, two outputs, a shared layer and every merge, normalization and reshaping layer."""
    a = keras.Input(shape=(6,), name="a")
    b = keras.Input(shape=(6,), name="b")
    shared = layers.Dense(6, activation="tanh", name="shared")
    sa, sb = shared(a), shared(b)
    merged = [
        layers.Add(name="add")([sa, sb]),
        layers.Subtract(name="subtract")([sa, sb]),
        layers.Multiply(name="multiply")([sa, sb]),
        layers.Average(name="average")([sa, sb]),
        layers.Maximum(name="maximum")([sa, sb]),
        layers.Minimum(name="minimum")([sa, sb]),
    ]
    cat = layers.Concatenate(name="concat")(merged)
    h = layers.Rescaling(0.5, offset=0.1, name="rescale")(cat)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Dense(8, use_bias=False, name="proj")(h)
    h = layers.Activation("gelu", name="act")(h)
    h = layers.LayerNormalization(epsilon=1e-3, name="ln")(h)
    r = layers.Reshape((2, 4), name="reshape")(h)
    r = layers.Softmax(axis=1, name="softmax")(r)
    flat = layers.Flatten(name="flatten")(r)
    score = layers.Dense(1, activation="sigmoid", name="score")(flat)
    sim = layers.Dot(axes=1, normalize=True, name="dot")([sa, sb])
    return keras.Model([a, b], [score, sim], name="graph")


def vision():
    """2-D convolutions (plain, depthwise, separable, transposed), pooling, padding, cropping, up-sampling."""
    x = keras.Input(shape=(10, 10, 3), name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    h = layers.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(h)
    h = layers.Cropping2D(((0, 1), (1, 0)), name="crop")(h)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", name="depthwise")(h)
    h = layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="relu", name="separable")(h)
    h = layers.MaxPooling2D(2, name="maxpool")(h)
    h = layers.Conv2DTranspose(3, 2, strides=2, name="deconv")(h)
    h = layers.UpSampling2D(2, name="up")(h)
    h = layers.AveragePooling2D(2, strides=2, padding="same", name="avgpool")(h)
    h = layers.Conv2D(4, (2, 2), strides=(2, 2), use_bias=False, name="strided")(h)
    avg = layers.GlobalAveragePooling2D(name="gap")(h)
    mx = layers.GlobalMaxPooling2D(name="gmp")(h)
    logits = layers.Dense(3, name="logits")(layers.Concatenate(name="pooled")([avg, mx]))
    return keras.Model(x, logits, name="vision")


def sequence():
    """1-D convolutions, pooling, padding, cropping, up-sampling, and an embedding."""
    ids = keras.Input(shape=(12,), dtype="int32", name="ids")
    h = layers.Embedding(20, 5, name="embed")(ids)
    h = layers.Conv1D(6, 3, padding="same", dilation_rate=2, activation="relu", name="conv")(h)
    h = layers.ZeroPadding1D(1, name="pad")(h)
    h = layers.Cropping1D((2, 0), name="crop")(h)
    h = layers.DepthwiseConv1D(3, name="depthwise")(h)
    h = layers.MaxPooling1D(2, name="maxpool")(h)
    h = layers.Conv1DTranspose(4, 3, strides=2, padding="same", name="deconv")(h)
    h = layers.UpSampling1D(2, name="up")(h)
    h = layers.AveragePooling1D(3, name="avgpool")(h)
    avg = layers.GlobalAveragePooling1D(name="gap")(h)
    mx = layers.GlobalMaxPooling1D(name="gmp")(h)
    y = layers.Dense(2, activation="softmax", name="y")(layers.Concatenate(name="pooled")([avg, mx]))
    return keras.Model(ids, y, name="sequence")


def nested():
    """A functional tower used on two inputs (shared) and a Sequential head, inside a functional model."""
    tx = keras.Input(shape=(5,), name="tower_in")
    th = layers.Dense(8, activation="relu", name="tower_dense1")(tx)
    tower = keras.Model(tx, layers.Dense(4, activation="tanh", name="tower_dense2")(th), name="tower")
    head = keras.Sequential(
        [keras.Input(shape=(8,)), layers.Dense(6, activation="relu", name="head_dense1"), layers.Dense(2, name="head_dense2")],
        name="head",
    )
    left = keras.Input(shape=(5,), name="left")
    right = keras.Input(shape=(5,), name="right")
    joined = layers.Concatenate(name="joined")([tower(left), tower(right)])
    return keras.Model([left, right], head(joined), name="nested")


def recurrent():
    """The recurrent layers: Bidirectional LSTM, SimpleRNN and GRU (every merge mode but sum, one returning
    its states), GRU with and without a bias, an LSTM going backwards whose states are used."""
    ids = keras.Input(shape=(7,), dtype="int32", name="ids")
    e = layers.Embedding(20, 5, name="embed")(ids)
    h = layers.Bidirectional(layers.LSTM(4, return_sequences=True), name="bilstm")(e)
    h = layers.GRU(3, return_sequences=True, name="gru")(h)
    h = layers.Bidirectional(layers.SimpleRNN(3, activation="relu", return_sequences=True), merge_mode="ave", name="birnn")(h)
    seq, _, c = layers.LSTM(4, return_sequences=True, return_state=True, go_backwards=True, name="enc")(h)
    last = layers.SimpleRNN(2, name="rnn")(seq)
    g = layers.GRU(2, use_bias=False, name="gru_nobias")(e)
    f, b = layers.Bidirectional(layers.GRU(2), merge_mode=None, name="bigru")(e)
    m, _, fc, bh, _ = layers.Bidirectional(layers.LSTM(2, return_state=True), merge_mode="mul", name="bistate")(e)
    y = layers.Dense(2, name="y")(layers.Concatenate(name="cat")([last, c, g, f, b, m, fc, bh]))
    return keras.Model(ids, y, name="recurrent")


def seq_attention():
    """Causal self-attention, TimeDistributed(Dense), Permute and a RepeatVector branch."""
    x = keras.Input(shape=(6, 8), name="x")
    # value_dim != key_dim runs in Keras 3 on jax only when the call returns the scores: `cross_attention`.
    a = layers.MultiHeadAttention(2, 4, name="mha")(x, x, use_causal_mask=True)
    h = layers.LayerNormalization(name="ln")(layers.Add(name="residual")([x, a]))
    h = layers.TimeDistributed(layers.Dense(4, activation="tanh", name="step_dense"), name="per_step")(h)
    p = layers.Permute((2, 1), name="permute")(h)
    v = layers.GlobalAveragePooling1D(name="pool")(p)
    r = layers.RepeatVector(3, name="repeat")(v)
    r = layers.TimeDistributed(layers.Dense(2, name="out_dense"), name="out_steps")(r)
    y = layers.Flatten(name="y")(r)
    return keras.Model(x, y, name="seq_attention")


def masked():
    """Masks (docs/masks.md): padded ids through Embedding(mask_zero=True), Masking, the OR of two masks
    by a merge, a masked LSTM, GRU and average pooling. Keras saves the ops computing the masks
    (`NotEqual`, `Any`, `LogicalOr`) and passes each mask as a `mask` call argument; the importer leaves them
    out, as modelc derives the masks from the graph."""
    ids = keras.Input(shape=(6,), dtype="int32", name="ids")
    x = keras.Input(shape=(6, 3), name="x")
    e = layers.Embedding(20, 4, mask_zero=True, name="embed")(ids)
    m = layers.Masking(0.0, name="masking")(x)
    h = layers.Add(name="add")([e, layers.Dense(4, name="proj")(m)])
    s = layers.LSTM(3, return_sequences=True, name="lstm")(h)
    pooled = layers.GlobalAveragePooling1D(name="pool")(s)
    y = layers.Dense(2, name="y")(layers.Concatenate(name="cat")([pooled, layers.GRU(2, name="gru")(m)]))
    return keras.Model([ids, x], y, name="masked")


def masked_attention():
    """Keras' `Attention` reading masks: Keras saves the query's and value's masks as its `mask` call
    argument (a list of the ops computing them); the importer leaves them out, modelc derives them."""
    ids = keras.Input(shape=(6,), dtype="int32", name="ids")
    x = keras.Input(shape=(6, 3), name="x")
    e = layers.Embedding(20, 4, mask_zero=True, name="embed")(ids)
    m = layers.Masking(0.0, name="masking")(x)
    v = layers.Dense(4, name="proj")(m)
    a = layers.Attention(use_scale=True, name="self_attention")([e, e], use_causal_mask=True)
    c = layers.Attention(name="cross_attention")([a, v])
    y = layers.Dense(2, name="y")(layers.Flatten(name="flat")(c))
    return keras.Model([ids, x], y, name="masked_attention")


def seq2seq():
    """An encoder-decoder (issue #16): the encoder LSTM's `return_state` states start the decoder LSTM,
    called with the keyword `initial_state=[h, c]`; tests/keras_import.rs checks outputs and, with
    `seq2seq.grads.safetensors` (`grads`), the gradients of a mean squared error."""
    src = keras.Input(shape=(5, 3), name="src")
    tgt = keras.Input(shape=(4, 2), name="tgt")
    _, h, c = layers.LSTM(6, return_state=True, name="encoder")(src)
    dec = layers.LSTM(6, return_sequences=True, name="decoder")(tgt, initial_state=[h, c])
    y = layers.Dense(3, name="y")(dec)
    return keras.Model([src, tgt], y, name="seq2seq")


def masked_glue():
    """Masks through the sequence glue: Concatenate along the steps of a masked and an unmasked sequence
    (Keras saves the ops joining the masks: ExpandDims, ZerosLike, LogicalOr, OnesLike, Concatenate, Any),
    and the second sequence of `Bidirectional(merge_mode=None)` pooled over the mask."""
    x = keras.Input(shape=(5, 3), name="x")
    z = keras.Input(shape=(4, 3), name="z")
    m = layers.Masking(0.0, name="masking")(x)
    s = layers.LSTM(3, name="lstm")(layers.Concatenate(axis=1, name="join_steps")([m, z]))
    _, b = layers.Bidirectional(layers.GRU(2, return_sequences=True, name="gru"), merge_mode=None, name="bidi")(m)
    pooled = layers.GlobalAveragePooling1D(name="pool")(b)
    y = layers.Dense(2, name="y")(layers.Concatenate(name="cat")([s, pooled]))
    return keras.Model([x, z], y, name="masked_glue")


def grads(model, inputs, rng):
    """`target/y`, `loss` and `grad/<w.path>`: Keras' (JAX) gradients of `mean((model(x) - target)²)` in
    training mode."""
    import jax

    feed = [inputs[t.name] for t in model.inputs]
    target = rng.normal(0.0, 1.0, (BATCH, *model.outputs[0].shape[1:])).astype(np.float32)
    trainable = [w.value for w in model.trainable_weights]
    non_trainable = [w.value for w in model.non_trainable_variables]

    def loss(tv):
        out, _ = model.stateless_call(tv, non_trainable, feed, training=True)
        return keras.ops.mean(keras.ops.square(out - target))

    value, g = jax.value_and_grad(loss)(trainable)
    out = {"target/y": target, "loss": np.asarray([value], dtype=np.float32)}
    out.update({f"grad/{w.path}": np.asarray(d, dtype=np.float32) for w, d in zip(model.trainable_weights, g)})
    return out


def pad(name, inputs):
    """For `masked` and `masked_attention`: ids padded with 0 at the end of each row and a 0 in between,
    steps of `x` set to 0."""
    if name == "masked_glue":
        for row in range(BATCH):
            inputs["x"][row, (2 * row) % 5, :] = 0.0
            inputs["x"][row, 5 - row % 2:, :] = 0.0
        return inputs
    if name not in ("masked", "masked_attention"):
        return inputs
    ids, x = inputs["ids"], inputs["x"]
    ids[ids == 0] = 1
    for row in range(ids.shape[0]):
        ids[row, 6 - row % 3:] = 0
        x[row, (2 * row) % 6, :] = 0.0
    ids[0, 1] = 0
    return inputs


def cross_attention():
    """Cross-attention with `value_dim != key_dim` and an `output_shape`: a query of 4 steps reads a value
    of 5. Keras 3 on jax runs that only on its explicit einsum-and-softmax path, which asking for the
    scores selects (its fused path reshapes by key_dim), so the call returns them and the model outputs
    them beside the result."""
    q = keras.Input(shape=(4, 6), name="q")
    v = keras.Input(shape=(5, 3), name="v")
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=4, output_shape=5, name="cross")
    y, scores = mha(q, v, return_attention_scores=True)
    y = layers.Dense(2, name="y")(layers.GlobalAveragePooling1D(name="pool")(y))
    s = layers.Flatten(name="scores")(scores)
    return keras.Model([q, v], [y, s], name="cross_attention")


def recurrent_sum():
    """What `recurrent` leaves out: Bidirectional with merge_mode="sum", and a SimpleRNN returning its
    sequence and its state. (Keras 3.x refuses Bidirectional around a layer with go_backwards=True: "Forward
    layer and backward layer should have different `go_backwards` value".)"""
    x = keras.Input(shape=(6, 3), name="x")
    s = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum", name="bisum")(x)
    seq, h = layers.SimpleRNN(2, return_sequences=True, return_state=True, name="rnn")(s)
    y = layers.Dense(2, name="y")(layers.Concatenate(name="cat")([layers.Flatten(name="flat")(seq), h]))
    return keras.Model(x, y, name="recurrent_sum")


# New models go last: each model's random draws follow those of the models before it.
MODELS = [mlp, graph, vision, sequence, nested, recurrent, seq_attention, masked, masked_attention, seq2seq, masked_glue, cross_attention, recurrent_sum]


def unsupported():
    """What modelc cannot import, all in one model: the importer must list every reason at once."""
    ids = keras.Input(shape=(6,), dtype="int32", name="ids")
    e = layers.Embedding(10, 4, name="embed")(ids)
    h = layers.LSTM(3, dropout=0.2, name="rnn")(e)
    h = layers.Lambda(lambda t: t * 2.0, name="scale_by_two")(h)
    y = layers.Dense(2, dtype="mixed_float16", name="half")(h)
    return keras.Model(ids, y, name="unsupported")


def mixed(policy="mixed_bfloat16"):
    """Keras' mixed precision guide: built under the global `mixed_bfloat16` policy (f32 weights, bf16
    computations), with the output layer kept in float32. The importer must set the model's policy and
    keep that layer in float32 (`dtype = "float32"`). `policy="float32"`: the same model all in float32."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        x = keras.Input(shape=(32,), name="x")
        h = layers.Dense(64, activation="relu", name="hidden")(x)
        h = layers.Dense(64, activation="tanh", name="hidden2")(h)
        y = layers.Dense(32, activation="softmax", dtype="float32", name="probs")(h)
        return keras.Model(x, y, name="mixed")
    finally:
        keras.mixed_precision.set_global_policy("float32")


# Rows of the mixed model's batch: enough for modelc's bf16 products (`kernels::gemm::bf16_pays`).
MIXED_BATCH = 32


def write_mixed():
    """`mixed.keras`, `mixed.h5` and `mixed.io.safetensors` (its own random draws: the other fixtures'
    stay those they were)."""
    rng = np.random.default_rng(16)
    model = mixed()
    randomize(model, rng)
    x = rng.normal(0.0, 1.0, (MIXED_BATCH, 32)).astype(np.float32)
    pred = np.asarray(model.predict(x, verbose=0), dtype=np.float32)
    # The same weights all in float32: what modelc must give exactly where the policy falls back.
    exact = mixed("float32")
    exact.set_weights(model.get_weights())
    pred_f32 = np.asarray(exact.predict(x, verbose=0), dtype=np.float32)
    tensors = {"input/x": x, "output/probs": pred, "output/probs_f32": pred_f32}
    save_file(tensors, os.path.join(OUT, "mixed.io.safetensors"))
    model.save(os.path.join(OUT, "mixed.keras"))
    model.save(os.path.join(OUT, "mixed.h5"))


def randomize(model, rng):
    """Every weight drawn again so biases and moving statistics are not their trivial defaults."""
    for w in model.weights:
        shape = tuple(w.shape)
        if "variance" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.4, shape)
        w.assign(value.astype(np.float32))


def batch(model, rng):
    """One fixed batch for each input."""
    out = {}
    for t in model.inputs:
        name = t.name
        shape = (BATCH, *t.shape[1:])
        if "int" in str(t.dtype):
            out[name] = rng.integers(0, 20, shape).astype(np.int32)
        else:
            out[name] = rng.normal(0.0, 1.0, shape).astype(np.float32)
    return out


def output_names(model):
    """The name of the layer producing each output (the importer names outputs so)."""
    return [t._keras_history.operation.name for t in model.outputs]


def main():
    # `keras_import.py [name ...]` rewrites only those files (`unsupported`, `chunked_gzip` included); the
    # random draws stay those of a full run.
    wanted = set(sys.argv[1:])
    os.makedirs(OUT, exist_ok=True)
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    for make in MODELS:
        model = make()
        name = model.name
        randomize(model, rng)
        inputs = pad(name, batch(model, rng))
        if wanted and name not in wanted:
            continue
        feed = [inputs[t.name] for t in model.inputs]
        preds = model.predict(feed if len(feed) > 1 else feed[0], verbose=0)
        if not isinstance(preds, (list, tuple)):
            preds = [preds]
        tensors = {f"input/{k}": v.astype(np.float32) for k, v in inputs.items()}
        for oname, p in zip(output_names(model), preds):
            tensors[f"output/{oname}"] = np.asarray(p, dtype=np.float32)
        save_file(tensors, os.path.join(OUT, f"{name}.io.safetensors"))
        if name == "seq2seq":
            save_file(grads(model, inputs, rng), os.path.join(OUT, "seq2seq.grads.safetensors"))
        if name == "nested":
            # The weights under Keras 3's own paths (`tower_dense1/kernel`, no nested model prefix), as a
            # user exports them: modelc's `load` must place them without a name map.
            save_file({w.path: np.asarray(w.numpy()) for w in model.weights}, os.path.join(OUT, "nested.paths.safetensors"))
        model.save(os.path.join(OUT, f"{name}.keras"))
        model.save(os.path.join(OUT, f"{name}.h5"))
    if not wanted or "mixed" in wanted:
        write_mixed()
    if not wanted or "unsupported" in wanted:
        unsupported().save(os.path.join(OUT, "unsupported.keras"))
    if not wanted or "chunked_gzip" in wanted:
        chunked_copy(os.path.join(OUT, "mlp.keras"), os.path.join(OUT, "chunked_gzip.weights.h5"))


def chunked_copy(archive, out):
    """Rewrites the weights of a .keras archive with chunked, gzip-compressed datasets."""
    import io
    import zipfile

    with zipfile.ZipFile(archive) as z:
        raw = z.read("model.weights.h5")
    with h5py.File(io.BytesIO(raw), "r") as src, h5py.File(out, "w") as dst:

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                chunks = tuple(max(1, d // 2) for d in obj.shape) if obj.shape else None
                dst.create_dataset(name, data=obj[()], chunks=chunks, compression="gzip" if chunks else None, shuffle=bool(chunks))
            else:
                dst.require_group(name)

        src.visititems(copy)


if __name__ == "__main__":
    main()
