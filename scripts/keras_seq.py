#!/usr/bin/env python3
"""Keras reference fixtures for the sequence glue of issue #17 (tests/seq_parity.rs).

`seq_glue`: RepeatVector and Permute (rank 3 and rank 4) between Dense layers on vectors and sequences,
Conv2D and pooling. `time_distributed`: TimeDistributed around Conv2D, MaxPooling2D, Flatten and Dense, with
a per-step loss. Writes tests/fixtures/<name>.safetensors in the format of scripts/keras_reference.py
(param/, input/, target/, output/, loss, grad/, adam3/), using its `export`.

Run from the repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_seq.py [name ...]
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from keras import layers  # noqa: E402
from keras_reference import export  # noqa: E402


def seq_glue():
    """A vector repeated into a sequence joined to a transposed sequence, Dense on every step, transposed
    back and pooled; and an image whose axes are rotated before a 1x1 convolution."""
    v = keras.Input(shape=(5,), name="v")
    seq = keras.Input(shape=(6, 4), name="seq")
    image = keras.Input(shape=(2, 3, 4), name="image")
    h = layers.Dense(3, activation="tanh", name="dense")(v)
    r = layers.RepeatVector(4, name="repeat_vector")(h)
    p = layers.Permute((2, 1), name="permute")(seq)
    m = layers.Concatenate(name="concatenate")([r, p])
    d = layers.Dense(5, activation="tanh", name="dense_1")(m)
    q = layers.Permute((2, 1), name="permute_1")(d)
    y = layers.Dense(2, name="dense_2")(layers.GlobalAveragePooling1D(name="global_average_pooling1d")(q))
    i = layers.Permute((3, 1, 2), name="permute_2")(image)
    i = layers.Conv2D(2, 1, activation="tanh", name="conv2d")(i)
    i = layers.Permute((2, 3, 1), name="permute_3")(i)
    z = layers.Dense(1, activation="sigmoid", name="dense_3")(layers.Flatten(name="flatten")(i))
    model = keras.Model([v, seq, image], {"y": y, "z": z})
    return model, {"y": keras.losses.MeanSquaredError(), "z": keras.losses.BinaryCrossentropy()}


def time_distributed():
    """Frames through TimeDistributed Conv2D, MaxPooling2D, Flatten and Dense, with a per-step softmax head
    trained with a per-step categorical cross-entropy; and TimeDistributed(Dense) on a sequence, pooled."""
    frames = keras.Input(shape=(4, 6, 6, 2), name="frames")
    seq = keras.Input(shape=(5, 3), name="seq")
    x = layers.TimeDistributed(layers.Conv2D(3, 3, activation="tanh", name="conv2d"), name="time_distributed")(frames)
    x = layers.TimeDistributed(layers.MaxPooling2D(name="max_pooling2d"), name="time_distributed_1")(x)
    x = layers.TimeDistributed(layers.Flatten(name="flatten"), name="time_distributed_2")(x)
    x = layers.TimeDistributed(layers.Dense(5, activation="tanh", name="dense"), name="time_distributed_3")(x)
    probs = layers.TimeDistributed(layers.Dense(3, activation="softmax", name="dense_1"), name="time_distributed_4")(x)
    s = layers.TimeDistributed(layers.Dense(4, activation="tanh", name="dense_2"), name="time_distributed_5")(seq)
    aux = layers.Dense(2, name="dense_3")(layers.GlobalAveragePooling1D(name="global_average_pooling1d")(s))
    model = keras.Model([frames, seq], {"probs": probs, "aux": aux})
    return model, {"probs": keras.losses.CategoricalCrossentropy(), "aux": keras.losses.MeanSquaredError()}


MODELS = {"seq_glue": seq_glue, "time_distributed": time_distributed}

if __name__ == "__main__":
    wanted = set(sys.argv[1:])
    for i, (name, build) in enumerate(MODELS.items()):
        if not wanted or name in wanted:
            export(name, build, seed=300 + i)
