#!/usr/bin/env python3
"""Keras reference fixture for modelc's optimizers and learning-rate schedules (tests/optimizers.rs).

Writes tests/fixtures/optimizers.safetensors holding, all as float32:

    init/kernel, init/bias              two variables ([3, 4] and [4]) before any step
    grad/<k>/kernel, grad/<k>/bias      the gradients of step k (0, 1, 2); step 0 has an exact zero
    case/<case>/<k>/kernel, .../bias    the variables after step k of optimizer <case> (CASES below)
    schedule_steps                      the steps at which the schedules are evaluated
    schedule/<name>                     each schedule's learning rate at those steps (SCHEDULES below)
    fusion/param/<weight>, fusion/input/<name>, fusion/target/<name>
                                        BENCH M1's weights and batch, from tests/fixtures/fusion.safetensors
    fusion/<opt>3/<weight>              the fusion model's weights after three train_on_batch steps with
                                        <opt> = adamw or rmsprop (configured in FUSION_OPTIMIZERS)

The Rust test builds the same optimizers by case name, so a case added here needs its twin there.
Run from the repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_optimizers.py
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import optimizers as O  # noqa: E402
from keras.optimizers import schedules as S  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import keras_reference  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
STEPS = 3


def adamw_excluding_bias():
    opt = O.AdamW(learning_rate=0.01, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    return opt


# Each case: a non-default configuration, so a default baked into the Rust side cannot pass unnoticed;
# large epsilons, so where epsilon is added (inside or outside the square root) shows.
CASES = {
    "sgd": lambda: O.SGD(learning_rate=0.1),
    "sgd_momentum": lambda: O.SGD(learning_rate=0.1, momentum=0.9),
    "sgd_nesterov": lambda: O.SGD(learning_rate=0.05, momentum=0.8, nesterov=True),
    "adam": lambda: O.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-2),
    "adam_amsgrad": lambda: O.Adam(learning_rate=0.01, amsgrad=True),
    "adamw": lambda: O.AdamW(learning_rate=0.01, weight_decay=0.1, beta_1=0.85),
    "adamw_defaults": lambda: O.AdamW(),
    "rmsprop": lambda: O.RMSprop(learning_rate=0.01, rho=0.8, epsilon=0.1),
    "rmsprop_momentum": lambda: O.RMSprop(learning_rate=0.01, momentum=0.9),
    "rmsprop_centered": lambda: O.RMSprop(learning_rate=0.01, rho=0.85, momentum=0.5, centered=True, epsilon=0.05),
    "adagrad": lambda: O.Adagrad(learning_rate=0.1, initial_accumulator_value=0.2, epsilon=0.1),
    "nadam": lambda: O.Nadam(learning_rate=0.01, beta_1=0.85, beta_2=0.99, epsilon=1e-2),
    "adamax": lambda: O.Adamax(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=0.1),
    "lion": lambda: O.Lion(learning_rate=0.01, beta_1=0.8, beta_2=0.95),
    # The base optimizer's arguments, on several optimizers.
    "adam_clipnorm": lambda: O.Adam(learning_rate=0.01, clipnorm=1.0),
    "sgd_clipvalue": lambda: O.SGD(learning_rate=0.1, clipvalue=0.5),
    "rmsprop_global_clipnorm": lambda: O.RMSprop(learning_rate=0.01, global_clipnorm=1.5),
    "sgd_weight_decay": lambda: O.SGD(learning_rate=0.1, weight_decay=0.05),
    "adamw_exclude_bias": adamw_excluding_bias,
    "lion_weight_decay_clipnorm": lambda: O.Lion(learning_rate=0.01, weight_decay=0.5, clipnorm=0.5),
    "adagrad_global_clipnorm": lambda: O.Adagrad(learning_rate=0.1, global_clipnorm=0.5),
    "nadam_clipvalue_weight_decay": lambda: O.Nadam(learning_rate=0.01, clipvalue=0.3, weight_decay=0.02),
    "adamax_clipnorm": lambda: O.Adamax(learning_rate=0.02, clipnorm=0.8),
    # A schedule: weight decay uses the scheduled rate of the step (0.01, 0.005, 0.0025).
    "adamw_schedule": lambda: O.AdamW(learning_rate=S.ExponentialDecay(0.01, 1, 0.5), weight_decay=0.1),
}

SCHEDULE_STEPS = [0, 1, 2, 3, 5, 7, 9, 10, 11, 15, 19, 20, 21, 29, 30, 31, 45, 50, 60, 90, 100, 109, 110, 150]

SCHEDULES = {
    "exponential": S.ExponentialDecay(0.1, 10, 0.5),
    "exponential_staircase": S.ExponentialDecay(0.1, 10, 0.5, staircase=True),
    "inverse_time": S.InverseTimeDecay(0.1, 10, 0.5),
    "inverse_time_staircase": S.InverseTimeDecay(0.1, 10, 0.5, staircase=True),
    "cosine": S.CosineDecay(0.1, 100, alpha=0.1),
    "cosine_warmup": S.CosineDecay(0.0, 100, alpha=0.05, warmup_target=0.1, warmup_steps=10),
    "cosine_warmup_from": S.CosineDecay(0.01, 50, warmup_target=0.2, warmup_steps=20),
    "piecewise": S.PiecewiseConstantDecay([5, 20], [0.1, 0.05, 0.01]),
    "piecewise_one": S.PiecewiseConstantDecay([10], [1.0, 0.5]),
    "polynomial": S.PolynomialDecay(0.1, 50, end_learning_rate=0.001, power=2.0),
    "polynomial_cycle": S.PolynomialDecay(0.1, 30, end_learning_rate=0.01, power=0.5, cycle=True),
    "polynomial_defaults": S.PolynomialDecay(0.1, 40),
}

FUSION_OPTIMIZERS = {
    "adamw": lambda: O.AdamW(learning_rate=0.01, weight_decay=0.05),
    "rmsprop": lambda: O.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
}


def variables_and_gradients():
    rng = np.random.default_rng(7)
    init = {
        "kernel": rng.uniform(-1.0, 1.0, size=(3, 4)).astype(np.float32),
        "bias": rng.uniform(-0.5, 0.5, size=(4,)).astype(np.float32),
    }
    # Kernel gradients of norm ~3 (clipped by the norm cases), bias gradients of norm ~0.5 (not).
    grads = []
    for k in range(STEPS):
        g = {
            "kernel": rng.normal(0.0, 1.0, size=(3, 4)).astype(np.float32),
            "bias": rng.normal(0.0, 0.3, size=(4,)).astype(np.float32),
        }
        if k == 0:
            g["kernel"][0, 0] = 0.0  # Lion: sign(0) = 0 on the first step
        grads.append(g)
    return init, grads


def optimizer_cases(fixture):
    init, grads = variables_and_gradients()
    fixture["init/kernel"] = init["kernel"]
    fixture["init/bias"] = init["bias"]
    for k, g in enumerate(grads):
        for n, v in g.items():
            fixture[f"grad/{k}/{n}"] = v
    for case, make in CASES.items():
        variables = [keras.Variable(init[n], name=n) for n in ("kernel", "bias")]
        opt = make()
        for k, g in enumerate(grads):
            opt.apply([g["kernel"], g["bias"]], variables)
            for var in variables:
                fixture[f"case/{case}/{k}/{var.name}"] = np.asarray(var.numpy(), dtype=np.float32)


def schedule_values(fixture):
    fixture["schedule_steps"] = np.asarray(SCHEDULE_STEPS, dtype=np.float32)
    for name, schedule in SCHEDULES.items():
        fixture[f"schedule/{name}"] = np.asarray([float(schedule(s)) for s in SCHEDULE_STEPS], dtype=np.float32)


def fusion_training(fixture):
    """BENCH M1 (examples/fusion) from keras_reference's fixture, three steps with each FUSION_OPTIMIZERS."""
    ref = load_file(os.path.join(OUT, "fusion.safetensors"))
    for key, value in ref.items():
        if key.split("/")[0] in ("param", "input", "target"):
            fixture[f"fusion/{key}"] = value
    inputs = {k[len("input/"):]: v for k, v in ref.items() if k.startswith("input/")}
    targets = {k[len("target/"):]: v for k, v in ref.items() if k.startswith("target/")}
    for opt_name, make in FUSION_OPTIMIZERS.items():
        model, losses = keras_reference.fusion()
        names = keras_reference.weight_names(model)
        for n, w in zip(names, model.weights):
            w.assign(ref[f"param/{n}"])
        model.compile(optimizer=make(), loss=losses)
        for _ in range(STEPS):
            model.train_on_batch(inputs, targets)
        for n, w in zip(names, model.weights):
            fixture[f"fusion/{opt_name}3/{n}"] = np.asarray(w.numpy(), dtype=np.float32)


if __name__ == "__main__":
    fixture = {}
    optimizer_cases(fixture)
    schedule_values(fixture)
    fusion_training(fixture)
    path = os.path.join(OUT, "optimizers.safetensors")
    save_file(fixture, path, metadata={"keras": keras.__version__, "backend": keras.backend.backend()})
    print(f"wrote {path}: {len(CASES)} optimizer cases, {len(SCHEDULES)} schedules, {len(fixture)} tensors")
