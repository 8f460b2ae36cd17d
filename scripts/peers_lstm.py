#!/usr/bin/env python3
"""Times issue #17's recurrent benchmark models in PyTorch (eager, `nn.LSTM` / `nn.GRU`) and JAX (jit,
`lax.scan`) on one thread: tokens int32[64] -> Embedding(1000, 64) -> RNN -> Dense(1, sigmoid), binary
cross-entropy, Adam (lr 1e-3, eps 1e-7), with RNN one of LSTM(128), GRU(128) (Keras' reset_after = true,
which is PyTorch's GRU) and Bidirectional(LSTM(64)) (the two directions' last states concatenated).
Inference at batch 1 and 32, a training step at batch 32. Prints median microseconds per call (with
MEAN=1, the mean, which like criterion's estimate counts the calls another process preempted), to
compare with `cargo bench --bench recurrent` (benches/recurrent.rs: R1, R2, R3).

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        taskset -c 0 /work/peers-venv/bin/python scripts/peers_lstm.py [lstm gru bilstm]
"""

import os
import statistics
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

VOCAB, STEPS, EMBED = 1000, 64, 64
# Variant -> (recurrent units per direction, directions, gates per unit).
VARIANTS = {"lstm": (128, 1, 4), "gru": (128, 1, 3), "bilstm": (64, 2, 4)}
CELLS = ("inference 1", "inference 32", "train step 32")


def timed(f, min_time=0.5):
    """Microseconds per call: the median of single calls, or with MEAN=1 in the environment the mean
    (total time over calls, preempted calls included, as criterion's estimate of modelc's)."""
    f()
    f()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 5:
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    if os.environ.get("MEAN") == "1":
        return statistics.fmean(times) * 1e6
    return statistics.median(times) * 1e6


def torch_cells(variant):
    import torch

    torch.set_num_threads(1)
    units, dirs, _ = VARIANTS[variant]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(VOCAB, EMBED)
            rnn = torch.nn.GRU if variant == "gru" else torch.nn.LSTM
            self.rnn = rnn(EMBED, units, batch_first=True, bidirectional=dirs == 2)
            self.head = torch.nn.Linear(units * dirs, 1)

        def forward(self, x):
            _, h = self.rnn(self.emb(x))
            h = h if variant == "gru" else h[0]
            last = torch.cat([h[0], h[1]], dim=-1) if dirs == 2 else h[-1]
            return torch.sigmoid(self.head(last))

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


def jax_cells(variant):
    import jax
    import jax.numpy as jnp

    units, dirs, gates = VARIANTS[variant]
    k = jax.random.split(jax.random.PRNGKey(0), 3 + 2 * dirs)
    params = {
        "emb": jax.random.uniform(k[0], (VOCAB, EMBED), minval=-0.05, maxval=0.05),
        "wd": jax.random.uniform(k[1], (units * dirs, 1), minval=-0.2, maxval=0.2),
        "bd": jnp.zeros(1),
    }
    for d in range(dirs):
        params[f"w{d}"] = jax.random.uniform(k[3 + 2 * d], (EMBED, gates * units), minval=-0.1, maxval=0.1)
        params[f"r{d}"] = jax.random.uniform(k[4 + 2 * d], (units, gates * units), minval=-0.1, maxval=0.1)
        # GRU (reset_after): input bias and recurrent bias.
        params[f"b{d}"] = jnp.zeros((2 if variant == "gru" else 1, gates * units))

    def lstm_cell(r):
        def cell(carry, xt):
            h, c = carry
            z = xt + h @ r
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        return cell

    def gru_cell(r, rb):
        def cell(h, xt):
            hr = h @ r + rb
            xz, xr, xh = jnp.split(xt, 3, axis=-1)
            hz, hrr, hh = jnp.split(hr, 3, axis=-1)
            z = jax.nn.sigmoid(xz + hz)
            rr = jax.nn.sigmoid(xr + hrr)
            cand = jnp.tanh(xh + rr * hh)
            return z * h + (1 - z) * cand, None

        return cell

    def direction(p, e, d, reverse):
        xp = e @ p[f"w{d}"] + p[f"b{d}"][0]  # all steps' input projections at once
        xs = jnp.swapaxes(xp, 0, 1)
        zeros = jnp.zeros((e.shape[0], units))
        if variant == "gru":
            h, _ = jax.lax.scan(gru_cell(p[f"r{d}"], p[f"b{d}"][1]), zeros, xs, reverse=reverse)
            return h
        (h, _), _ = jax.lax.scan(lstm_cell(p[f"r{d}"]), (zeros, zeros), xs, reverse=reverse)
        return h

    def forward(p, x):
        e = p["emb"][x]
        h = jnp.concatenate([direction(p, e, d, d == 1) for d in range(dirs)], axis=-1)
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
    variants = sys.argv[1:] or list(VARIANTS)
    print("| model | cell | PyTorch | JAX (lax.scan) |")
    print("|---|---|---|---|")
    for variant in variants:
        rows = [torch_cells(variant), jax_cells(variant)]
        for cell in CELLS:
            print(f"| {variant} | {cell} | " + " | ".join(f"{r[cell]:.0f} µs" for r in rows) + " |", flush=True)
