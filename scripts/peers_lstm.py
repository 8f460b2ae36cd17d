#!/usr/bin/env python3
"""Times issue #17's recurrent benchmark model in PyTorch (eager, `nn.LSTM`) and JAX (jit, `lax.scan`) on
one thread: tokens int32[64] -> Embedding(1000, 64) -> LSTM(128) -> Dense(1, sigmoid), binary
cross-entropy, Adam (lr 1e-3, eps 1e-7). Inference at batch 1 and 32, a training step at batch 32.
Prints median microseconds per call, to compare with `cargo bench --bench recurrent` (benches/recurrent.rs).

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        taskset -c 0 /tmp/peers-venv/bin/python scripts/peers_lstm.py
"""

import os
import statistics
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

VOCAB, STEPS, EMBED, UNITS = 1000, 64, 64, 128


def timed(f, min_time=0.5):
    f()
    f()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 5:
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def torch_cells():
    import torch

    torch.set_num_threads(1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, EMBED)
            self.lstm = torch.nn.LSTM(EMBED, UNITS, batch_first=True)
            self.head = torch.nn.Linear(UNITS, 1)

        def forward(self, x):
            _, (h, _) = self.lstm(self.emb(x))
            return torch.sigmoid(self.head(h[-1]))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.BCELoss()
    out = {}
    rng = np.random.default_rng(0)
    for batch in (1, 32):
        x = torch.from_numpy(rng.integers(0, VOCAB, size=(batch, STEPS)))
        with torch.no_grad():
            out[f"inference {batch}"] = timed(lambda: net(x))
    x = torch.from_numpy(rng.integers(0, VOCAB, size=(32, STEPS)))
    y = torch.from_numpy((rng.uniform(size=(32, 1)) > 0.5).astype(np.float32))

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    out["train step 32"] = timed(step)
    return out


def jax_cells():
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    k = jax.random.split(key, 4)
    params = {
        "emb": jax.random.uniform(k[0], (VOCAB, EMBED), minval=-0.05, maxval=0.05),
        "w": jax.random.uniform(k[1], (EMBED, 4 * UNITS), minval=-0.1, maxval=0.1),
        "r": jax.random.uniform(k[2], (UNITS, 4 * UNITS), minval=-0.1, maxval=0.1),
        "b": jnp.zeros(4 * UNITS),
        "wd": jax.random.uniform(k[3], (UNITS, 1), minval=-0.2, maxval=0.2),
        "bd": jnp.zeros(1),
    }

    def forward(p, x):
        xp = p["emb"][x] @ p["w"] + p["b"]  # all steps' input projections at once

        def cell(carry, xt):
            h, c = carry
            z = xt + h @ p["r"]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        zeros = jnp.zeros((x.shape[0], UNITS))
        (h, _), _ = jax.lax.scan(cell, (zeros, zeros), jnp.swapaxes(xp, 0, 1))
        return jax.nn.sigmoid(h @ p["wd"] + p["bd"])

    def loss(p, x, y):
        q = jnp.clip(forward(p, x), 1e-7, 1 - 1e-7)
        return -jnp.mean(y * jnp.log(q) + (1 - y) * jnp.log(1 - q))

    fwd = jax.jit(forward)
    grad = jax.jit(jax.grad(loss))
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)

    @jax.jit
    def step(p, m, v, t, x, y):
        g = grad(p, x, y)
        m = jax.tree_util.tree_map(lambda a, b: 0.9 * a + 0.1 * b, m, g)
        v = jax.tree_util.tree_map(lambda a, b: 0.999 * a + 0.001 * b * b, v, g)
        alpha = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        p = jax.tree_util.tree_map(lambda a, b, c: a - alpha * b / (jnp.sqrt(c) + 1e-7), p, m, v)
        return p, m, v

    out = {}
    rng = np.random.default_rng(0)
    for batch in (1, 32):
        x = jnp.asarray(rng.integers(0, VOCAB, size=(batch, STEPS)).astype(np.int32))
        out[f"inference {batch}"] = timed(lambda: fwd(params, x).block_until_ready())
    x = jnp.asarray(rng.integers(0, VOCAB, size=(32, STEPS)).astype(np.int32))
    y = jnp.asarray((rng.uniform(size=(32, 1)) > 0.5).astype(np.float32))
    state = [params, m, v]

    def train():
        p, mm, vv = step(state[0], state[1], state[2], 1.0, x, y)
        jax.block_until_ready(p)

    out["train step 32"] = timed(train)
    return out


if __name__ == "__main__":
    rows = {"PyTorch (nn.LSTM)": torch_cells(), "JAX (lax.scan)": jax_cells()}
    print("| cell | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for cell in ("inference 1", "inference 32", "train step 32"):
        print(f"| {cell} | " + " | ".join(f"{rows[r][cell]:.0f} µs" for r in rows) + " |")
