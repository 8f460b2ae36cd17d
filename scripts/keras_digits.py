#!/usr/bin/env python3
"""The Keras side of `examples/keras_import/`: a small convolutional digits classifier, trained in Keras.

Reads the digits shipped in data/digits/digits.csv.gz exactly as `modelc::datasets::load_digits` does
(pixels divided by 16, images [n, 8, 8, 1]), splits them as the Rust examples do
(`split_indices(1797, 0.1, 0.2, 42)`: 70% training, 10% validation, 20% test, the same rows, by a
Python copy of modelc's xoshiro256** shuffle), builds a functional model of layers modelc supports,
trains it for two epochs only (deliberately under-trained, so that fine-tuning in Rust visibly helps),
prints Keras' test accuracy and writes into data/keras_digits/:

    digits.keras                the Keras 3 archive the example imports at build time
    digits.check.safetensors    test_indices (i64, every test row), probs (Keras' predictions for the
                                first 20 test rows) and accuracy (Keras' test accuracy), for the
                                example's tests

Run from the repository root (CPU, deterministic):

    KERAS_BACKEND=jax python scripts/keras_digits.py
"""

import gzip
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DIGITS = os.path.join(ROOT, "data", "digits", "digits.csv.gz")
OUT = os.path.join(ROOT, "data", "keras_digits")
SEED = 42
EPOCHS = 2
CHECKED = 20

M64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def mix64(z):
    """SplitMix64's output function (model-runtime/src/init.rs `mix64`)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Rng:
    """modelc's `init::Rng`: xoshiro256** seeded by SplitMix64."""

    def __init__(self, seed):
        self.s = []
        sm = seed
        for _ in range(4):
            sm = (sm + GOLDEN_GAMMA) & M64
            self.s.append(mix64(sm))

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = (self.next_u64() * (i + 1)) >> 64
            items[i], items[j] = items[j], items[i]


def split_indices(n, validation, test, seed):
    """modelc's `datasets::split_indices`: (training, validation, test) row indices."""
    order = list(range(n))
    Rng(seed).shuffle(order)
    n_test = int(np.floor(n * test))
    n_val = min(int(np.floor(n * validation)), n - n_test)
    test_idx = order[n - n_test :]
    order = order[: n - n_test]
    val_idx = order[len(order) - n_val :]
    return order[: len(order) - n_val], val_idx, test_idx


def load_digits():
    """Images [n, 8, 8, 1] in 0..=1 and labels, as `modelc::datasets::load_digits` returns them."""
    with gzip.open(DIGITS, "rt") as f:
        rows = np.array([[float(v) for v in line.split(",")] for line in f if line.strip()], dtype=np.float32)
    return (rows[:, :64] / np.float32(16.0)).reshape(-1, 8, 8, 1), rows[:, 64].astype(np.int64)


def model():
    image = keras.Input(shape=(8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(image)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="relu", name="hidden")(x)
    x = layers.Dropout(0.2, name="drop")(x)
    digit = layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(image, digit, name="keras_digits")


def main():
    keras.utils.set_random_seed(SEED)
    images, labels = load_digits()
    train, val, test = split_indices(len(labels), 0.1, 0.2, SEED)
    onehot = np.eye(10, dtype=np.float32)[labels]

    net = model()
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    net.fit(
        images[train],
        onehot[train],
        validation_data=(images[val], onehot[val]),
        epochs=EPOCHS,
        batch_size=32,
        verbose=2,
    )
    probs = net.predict(images[test], batch_size=128, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == labels[test]))
    print(f"Keras {keras.__version__} ({keras.backend.backend()}): test accuracy {accuracy:.4f} ({len(test)} samples)")

    os.makedirs(OUT, exist_ok=True)
    # A copy without the optimizer and its state: the archive holds the model and its weights only, all
    # that an import reads (and a third of the size).
    shipped = model()
    shipped.set_weights(net.get_weights())
    shipped.save(os.path.join(OUT, "digits.keras"))
    save_file(
        {
            "test_indices": np.array(test, dtype=np.int64),
            "probs": np.ascontiguousarray(probs[:CHECKED], dtype=np.float32),
            "accuracy": np.array([accuracy], dtype=np.float32),
        },
        os.path.join(OUT, "digits.check.safetensors"),
    )
    print(f"wrote {os.path.relpath(OUT, ROOT)}/digits.keras and digits.check.safetensors")


if __name__ == "__main__":
    main()
