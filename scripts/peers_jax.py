#!/usr/bin/env python3
"""Times the BENCH.md models in JAX (jit-compiled forward and Adam train step) for BENCHMARKS.md.

The same models as benches/models.rs (M1–M5, and M6 U-Net and M7 MobileNet-like of issue #19), f32, channels-last, Keras-default (Glorot uniform) init,
the same losses. Prints one table of median microseconds per call. Run on an idle machine:

    python3 -m venv .venv && .venv/bin/pip install jax numpy
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" .venv/bin/python scripts/peers_jax.py
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def glorot(key, fan_in, fan_out, shape):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)


def dense_params(key, n_in, n_out):
    return {"kernel": glorot(key, n_in, n_out, (n_in, n_out)), "bias": jnp.zeros((n_out,), jnp.float32)}


def conv_params(key, k, c_in, c_out):
    return {"kernel": glorot(key, k * k * c_in, k * k * c_out, (k, k, c_in, c_out)), "bias": jnp.zeros((c_out,), jnp.float32)}


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def conv_same(p, x):
    y = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def bce(p, y):
    p = jnp.clip(p, 1e-7, 1 - 1e-7)
    return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))


def cce(p, y):
    p = jnp.clip(p, 1e-7, 1 - 1e-7)
    return -jnp.mean(jnp.sum(y * jnp.log(p), axis=-1))


relu, sigmoid, softmax = jax.nn.relu, jax.nn.sigmoid, jax.nn.softmax


def m1():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"l1": dense_params(k[0], 8, 16), "l2": dense_params(k[1], 16, 8), "r1": dense_params(k[2], 4, 8), "head": dense_params(k[3], 16, 1)}

    def forward(p, x):
        left, right = x
        l = relu(dense(p["l2"], relu(dense(p["l1"], left))))
        r = relu(dense(p["r1"], right))
        return sigmoid(dense(p["head"], jnp.concatenate([l, r], axis=-1)))

    def loss(p, x, y):
        return bce(forward(p, x), y)

    def data(b, rng):
        return (rng.uniform(-1, 1, (b, 8)).astype(np.float32), rng.uniform(-1, 1, (b, 4)).astype(np.float32)), (rng.uniform(size=(b, 1)) > 0.5).astype(np.float32)

    return params, forward, loss, data


def m2():
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {
        "d1": dense_params(k[0], 64, 128),
        "d2": dense_params(k[1], 128, 128),
        "skip": dense_params(k[2], 64, 128),
        "a": dense_params(k[3], 128, 10),
        "b": dense_params(k[4], 128, 1),
    }

    def forward(p, x):
        trunk = relu(dense(p["d2"], relu(dense(p["d1"], x)))) + dense(p["skip"], x)
        return softmax(dense(p["a"], trunk)), sigmoid(dense(p["b"], trunk))

    def loss(p, x, y):
        a, b = forward(p, x)
        return cce(a, y[0]) + bce(b, y[1])

    def data(b, rng):
        ya = np.eye(10, dtype=np.float32)[rng.integers(0, 10, b)]
        return rng.uniform(-1, 1, (b, 64)).astype(np.float32), (ya, (rng.uniform(size=(b, 1)) > 0.5).astype(np.float32))

    return params, forward, loss, data


def m3():
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"c1": conv_params(k[0], 3, 3, 16), "c2": conv_params(k[1], 3, 16, 32), "meta": dense_params(k[2], 6, 8), "head": dense_params(k[3], 40, 3)}

    def forward(p, x):
        image, meta = x
        h = relu(conv_same(p["c2"], relu(conv_same(p["c1"], image))))
        pooled = jnp.mean(h, axis=(1, 2))
        return softmax(dense(p["head"], jnp.concatenate([pooled, relu(dense(p["meta"], meta))], axis=-1)))

    def loss(p, x, y):
        return cce(forward(p, x), y)

    def data(b, rng):
        x = (rng.uniform(0, 1, (b, 32, 32, 3)).astype(np.float32), rng.uniform(-1, 1, (b, 6)).astype(np.float32))
        return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, b)]

    return params, forward, loss, data


def m4():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"h1": dense_params(k[0], 784, 512), "h2": dense_params(k[1], 512, 512), "head": dense_params(k[2], 512, 10)}

    def forward(p, x):
        h1 = relu(dense(p["h1"], x))
        h2 = relu(dense(p["h2"], h1))
        return softmax(dense(p["head"], h1 + h2))

    def loss(p, x, y):
        return cce(forward(p, x), y)

    def data(b, rng):
        return rng.uniform(0, 1, (b, 784)).astype(np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, b)]

    return params, forward, loss, data


def m5():
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    params = {"enc": dense_params(k[0], 128, 64), "head": dense_params(k[1], 64, 1)}

    def forward(p, x):
        a, b = x
        return sigmoid(dense(p["head"], 0.5 * (relu(dense(p["enc"], a)) + relu(dense(p["enc"], b)))))

    def loss(p, x, y):
        return bce(forward(p, x), y)

    def data(b, rng):
        return (rng.uniform(-1, 1, (b, 128)).astype(np.float32), rng.uniform(-1, 1, (b, 128)).astype(np.float32)), (rng.uniform(size=(b, 1)) > 0.5).astype(np.float32)

    return params, forward, loss, data


def conv_transpose_same(p, x, stride):
    y = jax.lax.conv_transpose(x, p["kernel"], (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]


def max_pool2(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def m6():
    """M6 (issue #19): the U-Net of benches/bench_models on a 64×64 RGB image."""
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {
        "c1": conv_params(k[0], 3, 3, 16),
        "c2": conv_params(k[1], 3, 16, 32),
        "u2": conv_params(k[2], 3, 32, 32),
        "u1": conv_params(k[3], 3, 64, 16),
        "out": {"kernel": glorot(k[4], 32, 1, (1, 1, 32, 1)), "bias": jnp.zeros((1,), jnp.float32)},
    }

    def forward(p, x):
        c1 = relu(conv_same(p["c1"], x))
        c2 = relu(conv_same(p["c2"], max_pool2(c1)))
        u2 = relu(conv_transpose_same(p["u2"], max_pool2(c2), 2))
        u1 = relu(conv_transpose_same(p["u1"], jnp.concatenate([u2, c2], axis=-1), 2))
        return sigmoid(conv_same(p["out"], jnp.concatenate([u1, c1], axis=-1)))

    def loss(p, x, y):
        return bce(forward(p, x), y)

    def data(b, rng):
        return rng.uniform(0, 1, (b, 64, 64, 3)).astype(np.float32), (rng.uniform(size=(b, 64, 64, 1)) > 0.5).astype(np.float32)

    return params, forward, loss, data


def m7(training=False):
    """M7 (issue #19): the MobileNet-like classifier of benches/bench_models on a 32×32 RGB image. Batch
    normalization uses the batch statistics in the train step and the moving ones (mean 0, variance 1) in
    inference; the moving statistics are not updated (a few element-wise passes less than Keras)."""
    k = jax.random.split(jax.random.PRNGKey(0), 9)
    blocks = [(1, 3, 16), (2, 16, 32), (1, 32, 32), (2, 32, 64)]
    params = {}
    for i, (_, c, f) in enumerate(blocks):
        params[f"dw{i}"] = glorot(k[2 * i], 9 * c, 9, (3, 3, 1, c))
        params[f"bn{i}"] = {"gamma": jnp.ones((c,), jnp.float32), "beta": jnp.zeros((c,), jnp.float32)}
        params[f"pw{i}"] = conv_params(k[2 * i + 1], 1, c, f)
    params["head"] = dense_params(k[8], 64, 10)

    def batch_norm(p, x, train):
        if train:
            mean, var = jnp.mean(x, axis=(0, 1, 2)), jnp.var(x, axis=(0, 1, 2))
        else:
            mean, var = 0.0, 1.0
        return (x - mean) * jax.lax.rsqrt(var + 1e-3) * p["gamma"] + p["beta"]

    def forward_mode(p, x, train):
        for i, (stride, c, _) in enumerate(blocks):
            x = jax.lax.conv_general_dilated(
                x, p[f"dw{i}"], (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
            )
            x = relu(batch_norm(p[f"bn{i}"], x, train))
            x = relu(conv_same(p[f"pw{i}"], x))
        return softmax(dense(p["head"], jnp.mean(x, axis=(1, 2))))

    def forward(p, x):
        return forward_mode(p, x, False)

    def loss(p, x, y):
        return cce(forward_mode(p, x, True), y)

    def data(b, rng):
        return rng.uniform(0, 1, (b, 32, 32, 3)).astype(np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, b)]

    return params, forward, loss, data


def m8():
    """M8 (issue #18): the transformer encoder classifier of benches/bench_models on 128 token ids (and
    their positions): Embedding(2000, 128) + position Embedding(128, 128), two encoder blocks (4 heads of
    32, Add, LayerNorm eps 1e-3, Dense 256 exact gelu, Dense 128, Add, LayerNorm), mean, Dense 2 softmax."""
    k = iter(jax.random.split(jax.random.PRNGKey(0), 32))
    d, heads, dh = 128, 4, 32
    params = {"tok": jax.random.uniform(next(k), (2000, d), jnp.float32, -0.05, 0.05),
              "pos": jax.random.uniform(next(k), (128, d), jnp.float32, -0.05, 0.05)}
    for b in range(2):
        params[f"b{b}"] = {
            **{n: dense_params(next(k), d, d) for n in ["q", "k", "v", "o"]},
            "ln1": {"gamma": jnp.ones((d,), jnp.float32), "beta": jnp.zeros((d,), jnp.float32)},
            "f1": dense_params(next(k), d, 256),
            "f2": dense_params(next(k), 256, d),
            "ln2": {"gamma": jnp.ones((d,), jnp.float32), "beta": jnp.zeros((d,), jnp.float32)},
        }
    params["head"] = dense_params(next(k), d, 2)

    def layer_norm(p, x):
        mean, var = jnp.mean(x, -1, keepdims=True), jnp.var(x, -1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + 1e-3) * p["gamma"] + p["beta"]

    def attention(p, x):
        n, t, _ = x.shape
        split = lambda y: y.reshape(n, t, heads, dh).transpose(0, 2, 1, 3)  # noqa: E731
        q, kk, v = split(dense(p["q"], x)), split(dense(p["k"], x)), split(dense(p["v"], x))
        probs = softmax(q @ kk.transpose(0, 1, 3, 2) / np.sqrt(dh), axis=-1)
        return dense(p["o"], (probs @ v).transpose(0, 2, 1, 3).reshape(n, t, d))

    def forward(p, x):
        tokens, positions = x
        h = p["tok"][tokens] + p["pos"][positions]
        for b in range(2):
            q = p[f"b{b}"]
            h = layer_norm(q["ln1"], h + attention(q, h))
            f = dense(q["f2"], jax.nn.gelu(dense(q["f1"], h), approximate=False))
            h = layer_norm(q["ln2"], h + f)
        return softmax(dense(p["head"], jnp.mean(h, axis=1)))

    def loss(p, x, y):
        return cce(forward(p, x), y)

    def data(b, rng):
        tokens = rng.integers(0, 2000, (b, 128)).astype(np.int32)
        positions = np.broadcast_to(np.arange(128, dtype=np.int32), (b, 128)).copy()
        return (tokens, positions), np.eye(2, dtype=np.float32)[rng.integers(0, 2, b)]

    return params, forward, loss, data


def adam_step(loss):
    b1, b2, eps, lr = 0.9, 0.999, 1e-7, 1e-3

    @jax.jit
    def step(params, m, v, t, x, y):
        g = jax.grad(loss)(params, x, y)
        t = t + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        alpha = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree.map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + eps), params, m, v)
        return params, m, v, t

    return step


def median_us(f, min_time=0.5):
    f()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 10:
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main():
    rng = np.random.default_rng(0)
    rows = []
    for name, build, infer_batches, train_batches in [
        ("M1", m1, [1, 32, 256], [32, 256]),
        ("M2", m2, [1, 32, 256], [32, 256]),
        ("M3", m3, [1, 32], [32]),
        ("M4", m4, [1, 32, 256], [32, 256]),
        ("M5", m5, [1, 32, 256], [32, 256]),
        ("M6", m6, [1, 32], [32]),
        ("M7", m7, [1, 32], [32]),
    ]:
        params, forward, loss, data = build()
        fwd = jax.jit(forward)
        for b in infer_batches:
            x, _ = data(b, rng)
            us = median_us(lambda: jax.block_until_ready(fwd(params, x)))
            rows.append((name, "inference", b, us))
        step = adam_step(loss)
        for b in train_batches:
            x, y = data(b, rng)
            state = [params, jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params), jnp.float32(0)]

            def run():
                state[:] = step(*state, x, y)
                jax.block_until_ready(state[0])

            rows.append((name, "train step", b, median_us(run)))
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, median per call")
    print("| model | task | batch | JAX jit (µs) |")
    print("|---|---|---|---|")
    for name, task, b, us in rows:
        print(f"| {name} | {task} | {b} | {us:.1f} |")


if __name__ == "__main__":
    main()
