#!/usr/bin/env python3
"""Keras reference fixtures for MultiHeadAttention (issue #18, tests/attention_parity.rs).

Models in Keras 3 (JAX backend): causal self-attention, cross-attention (query and value of
different lengths and widths) with a padding mask, a transformer encoder block (MultiHeadAttention,
Add, LayerNormalization, Dense gelu, Dense, Add, LayerNormalization) on embedded tokens, and
cross-attention returning its scores (`return_attention_scores=True`) as a second output with a loss of
its own; and Keras' `Attention` layer: scaled causal dot-product attention with a key, returning its
scores, and scaled "concat" (additive) self-attention. Writes tests/fixtures/attention_{self_causal,cross_masked,encoder,cross_scores,dot_scores,concat_self}.safetensors in the format of
scripts/keras_reference.py (param/, input/, target/, output/, loss, grad/, adam3/). Masks are 0/1 (Keras'
fused attention path reads any nonzero value as "keep", its softmax path values > 0.5) and keep at least
one value position per query.

Weight names are Keras 3's variable paths (`multi_head_attention/query/kernel`): a MultiHeadAttention owns
four sublayers whose variables are all called `kernel` and `bias`.

Run from the repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_attention.py [fixture names]
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from keras_reference import BATCH, OUT, TOKEN_VOCAB, targets_for  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402


def self_causal():
    x = keras.Input(shape=(5, 3), name="x")
    h = layers.Dense(6, activation="tanh", name="dense")(x)
    y = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="multi_head_attention")(h, h, use_causal_mask=True)
    return keras.Model([x], {"y": y}), {"y": keras.losses.MeanSquaredError()}


def cross_masked():
    q = keras.Input(shape=(4, 3), name="q")
    v = keras.Input(shape=(6, 2), name="v")
    m = keras.Input(shape=(4, 6), name="m")
    hq = layers.Dense(5, activation="tanh", name="dense")(q)
    hv = layers.Dense(4, activation="tanh", name="dense_1")(v)
    mha = layers.MultiHeadAttention(num_heads=3, key_dim=2, value_dim=4, output_shape=7, name="multi_head_attention")
    # Keras' fused path (jax.nn.dot_product_attention) rejects value_dim != key_dim; asking for the scores
    # takes its explicit einsum-and-softmax path, which is the one that supports it.
    y, _ = mha(hq, hv, attention_mask=m, return_attention_scores=True)
    return keras.Model([q, v, m], {"y": y}), {"y": keras.losses.MeanSquaredError()}


def encoder():
    tokens = keras.Input(shape=(8,), dtype="int32", name="tokens")
    x = layers.Embedding(TOKEN_VOCAB, 8, name="embedding")(tokens)
    a = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="multi_head_attention")(x, x)
    x = layers.LayerNormalization(name="layer_normalization")(layers.Add(name="add")([x, a]))
    f = layers.Dense(16, activation="gelu", name="dense")(x)
    f = layers.Dense(8, name="dense_1")(f)
    x = layers.LayerNormalization(name="layer_normalization_1")(layers.Add(name="add_1")([x, f]))
    probs = layers.Dense(3, activation="softmax", name="dense_2")(layers.GlobalAveragePooling1D(name="global_average_pooling1d")(x))
    return keras.Model([tokens], {"probs": probs}), {"probs": keras.losses.CategoricalCrossentropy()}


def cross_scores():
    q = keras.Input(shape=(4, 3), name="q")
    v = keras.Input(shape=(6, 2), name="v")
    hq = layers.Dense(5, activation="tanh", name="dense")(q)
    hv = layers.Dense(4, activation="tanh", name="dense_1")(v)
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3, name="multi_head_attention")
    # No mask here: Keras attaches a causal or padding mask to the scores as a Keras mask, which its losses
    # then fail to broadcast over (heads, Tq, Tv) (the kernel's finite-difference test covers masked scores).
    y, scores = mha(hq, hv, return_attention_scores=True)
    # The scores are a model output with a loss of their own: their gradient flows back through the softmax.
    losses = {"y": keras.losses.MeanSquaredError(), "scores": keras.losses.MeanSquaredError()}
    return keras.Model([q, v], {"y": y, "scores": scores}), losses


def dot_scores():
    q = keras.Input(shape=(5, 3), name="q")
    v = keras.Input(shape=(6, 2), name="v")
    hq = layers.Dense(4, activation="tanh", name="dense")(q)
    hv = layers.Dense(3, activation="tanh", name="dense_1")(v)
    hk = layers.Dense(4, activation="tanh", name="dense_2")(v)
    attention = layers.Attention(use_scale=True, name="attention")
    y, scores = attention([hq, hv, hk], use_causal_mask=True, return_attention_scores=True)
    losses = {"y": keras.losses.MeanSquaredError(), "scores": keras.losses.MeanSquaredError()}
    return keras.Model([q, v], {"y": y, "scores": scores}), losses


def concat_self():
    x = keras.Input(shape=(5, 3), name="x")
    h = layers.Dense(4, activation="tanh", name="dense")(x)
    a = layers.Attention(use_scale=True, score_mode="concat", name="attention")([h, h])
    y = layers.Dense(2, name="dense_1")(a)
    return keras.Model([x], {"y": y}), {"y": keras.losses.MeanSquaredError()}


MODELS = {
    "attention_self_causal": self_causal,
    "attention_cross_masked": cross_masked,
    "attention_encoder": encoder,
    "attention_cross_scores": cross_scores,
    "attention_dot_scores": dot_scores,
    "attention_concat_self": concat_self,
}


def padding_mask(shape, rng):
    """Per sample: the last 0..2 value positions padded, for every query."""
    mask = np.ones(shape, dtype=np.float32)
    for b in range(shape[0]):
        pad = int(rng.integers(0, 3))
        if pad:
            mask[b, :, -pad:] = 0.0
    return mask


def export(name, build, seed):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model, losses = build()
    names = [w.path for w in model.weights]
    for w in model.weights:
        w.assign(rng.uniform(-0.6, 0.6, size=w.shape).astype(np.float32))

    def batch(i):
        shape = (BATCH,) + tuple(i.shape[1:])
        if "int" in str(i.dtype):
            return rng.integers(0, TOKEN_VOCAB, size=shape).astype(np.int32)
        if i.name == "m":
            return padding_mask(shape, rng)
        return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)

    inputs = {i.name: batch(i) for i in model.inputs}
    outputs = model(inputs, training=False)
    targets = {k: targets_for(losses[k], tuple(np.shape(v)), rng) for k, v in outputs.items()}
    fixture = {f"param/{n}": np.asarray(w.numpy(), dtype=np.float32) for n, w in zip(names, model.weights)}
    fixture.update({f"input/{k}": v.astype(np.float32) for k, v in inputs.items()})
    fixture.update({f"target/{k}": v for k, v in targets.items()})
    fixture.update({f"output/{k}": np.asarray(v, dtype=np.float32) for k, v in outputs.items()})

    trainable = [w.value for w in model.trainable_weights]
    non_trainable = [w.value for w in model.non_trainable_weights]

    def total_loss(tv):
        out, _ = model.stateless_call(tv, non_trainable, inputs, training=True)
        return sum(losses[k](targets[k], out[k]) for k in losses)

    loss, grads = jax.value_and_grad(total_loss)(trainable)
    fixture["loss"] = np.asarray([loss], dtype=np.float32)
    for w, g in zip(model.trainable_weights, grads):
        fixture[f"grad/{w.path}"] = np.asarray(g, dtype=np.float32)

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss=losses)
    for _ in range(3):
        model.train_on_batch(inputs, targets)
    for n, w in zip(names, model.weights):
        fixture[f"adam3/{n}"] = np.asarray(w.numpy(), dtype=np.float32)

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file(fixture, path, metadata={"keras": keras.__version__, "backend": keras.backend.backend()})
    print(f"wrote {path}: loss {float(loss):.6f}, weights {names}")


if __name__ == "__main__":
    # With names on the command line, only those fixtures are written.
    for i, (name, build) in enumerate(MODELS.items()):
        if len(sys.argv) == 1 or name in sys.argv[1:]:
            export(name, build, seed=400 + i)
