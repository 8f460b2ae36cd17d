#!/usr/bin/env python3
"""Keras reference fixtures for modelc's parity tests (tests/keras_parity.rs).

For each example model, builds the same graph in Keras 3 (JAX backend), sets seeded weights,
and writes tests/fixtures/<model>.safetensors holding, all as float32:

    param/<layer>/<weight>   the weights set before anything runs (Keras names and layouts)
    input/<name>             one batch of inputs (token ids too, as exact float32)
    target/<name>            the targets of that batch
    output/<name>            Keras' outputs (inference mode)
    loss                     Keras' total training loss on the batch, shape [1]
    grad/<layer>/<weight>    the gradient of that loss for every trainable weight
    adam3/<layer>/<weight>   every weight after three Adam(learning_rate=1e-2) steps on the batch

Run from the repository root (needs Python 3.10+):

    python3 -m venv .venv && .venv/bin/pip install "keras>=3.5" jax safetensors numpy
    KERAS_BACKEND=jax .venv/bin/python scripts/keras_reference.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
BATCH = 6
# Integer inputs (token ids) are drawn from 0..TOKEN_VOCAB.
TOKEN_VOCAB = 20


def fusion():
    """BENCH M1 / examples/fusion/model.rs."""
    left = keras.Input(shape=(8,), name="left_features")
    right = keras.Input(shape=(4,), name="right_features")
    l = layers.Dense(16, activation="relu", name="dense")(left)
    l = layers.Dense(8, activation="relu", name="dense_1")(l)
    r = layers.Dense(8, activation="relu", name="dense_2")(right)
    merged = layers.Concatenate(name="concatenate")([l, r])
    score = layers.Dense(1, activation="sigmoid", name="dense_3")(merged)
    model = keras.Model([left, right], {"score": score})
    return model, {"score": keras.losses.BinaryCrossentropy()}


def softmax_head():
    """A tanh hidden layer and a softmax head trained with categorical cross-entropy."""
    x = keras.Input(shape=(5,), name="x")
    h = layers.Dense(7, activation="tanh", name="dense")(x)
    h = layers.Activation("sigmoid", name="activation")(h)
    probs = layers.Dense(3, activation="softmax", name="dense_1")(h)
    model = keras.Model([x], {"probs": probs})
    return model, {"probs": keras.losses.CategoricalCrossentropy()}


def linear_mse():
    """Linear regression heads without bias, mean squared error."""
    x = keras.Input(shape=(4,), name="x")
    h = layers.Dense(6, use_bias=False, name="dense")(x)
    y = layers.Dense(2, name="dense_1")(h)
    model = keras.Model([x], {"y": y})
    return model, {"y": keras.losses.MeanSquaredError()}


def branch_concat():
    """examples/branch_concat/model.rs: one input, three parallel paths, concatenated."""
    x = keras.Input(shape=(8,), name="features")
    wide = layers.Dense(16, activation="relu", name="dense")(x)
    narrow = layers.Dense(8, activation="tanh", name="dense_1")(x)
    linear = layers.Dense(4, name="dense_2")(x)
    joined = layers.Concatenate(name="concatenate")([wide, narrow, linear])
    label = layers.Dense(1, activation="sigmoid", name="dense_3")(joined)
    return keras.Model([x], {"label": label}), {"label": keras.losses.BinaryCrossentropy()}


def multitask():
    """examples/multitask/model.rs: a shared trunk and three heads with three losses."""
    x = keras.Input(shape=(6,), name="x")
    trunk = layers.Dense(24, activation="relu", name="dense")(x)
    trunk = layers.Dense(16, activation="tanh", name="dense_1")(trunk)
    flag = layers.Dense(1, activation="sigmoid", name="dense_2")(trunk)
    amount = layers.Dense(1, name="dense_3")(trunk)
    cls = layers.Dense(3, activation="softmax", name="dense_4")(layers.Dense(8, activation="relu", name="dense_5")(trunk))
    losses = {
        "flag": keras.losses.BinaryCrossentropy(),
        "amount": keras.losses.MeanSquaredError(),
        "class": keras.losses.CategoricalCrossentropy(),
    }
    return keras.Model([x], {"flag": flag, "amount": amount, "class": cls}), losses


def merges():
    """examples/merges/model.rs: two projections combined by every merge, Dot included."""
    a = keras.Input(shape=(6,), name="a")
    b = keras.Input(shape=(6,), name="b")
    pa = layers.Dense(8, activation="tanh", name="dense")(a)
    pb = layers.Dense(8, activation="tanh", name="dense_1")(b)
    merged = layers.Concatenate(name="concatenate")(
        [
            layers.Add()([pa, pb]),
            layers.Subtract()([pa, pb]),
            layers.Multiply()([pa, pb]),
            layers.Average()([pa, pb]),
            layers.Maximum()([pa, pb]),
            layers.Minimum()([pa, pb]),
            layers.Dot(axes=1)([pa, pb]),
        ]
    )
    y = layers.Dense(1, name="dense_2")(layers.Dense(16, activation="relu", name="dense_3")(merged))
    return keras.Model([a, b], {"y": y}), {"y": keras.losses.MeanSquaredError()}


def residual():
    """examples/residual/model.rs: a stem and two residual blocks."""
    x = keras.Input(shape=(10,), name="x")
    h = layers.Dense(16, activation="relu", name="dense")(x)
    r = layers.Dense(16, activation="relu", name="dense_1")(h)
    r = layers.Dense(16, name="dense_2")(r)
    h = layers.Add()([h, r])
    r = layers.Dense(16, activation="tanh", name="dense_3")(h)
    h = layers.Add()([h, layers.Dense(16, name="dense_4")(r)])
    y = layers.Dense(1, activation="sigmoid", name="dense_5")(h)
    return keras.Model([x], {"y": y}), {"y": keras.losses.BinaryCrossentropy()}


def shared_layer():
    """examples/shared_layer/model.rs: one encoder instance applied to both inputs."""
    a = keras.Input(shape=(12,), name="a")
    b = keras.Input(shape=(12,), name="b")
    enc = layers.Dense(16, activation="tanh", name="dense")
    d = layers.Subtract()([enc(a), enc(b)])
    same = layers.Dense(1, activation="sigmoid", name="dense_1")(layers.Multiply()([d, d]))
    return keras.Model([a, b], {"same": same}), {"same": keras.losses.BinaryCrossentropy()}


def nested_models():
    """examples/nested_models/model.rs: a tower used twice and a frozen feature model, as layers."""
    tx = keras.Input(shape=(6,))
    tower = keras.Model(tx, layers.Dense(4, activation="tanh", name="dense_1")(layers.Dense(12, activation="relu", name="dense")(tx)), name="tower")
    fx = keras.Input(shape=(4,))
    features = keras.Model(fx, layers.Dense(6, activation="tanh", name="dense")(fx), name="features")
    features.trainable = False
    left = keras.Input(shape=(6,), name="left")
    right = keras.Input(shape=(6,), name="right")
    meta = keras.Input(shape=(4,), name="meta")
    merged = layers.Concatenate()([tower(left), tower(right), features(meta)])
    score = layers.Dense(1, activation="sigmoid", name="dense")(layers.Dense(8, activation="relu", name="dense_1")(merged))
    return keras.Model([left, right, meta], {"score": score}), {"score": keras.losses.BinaryCrossentropy()}


def vision_meta():
    """examples/vision_meta.rs (BENCH M3): a conv branch pooled and fused with a tabular branch."""
    image = keras.Input(shape=(32, 32, 3), name="image")
    meta = keras.Input(shape=(6,), name="meta")
    v = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2d")(image)
    v = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2d_1")(v)
    v = layers.GlobalAveragePooling2D(name="global_average_pooling2d")(v)
    m = layers.Dense(8, activation="relu", name="dense")(meta)
    probs = layers.Dense(3, activation="softmax", name="dense_1")(layers.Concatenate()([v, m]))
    return keras.Model([image, meta], {"probs": probs}), {"probs": keras.losses.CategoricalCrossentropy()}


def conv_pool_zoo():
    """Strided 'same' and 'valid' convolutions, dilation, Conv1D, every pooling, Flatten and Reshape."""
    image = keras.Input(shape=(9, 7, 2), name="image")
    x = layers.Conv2D(4, (3, 2), strides=2, padding="same", activation="tanh", name="conv2d")(image)
    x = layers.Conv2D(3, 3, dilation_rate=2, padding="same", name="conv2d_1")(x)
    a = layers.MaxPooling2D(2, padding="same")(x)
    b = layers.AveragePooling2D(2, strides=1, padding="same")(x)
    pooled = layers.Concatenate()([layers.Flatten()(a), layers.GlobalMaxPooling2D()(b)])
    seq = layers.Reshape((-1, 3))(x)
    seq = layers.Conv1D(5, 3, padding="valid", activation="relu", name="conv1d")(seq)
    seq = layers.Concatenate()([layers.GlobalAveragePooling1D()(seq), layers.GlobalMaxPooling1D()(layers.MaxPooling1D(2)(seq))])
    y = layers.Dense(2, name="dense")(layers.Concatenate()([pooled, seq]))
    return keras.Model([image], {"y": y}), {"y": keras.losses.MeanSquaredError()}


def norm_zoo():
    """BatchNormalization (channels last and axis 1, training and moving statistics), LayerNormalization
    (last axis and two axes), gelu/silu activations and Softmax over a middle axis; tests/keras_parity.rs."""
    x = keras.Input(shape=(4, 6), name="x")
    # No bias right before a batch normalization: it would cancel, leaving a gradient of rounding noise that
    # Adam amplifies differently in every framework.
    h = layers.Dense(8, use_bias=False, name="dense")(x)
    h = layers.BatchNormalization(momentum=0.9, name="batch_normalization")(h)
    h = layers.Activation("gelu", name="activation")(h)
    h = layers.LayerNormalization(name="layer_normalization")(h)
    h = layers.Dense(5, activation="silu", name="dense_1")(h)
    h = layers.BatchNormalization(axis=1, scale=False, epsilon=1e-2, name="batch_normalization_1")(h)
    h = layers.LayerNormalization(axis=(1, 2), center=False, name="layer_normalization_1")(h)
    h = layers.Softmax(axis=1, name="softmax")(h)
    h = layers.Flatten(name="flatten")(h)
    probs = layers.Dense(3, activation="softmax", name="dense_2")(h)
    return keras.Model([x], {"probs": probs}), {"probs": keras.losses.CategoricalCrossentropy()}


def activation_zoo():
    """Every activation as a Dense argument and as an Activation layer; tests/keras_parity.rs."""
    x = keras.Input(shape=(5,), name="x")
    h = x
    for i, act in enumerate(["gelu", "swish", "elu", "leaky_relu", "softplus", "sigmoid"]):
        h = layers.Dense(6, activation=act, name="dense" if i == 0 else f"dense_{i}")(h)
    for i, act in enumerate(["gelu", "silu", "elu", "leaky_relu", "softplus", "tanh", "relu", "linear"]):
        h = layers.Activation(act, name="activation" if i == 0 else f"activation_{i}")(h)
    y = layers.Dense(2, name="dense_6")(h)
    return keras.Model([x], {"y": y}), {"y": keras.losses.MeanSquaredError()}


def embedding_text():
    """Token ids through Embedding, BatchNormalization over (batch, time), LayerNormalization and pooling; tests/keras_parity.rs."""
    tokens = keras.Input(shape=(7,), dtype="int32", name="tokens")
    h = layers.Embedding(TOKEN_VOCAB, 6, name="embedding")(tokens)
    h = layers.BatchNormalization(name="batch_normalization")(h)
    h = layers.LayerNormalization(name="layer_normalization")(h)
    h = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(h)
    h = layers.Dense(4, activation="relu", name="dense")(h)
    probs = layers.Dense(3, activation="softmax", name="dense_1")(h)
    return keras.Model([tokens], {"probs": probs}), {"probs": keras.losses.CategoricalCrossentropy()}

MODELS = {
    "vision_meta": vision_meta,
    "conv_pool_zoo": conv_pool_zoo,
    "fusion": fusion,
    "softmax_head": softmax_head,
    "linear_mse": linear_mse,
    "branch_concat": branch_concat,
    "multitask": multitask,
    "merges": merges,
    "residual": residual,
    "shared_layer": shared_layer,
    "nested_models": nested_models,
    "norm_zoo": norm_zoo,
    "activation_zoo": activation_zoo,
    "embedding_text": embedding_text,
}


def weight_names(model):
    """`<layer>/<weight>` (`<model>/<layer>/<weight>` inside a nested model, `<wrapper>/<layer>/<weight>` for a
    wrapped layer) for every weight, in model.weights order."""
    by_id = {}
    for layer in model.layers:
        inner = layer.layers if isinstance(layer, keras.Model) else [layer]
        prefix = f"{layer.name}/" if isinstance(layer, keras.Model) else ""
        for sub in inner:
            # A wrapper (TimeDistributed) names its wrapped layer's weights `wrapper/wrapped/weight`.
            scope = f"{sub.layer.name}/" if isinstance(sub, keras.layers.Wrapper) else ""
            for w in sub.weights:
                by_id.setdefault(id(w), f"{prefix}{sub.name}/{scope}{w.name}")
    return [by_id[id(w)] for w in model.weights]


def targets_for(loss, shape, rng):
    if isinstance(loss, keras.losses.BinaryCrossentropy):
        return (rng.uniform(size=shape) > 0.5).astype(np.float32)
    if isinstance(loss, keras.losses.CategoricalCrossentropy):
        idx = rng.integers(0, shape[-1], size=shape[:-1])
        return np.eye(shape[-1], dtype=np.float32)[idx]
    return rng.normal(size=shape).astype(np.float32)


def export(name, build, seed, pad=None):
    """Writes fixture `name` of the model `build()` returns. `pad(name, array, rng)`, when given, edits
    each drawn input (padding steps for the masked models of scripts/keras_sequences.py)."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model, losses = build()
    names = weight_names(model)
    # Seeded weights, biases included, so a wrong bias path cannot hide behind zeros; variances positive.
    for n, w in zip(names, model.weights):
        low, high = (0.5, 1.5) if n.endswith("moving_variance") else (-0.6, 0.6)
        w.assign(rng.uniform(low, high, size=w.shape).astype(np.float32))

    def batch(i):
        shape = (BATCH,) + tuple(i.shape[1:])
        if "int" in str(i.dtype):
            return rng.integers(0, TOKEN_VOCAB, size=shape).astype(np.int32)
        return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)

    inputs = {i.name: batch(i) for i in model.inputs}
    if pad is not None:
        inputs = {k: pad(k, v, rng) for k, v in inputs.items()}
    outputs = model(inputs, training=False)
    targets = {k: targets_for(losses[k], tuple(np.shape(v)), rng) for k, v in outputs.items()}

    fixture = {}
    for n, w in zip(names, model.weights):
        fixture[f"param/{n}"] = np.asarray(w.numpy(), dtype=np.float32)
    for k, v in inputs.items():
        fixture[f"input/{k}"] = v.astype(np.float32)
    for k, v in targets.items():
        fixture[f"target/{k}"] = v
    for k, v in outputs.items():
        fixture[f"output/{k}"] = np.asarray(v, dtype=np.float32)

    trainable = [w.value for w in model.trainable_weights]
    # Every non-trainable variable, not only weights: a recurrent layer also holds its seed generator's state.
    non_trainable = [w.value for w in model.non_trainable_variables]

    def total_loss(tv):
        out, _ = model.stateless_call(tv, non_trainable, inputs, training=True)
        return sum(losses[k](targets[k], out[k]) for k in losses)

    loss, grads = jax.value_and_grad(total_loss)(trainable)
    fixture["loss"] = np.asarray([loss], dtype=np.float32)
    train_names = [names[[id(x) for x in model.weights].index(id(w))] for w in model.trainable_weights]
    for n, g in zip(train_names, grads):
        fixture[f"grad/{n}"] = np.asarray(g, dtype=np.float32)

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss=losses)
    for _ in range(3):
        model.train_on_batch(inputs, targets)
    for n, w in zip(names, model.weights):
        fixture[f"adam3/{n}"] = np.asarray(w.numpy(), dtype=np.float32)

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file(fixture, path, metadata={"keras": keras.__version__, "backend": keras.backend.backend()})
    print(f"wrote {path}: loss {float(loss):.6f}, {len(names)} weights")


if __name__ == "__main__":
    import sys

    # `keras_reference.py [name ...]` rewrites only those fixtures; seeds stay tied to MODELS order.
    wanted = set(sys.argv[1:])
    for i, (name, build) in enumerate(MODELS.items()):
        if not wanted or name in wanted:
            export(name, build, seed=100 + i)
