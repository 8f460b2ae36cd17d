#!/usr/bin/env python3
"""Keras reference values for modelc's losses and metrics (tests/keras_losses_metrics.rs).

Writes tests/fixtures/losses_metrics.safetensors, all float32 (class ids as exact floats):

    loss/<case>/pred, /target      one batch (`pred` is logits for the `*_logits` cases)
    loss/<case>/value              Keras' loss value, shape [1]
    loss/<case>/grad               its gradient w.r.t. `pred` (jax.grad, JAX backend)
    fused/<case>/logits, /target   logits fed through softmax or sigmoid, then the probability loss
    fused/<case>/value, /grad      the loss and its gradient w.r.t. the LOGITS, clips included:
                                   some rows saturate beyond [1e-7, 1 - 1e-7]
    metric/<case>/pred1, /target1, /pred2, /target2, /value
                                   a stateful Keras metric updated with two batches, then `result()`
    model/<name>/...               a one-layer model whose softmax/sigmoid saturates on some samples:
                                   param/<w>, input, target, output, loss, dlogits (the gradient w.r.t.
                                   the layer's logits), grad/<w>, adam3/<w> (after three Adam(1e-2) steps)

Run from the repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_losses_metrics.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers, losses, metrics  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "losses_metrics.safetensors")
ROWS, COLS = 5, 4
F = np.float32
HI = F(1.0) - F(1e-7)  # Keras' upper clip bound in float32

rng = np.random.default_rng(7)
fx = {}


def f32(a):
    return np.asarray(a, dtype=np.float32)


def onehot(ids, cols=COLS):
    return np.eye(cols, dtype=np.float32)[ids]


def probs(rows=ROWS, cols=COLS):
    """Positive scores, rows not summing to one (exercises the renormalization)."""
    return f32(rng.uniform(0.05, 1.0, size=(rows, cols)))


def put_loss(case, loss, pred, target):
    pred, target = f32(pred), np.asarray(target)
    value, grad = jax.value_and_grad(lambda p: loss(target, p))(jnp.asarray(pred))
    fx[f"loss/{case}/pred"] = pred
    fx[f"loss/{case}/target"] = f32(target)
    fx[f"loss/{case}/value"] = f32([value])
    fx[f"loss/{case}/grad"] = f32(grad)


def put_fused(case, loss, act, logits, target):
    logits, target = f32(logits), np.asarray(target)
    value, grad = jax.value_and_grad(lambda z: loss(target, act(z)))(jnp.asarray(logits))
    fx[f"fused/{case}/logits"] = logits
    fx[f"fused/{case}/target"] = f32(target)
    fx[f"fused/{case}/value"] = f32([value])
    fx[f"fused/{case}/grad"] = f32(grad)


def loss_cases():
    ids = rng.integers(0, COLS, size=ROWS)
    y = onehot(ids)
    soft = f32(rng.uniform(0.0, 1.0, size=(ROWS, COLS)))
    binary = f32(rng.uniform(size=(ROWS, COLS)) > 0.5)
    logits = f32(rng.normal(0.0, 2.0, size=(ROWS, COLS)))
    # Probabilities with clipped entries: 0, 1, both bounds exactly, beyond them.
    p_bin = f32(rng.uniform(0.02, 0.98, size=(ROWS, COLS)))
    p_bin[0] = [0.0, 1.0, 1e-8, HI]
    p_bin[1, :2] = [F(1e-7), F(1.0) - F(3e-8)]
    p_cat = probs()
    p_cat[0, ids[0]] = 0.0  # the target class clipped: no gradient through it
    p_cat[1] = 0.0
    p_cat[1, ids[1]] = 1.0  # certain and right: clipped at the top
    near = f32(rng.normal(size=(ROWS, COLS)))
    reg = near + f32(rng.normal(0.0, 1.5, size=(ROWS, COLS)))

    put_loss("mean_squared_error", losses.MeanSquaredError(), reg, near)
    put_loss("mean_absolute_error", losses.MeanAbsoluteError(), reg, near)
    put_loss("huber", losses.Huber(), reg, near)
    put_loss("huber_delta_0.5", losses.Huber(delta=0.5), reg, near)
    put_loss("log_cosh", losses.LogCosh(), reg * 4.0, near)
    put_loss("kl_divergence", losses.KLDivergence(), p_bin, soft * f32(rng.uniform(size=(ROWS, COLS)) > 0.3))
    put_loss("cosine_similarity", losses.CosineSimilarity(), reg, near)
    # Norms below eps count as eps (a zero vector would give Keras a NaN gradient: 0 * inf).
    put_loss("cosine_similarity_tiny", losses.CosineSimilarity(), reg * f32(1e-9), near)
    put_loss("poisson", losses.Poisson(), f32(rng.uniform(0.0, 3.0, size=(ROWS, COLS))), f32(rng.poisson(1.5, size=(ROWS, COLS))))
    put_loss("binary_crossentropy", losses.BinaryCrossentropy(), p_bin, binary)
    put_loss("binary_crossentropy_ls_0.2", losses.BinaryCrossentropy(label_smoothing=0.2), p_bin, binary)
    put_loss("binary_crossentropy_logits", losses.BinaryCrossentropy(from_logits=True), logits * 10.0, binary)
    put_loss("binary_crossentropy_logits_ls_0.1", losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), logits, soft)
    put_loss("categorical_crossentropy", losses.CategoricalCrossentropy(), p_cat, y)
    put_loss("categorical_crossentropy_ls_0.1", losses.CategoricalCrossentropy(label_smoothing=0.1), p_cat, y)
    put_loss("categorical_crossentropy_logits", losses.CategoricalCrossentropy(from_logits=True), logits * 10.0, y)
    put_loss("categorical_crossentropy_logits_ls_0.2", losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), logits, y)
    put_loss("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy(), p_cat, ids.astype(np.int32))
    put_loss("sparse_categorical_crossentropy_logits", losses.SparseCategoricalCrossentropy(from_logits=True), logits * 10.0, ids.astype(np.int32))

    # Fused: softmax/sigmoid outputs, gradients w.r.t. the logits. Rows 0 and 1 saturate (the
    # target class far below eps; far above 1 - eps), the others do not.
    z = f32(rng.normal(0.0, 1.5, size=(ROWS, COLS)))
    z[0] = [-25.0, 20.0, 0.0, 3.0]
    z[1] = [30.0, -5.0, 0.0, 1.0]
    fid = ids.copy()
    fid[0], fid[1] = 0, 0
    sm = lambda t: jax.nn.softmax(t, axis=-1)  # noqa: E731  (Keras' softmax activation under JAX)
    put_fused("softmax_categorical_crossentropy", losses.CategoricalCrossentropy(), sm, z, onehot(fid))
    put_fused("softmax_categorical_crossentropy_ls_0.1", losses.CategoricalCrossentropy(label_smoothing=0.1), sm, z, onehot(fid))
    put_fused("softmax_sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy(), sm, z, fid.astype(np.int32))
    zb = f32(rng.normal(0.0, 2.0, size=(ROWS, COLS)))
    zb[0] = [-20.0, 20.0, 17.0, -17.0]  # saturated both ways; sigmoid(17) rounds to the bound itself
    yb = binary.copy()
    yb[0] = [1.0, 0.0, 1.0, 0.0]
    put_fused("sigmoid_binary_crossentropy", losses.BinaryCrossentropy(), jax.nn.sigmoid, zb, yb)
    put_fused("sigmoid_binary_crossentropy_ls_0.2", losses.BinaryCrossentropy(label_smoothing=0.2), jax.nn.sigmoid, zb, yb)


def put_metric(case, metric, batches):
    for i, (p, t) in enumerate(batches, start=1):
        metric.update_state(np.asarray(t), f32(p))
        fx[f"metric/{case}/pred{i}"] = f32(p)
        fx[f"metric/{case}/target{i}"] = f32(t)
    fx[f"metric/{case}/value"] = f32([metric.result()])


def metric_cases():
    def cat(rows):
        p = f32(rng.uniform(size=(rows, 5)))
        p[0, 1] = p[0, 3] = 0.9  # a tie
        return p, rng.integers(0, 5, size=rows).astype(np.int32)

    (p1, i1), (p2, i2) = cat(6), cat(4)
    put_metric("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy(), [(p1, i1), (p2, i2)])
    put_metric("top_k_categorical_accuracy_2", metrics.TopKCategoricalAccuracy(k=2), [(p1, onehot(i1, 5)), (p2, onehot(i2, 5))])
    put_metric("sparse_top_k_categorical_accuracy_2", metrics.SparseTopKCategoricalAccuracy(k=2), [(p1, i1), (p2, i2)])

    def binary(rows):
        p = f32(rng.uniform(size=(rows, 3)))
        p[0] = [0.5, 100 / 199, 0.0]  # on the threshold and on a bucket edge
        y = f32(rng.uniform(size=(rows, 3)) > 0.4)
        return p, y

    b = [binary(7), binary(5)]
    put_metric("auc_roc", metrics.AUC(), b)
    put_metric("auc_pr", metrics.AUC(curve="PR"), b)
    put_metric("precision", metrics.Precision(), b)
    put_metric("recall", metrics.Recall(), b)
    r = [(f32(rng.normal(size=(n, 3))), f32(rng.normal(size=(n, 3)))) for n in (6, 4)]
    put_metric("root_mean_squared_error", metrics.RootMeanSquaredError(), r)
    put_metric("mean_absolute_percentage_error", metrics.MeanAbsolutePercentageError(), r)


def model_case(name, units, activation, loss, make_target, scale):
    """Dense(units, activation) on [3] with large weights, so some samples saturate."""
    keras.utils.set_random_seed(11)
    x_in = keras.Input((3,), name="x")
    dense = layers.Dense(units, activation=activation, name="dense")
    model = keras.Model(x_in, dense(x_in))
    kernel = f32(rng.uniform(-scale, scale, size=(3, units)))
    bias = f32(rng.uniform(-1.0, 1.0, size=(units,)))
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    x = f32(rng.uniform(-2.0, 2.0, size=(8, 3)))
    x[0] *= 3.0
    y = make_target(8, units)
    out = np.asarray(model(x))
    trainable = [w.value for w in model.trainable_weights]

    def total(tv):
        o, _ = model.stateless_call(tv, [], x, training=True)
        return loss(y, o)

    value, grads = jax.value_and_grad(total)(trainable)
    act = jax.nn.softmax if activation == "softmax" else jax.nn.sigmoid
    z = jnp.asarray(x @ kernel + bias)
    dlogits = jax.grad(lambda t: loss(y, act(t)))(z)
    p = f"model/{name}"
    fx[f"{p}/param/dense/kernel"] = kernel
    fx[f"{p}/param/dense/bias"] = bias
    fx[f"{p}/input"] = x
    fx[f"{p}/target"] = f32(y)
    fx[f"{p}/output"] = f32(out)
    fx[f"{p}/loss"] = f32([value])
    fx[f"{p}/dlogits"] = f32(dlogits)
    fx[f"{p}/grad/dense/kernel"] = f32(grads[0])
    fx[f"{p}/grad/dense/bias"] = f32(grads[1])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss=loss)
    for _ in range(3):
        model.train_on_batch(x, y)
    fx[f"{p}/adam3/dense/kernel"] = f32(dense.kernel.numpy())
    fx[f"{p}/adam3/dense/bias"] = f32(dense.bias.numpy())
    clipped = np.mean((out < 1e-7) | (out > HI))
    print(f"{name}: loss {float(value):.6f}, {clipped:.0%} of the outputs clipped")


if __name__ == "__main__":
    loss_cases()
    metric_cases()
    model_case("softmax", 4, "softmax", losses.CategoricalCrossentropy(), lambda n, u: onehot(rng.integers(0, u, size=n), u), 6.0)
    model_case("sigmoid", 3, "sigmoid", losses.BinaryCrossentropy(), lambda n, u: f32(rng.uniform(size=(n, u)) > 0.5), 12.0)
    save_file(fx, OUT, metadata={"keras": keras.__version__, "backend": keras.backend.backend()})
    print(f"wrote {OUT}: {len(fx)} tensors")
