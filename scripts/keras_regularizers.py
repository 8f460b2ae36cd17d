#!/usr/bin/env python3
"""Keras reference fixture for modelc's regularizers, constraints and initializers (tests/regularizers.rs).

Writes tests/fixtures/regularizers.safetensors holding, all as float32:

    param/<weight>             the weights of the REG model (below) before training
    input/x, target/y          one batch of 4 samples
    loss                       Keras' training loss of the batch: the mean squared error plus every
                               kernel, bias and activity regularizer's penalty (`compute_loss_and_updates`)
    data_loss                  the mean squared error alone
    eval_loss                  Keras' `evaluate` loss of the batch (inference mode; penalties included)
    grad/<weight>              the gradient of `loss` with respect to each trainable weight
    adam<k>/<weight>           every weight after k = 1, 2, 3 `train_on_batch` steps with Adam(0.05):
                               the constraints project the weights after each step
    adam_loss<k>               the loss `train_on_batch` reported at step k
    init/<name>                10 000 values drawn by each initializer of INITIALIZERS for a [100, 100]
                               weight (the Rust test compares their statistics: the distributions must
                               agree, not the random numbers)

The model is the twin of the `model!` in tests/regularizers.rs: change both together. Run from the
repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_regularizers.py
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import constraints as C  # noqa: E402
from keras import initializers as I  # noqa: E402
from keras import layers  # noqa: E402
from keras import regularizers as R  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import keras_reference  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
STEPS = 3


def reg_model():
    """Every regularizer kind on kernels, biases, gamma and activities; every constraint kind."""
    x = keras.Input(shape=(6, 3), name="x")
    h = layers.Conv1D(
        4, 3, activation="relu", name="conv1d",
        kernel_initializer=I.HeNormal(seed=3),
        kernel_regularizer=R.L2(0.01),
        kernel_constraint=C.UnitNorm(axis=[0, 1]),
        bias_initializer=I.Constant(0.1),
        bias_regularizer=R.L1(0.02),
    )(x)
    f = layers.Flatten(name="flatten")(h)
    n = layers.BatchNormalization(
        name="batch_normalization",
        gamma_regularizer=R.L2(0.05),
        beta_initializer=I.Constant(0.05),
        beta_constraint=C.NonNeg(),
    )(f)
    d = layers.Dense(
        5, activation="tanh", name="dense",
        kernel_initializer=I.GlorotNormal(seed=5),
        kernel_regularizer=R.L1L2(l1=0.01, l2=0.02),
        kernel_constraint=C.MaxNorm(max_value=0.5),
        activity_regularizer=R.L1(0.03),
    )(n)
    y = layers.Dense(
        2, name="dense_1",
        kernel_initializer=I.Orthogonal(seed=7),
        bias_initializer=I.RandomUniform(0.1, 0.3, seed=9),
        bias_regularizer=R.L2(0.1),
        bias_constraint=C.MinMaxNorm(min_value=0.1, max_value=0.3, rate=0.7),
        activity_regularizer=R.L2(0.05),
    )(d)
    return keras.Model(x, y, name="reg")


INITIALIZERS = {
    "random_normal": I.RandomNormal(mean=0.5, stddev=2.0, seed=1),
    "random_uniform": I.RandomUniform(minval=-1.0, maxval=3.0, seed=1),
    "truncated_normal": I.TruncatedNormal(mean=0.0, stddev=1.5, seed=1),
    "glorot_normal": I.GlorotNormal(seed=1),
    "glorot_uniform": I.GlorotUniform(seed=1),
    "he_normal": I.HeNormal(seed=1),
    "he_uniform": I.HeUniform(seed=1),
    "lecun_normal": I.LecunNormal(seed=1),
    "lecun_uniform": I.LecunUniform(seed=1),
    "variance_scaling": I.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal", seed=1),
    "orthogonal": I.Orthogonal(gain=2.0, seed=1),
    "identity": I.Identity(gain=3.0),
    "constant": I.Constant(0.25),
}


def regularized(fixture):
    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(11)
    model = reg_model()
    names = keras_reference.weight_names(model)
    for n, w in zip(names, model.weights):
        fixture[f"param/{n}"] = np.asarray(w.numpy(), dtype=np.float32)
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    y = rng.normal(size=(4, 2)).astype(np.float32)
    fixture["input/x"] = x
    fixture["target/y"] = y
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")

    model.optimizer.build(model.trainable_variables)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    metrics = [v.value for v in model.metrics_variables]
    opt_vars = [v.value for v in model.optimizer.variables]

    def loss_fn(tv):
        loss, _ = model.compute_loss_and_updates(tv, non_trainable, metrics, x, y, None, training=True, optimizer_variables=opt_vars)
        return loss

    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    fixture["loss"] = np.asarray(loss, dtype=np.float32).reshape(1)
    pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
    fixture["data_loss"] = np.asarray(np.mean((np.asarray(pred) - y) ** 2), dtype=np.float32).reshape(1)
    fixture["eval_loss"] = np.asarray(model.evaluate(x, y, batch_size=4, verbose=0), dtype=np.float32).reshape(1)
    by_id = dict(zip([id(w) for w in model.weights], names))
    for v, g in zip(model.trainable_variables, grads):
        fixture[f"grad/{by_id[id(v)]}"] = np.asarray(g, dtype=np.float32)
    for k in range(1, STEPS + 1):
        logs = model.train_on_batch(x, y, return_dict=True)
        fixture[f"adam_loss{k}"] = np.asarray(logs["loss"], dtype=np.float32).reshape(1)
        for n, w in zip(names, model.weights):
            fixture[f"adam{k}/{n}"] = np.asarray(w.numpy(), dtype=np.float32)


def initializers(fixture):
    for name, init in INITIALIZERS.items():
        fixture[f"init/{name}"] = np.asarray(init((100, 100)), dtype=np.float32)


if __name__ == "__main__":
    fixture = {}
    regularized(fixture)
    initializers(fixture)
    path = os.path.join(OUT, "regularizers.safetensors")
    save_file(fixture, path, metadata={"keras": keras.__version__, "backend": keras.backend.backend()})
    print(f"wrote {path}: {len(fixture)} tensors, loss {fixture['loss'][0]:.6f} (data {fixture['data_loss'][0]:.6f})")
