#!/usr/bin/env python3
"""Keras reference fixture for modelc's `sample_weight` and `class_weight` (tests/sample_weight.rs).

Writes tests/fixtures/sample_weight.safetensors holding, all as float32:

  Two outputs, one sample-weight array per output (`sw/`): a softmax head trained with categorical
  cross-entropy (modelc's fused softmax path) and a linear head trained with the mean squared error.

    sw/param/<weight>            the weights before training
    sw/input/x, sw/target/y, sw/target/z, sw/weight/y, sw/weight/z
                                 one batch of 6 samples and the weights of each output (zeros included)
    sw/loss                      the weighted training loss (`compute_loss_and_updates` with the dict)
    sw/grad/<weight>             its gradient with respect to each weight
    sw/step<k>/<weight>          the weights after k = 1, 2, 3 `train_on_batch(x, y, sample_weight=...)`
                                 steps with Adam(0.05)
    sw/step<k>/<log>             the logs that step returned: loss, y_loss, z_loss, the plain metrics
                                 (y_accuracy, z_mean_absolute_error, which ignore the weights) and the
                                 `weighted_metrics` (y_weighted_accuracy, z_weighted_mean_absolute_error,
                                 z_root_mean_squared_error)
    sw/eval/<log>                `evaluate(x, y, sample_weight=..., batch_size=4)` after the steps: two
                                 batches (4 + 2), so the loss tracker's weighting by batch size shows

  One sigmoid output, `class_weight={0: 1.0, 1: 5.0}` (`cw/`):

    cw/param/<weight>, cw/input/x, cw/target/y (8 samples)
    cw/weight                    Keras' `class_weight_to_sample_weights` of the targets
    cw/loss, cw/grad/<weight>    the training loss with those weights and its gradient
    cw/fit/<log>                 the history of `fit(x, y, class_weight=..., epochs=3, batch_size=8,
                                 shuffle=False)` with Adam(0.05) per epoch: loss, accuracy (plain), and the
                                 weighted metrics weighted_accuracy, precision, auc
    cw/fit/<weight>              the weights after it

  The two-output model again, trained unweighted with weighted validation data (`vd/`), Keras'
  `fit(x, y, validation_data=(x_val, y_val, sample_weight_val))`:

    vd/param/<weight>, vd/input/x, vd/target/y, vd/target/z (8 training samples)
    vd/val/x, vd/val/y, vd/val/z, vd/val/weight/y, vd/val/weight/z (6 validation samples, one weight
                                 array per output, zeros included)
    vd/fit/<log>                 the history of `fit(..., epochs=2, batch_size=4, shuffle=False)` with
                                 Adam(0.05): the training keys and the `val_` keys, where the validation
                                 loss and weighted metrics weigh the samples and the plain metrics do not
    vd/fit/<weight>              the weights after it

The models are the twins of the `model!`s in tests/sample_weight.rs: change both together. Run from the
repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_sample_weight.py
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from keras.src.trainers.data_adapters import data_adapter_utils  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import keras_reference  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
STEPS = 3
CLASS_WEIGHT = {0: 1.0, 1: 5.0}


def f32(v):
    return np.asarray(v, dtype=np.float32).reshape(np.shape(v) or (1,))


def two_heads():
    x = keras.Input(shape=(5,), name="x")
    h = layers.Dense(8, activation="tanh", name="dense")(x)
    y = layers.Dense(3, activation="softmax", name="y")(h)
    z = layers.Dense(2, name="z")(h)
    return keras.Model(x, {"y": y, "z": z}, name="two_heads")


def binary():
    x = keras.Input(shape=(4,), name="x")
    h = layers.Dense(6, activation="relu", name="dense")(x)
    y = layers.Dense(1, activation="sigmoid", name="y")(h)
    return keras.Model(x, y, name="binary")


def loss_and_grads(model, x, y, sw, fixture, prefix):
    """The training loss with sample weights `sw` and its gradient, as `train_step` differentiates it."""
    model.optimizer.build(model.trainable_variables)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    metrics = [v.value for v in model.metrics_variables]
    opt_vars = [v.value for v in model.optimizer.variables]

    def loss_fn(tv):
        loss, _ = model.compute_loss_and_updates(tv, non_trainable, metrics, x, y, sw, training=True, optimizer_variables=opt_vars)
        return loss

    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    fixture[f"{prefix}/loss"] = f32(loss)
    names = dict(zip([id(w) for w in model.weights], keras_reference.weight_names(model)))
    for v, g in zip(model.trainable_variables, grads):
        fixture[f"{prefix}/grad/{names[id(v)]}"] = f32(g)


def save_weights(model, fixture, prefix):
    for n, w in zip(keras_reference.weight_names(model), model.weights):
        fixture[f"{prefix}/{n}"] = f32(w.numpy())


def sample_weighted(fixture):
    keras.utils.set_random_seed(21)
    rng = np.random.default_rng(21)
    model = two_heads()
    save_weights(model, fixture, "sw/param")
    x = rng.normal(size=(6, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=6)]
    z = rng.normal(size=(6, 2)).astype(np.float32)
    wy = np.array([1.0, 0.5, 2.0, 0.0, 3.0, 1.5], dtype=np.float32)
    wz = np.array([0.25, 2.0, 1.0, 4.0, 0.0, 1.0], dtype=np.float32)
    for k, v in {"input/x": x, "target/y": y, "target/z": z, "weight/y": wy, "weight/z": wz}.items():
        fixture[f"sw/{k}"] = v
    targets, weights = {"y": y, "z": z}, {"y": wy, "z": wz}
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss={"y": "categorical_crossentropy", "z": "mse"},
        metrics={"y": ["accuracy"], "z": [keras.metrics.MeanAbsoluteError()]},
        weighted_metrics={"y": ["accuracy"], "z": [keras.metrics.MeanAbsoluteError(), keras.metrics.RootMeanSquaredError()]},
    )
    loss_and_grads(model, x, targets, weights, fixture, "sw")
    for k in range(1, STEPS + 1):
        logs = model.train_on_batch(x, targets, sample_weight=weights, return_dict=True)
        for key, v in logs.items():
            fixture[f"sw/step{k}/{key}"] = f32(v)
        save_weights(model, fixture, f"sw/step{k}")
    logs = model.evaluate(x, targets, sample_weight=weights, batch_size=4, verbose=0, return_dict=True)
    for key, v in logs.items():
        fixture[f"sw/eval/{key}"] = f32(v)
    print("sw:", {k: float(v) for k, v in logs.items()})


def class_weighted(fixture):
    keras.utils.set_random_seed(22)
    rng = np.random.default_rng(22)
    model = binary()
    save_weights(model, fixture, "cw/param")
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = (x[:, :1] + 0.3 * x[:, 1:2] > 0.6).astype(np.float32)
    fixture["cw/input/x"] = x
    fixture["cw/target/y"] = y
    sw = data_adapter_utils.class_weight_to_sample_weights(y, CLASS_WEIGHT)
    fixture["cw/weight"] = f32(sw)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        weighted_metrics=["accuracy", keras.metrics.Precision(name="precision"), keras.metrics.AUC(name="auc")],
    )
    loss_and_grads(model, x, y, sw, fixture, "cw")
    history = model.fit(x, y, class_weight=CLASS_WEIGHT, epochs=STEPS, batch_size=8, shuffle=False, verbose=0)
    for key, v in history.history.items():
        fixture[f"cw/fit/{key}"] = f32(v)
    save_weights(model, fixture, "cw/fit")
    print("cw:", {k: [round(float(a), 6) for a in v] for k, v in history.history.items()}, "weights", sw)


def validation_weighted(fixture):
    keras.utils.set_random_seed(23)
    rng = np.random.default_rng(23)
    model = two_heads()
    save_weights(model, fixture, "vd/param")
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=8)]
    z = rng.normal(size=(8, 2)).astype(np.float32)
    xv = rng.normal(size=(6, 5)).astype(np.float32)
    yv = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=6)]
    zv = rng.normal(size=(6, 2)).astype(np.float32)
    wy = np.array([2.0, 0.0, 1.0, 0.5, 3.0, 1.0], dtype=np.float32)
    wz = np.array([1.0, 0.25, 0.0, 2.0, 1.0, 4.0], dtype=np.float32)
    arrays = {"input/x": x, "target/y": y, "target/z": z, "val/x": xv, "val/y": yv, "val/z": zv, "val/weight/y": wy, "val/weight/z": wz}
    for k, v in arrays.items():
        fixture[f"vd/{k}"] = v
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss={"y": "categorical_crossentropy", "z": "mse"},
        metrics={"y": ["accuracy"], "z": [keras.metrics.MeanAbsoluteError()]},
        weighted_metrics={"y": ["accuracy"], "z": [keras.metrics.MeanAbsoluteError(), keras.metrics.RootMeanSquaredError()]},
    )
    validation = (xv, {"y": yv, "z": zv}, {"y": wy, "z": wz})
    history = model.fit(x, {"y": y, "z": z}, validation_data=validation, epochs=2, batch_size=4, shuffle=False, verbose=0)
    for key, v in history.history.items():
        fixture[f"vd/fit/{key}"] = f32(v)
    save_weights(model, fixture, "vd/fit")
    print("vd:", {k: [round(float(a), 6) for a in v] for k, v in history.history.items()})


if __name__ == "__main__":
    fixture = {}
    sample_weighted(fixture)
    class_weighted(fixture)
    validation_weighted(fixture)
    path = os.path.join(OUT, "sample_weight.safetensors")
    save_file(fixture, path, metadata={"keras": keras.__version__, "backend": keras.backend.backend()})
    print(f"wrote {path}: {len(fixture)} tensors")
