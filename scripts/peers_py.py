#!/usr/bin/env python3
"""Times the BENCH.md models in PyTorch (eager) and JAX (jit) on one thread, and prints ONE table beside
modelc, candle and burn read from the criterion results of the peers bench.

The models are the same as benches/bench_models/mod.rs and peers/src: f32, Glorot-uniform kernels,
zero biases, the same losses (cross-entropies on probabilities clipped to [1e-7, 1 - 1e-7]), Adam with
lr 1e-3, betas 0.9/0.999, eps 1e-7. The JAX models are those of scripts/peers_jax.py (imported). Images
are handed to PyTorch as NCHW, like to candle and burn (their native conv layout, transposed once
outside the timed loop); JAX takes them NHWC like modelc.

Setup (PyPI only; `pip install torch` on Linux is the CUDA build, about 6 GB with its NVIDIA wheels,
and runs on the CPU without a GPU):

    python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install torch jax numpy

Run, on one core (the Rust side first, so its results are in the table):

    (cd peers && RAYON_NUM_THREADS=1 cargo bench --bench peers -- --warm-up-time 1 --measurement-time 2)
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        taskset -c 0 /tmp/peers-venv/bin/python scripts/peers_py.py --criterion peers/target/criterion

Options: --criterion DIR (default peers/target/criterion when it exists), --no-torch, --no-jax,
--only M1,M4 (models), --min-time SECONDS per cell (default 0.5). Cells whose framework was not
measured print as "-". Figures are median microseconds per call; the last column is modelc divided by
the fastest peer of the row (below 1: modelc is faster).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUST = ["modelc", "candle", "burn"]
PEERS = ["candle", "burn", "PyTorch", "JAX"]

# The cells of BENCH.md: (model, task, batch). Inference at 1 and 32 (and 256 for M4), train at 32 and 256.
CELLS = [
    (m, task, b)
    for m in ["M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8"]
    for task, batches in [("inference", [1, 32, 256] if m == "M4" else [1, 32]), ("train", [32] if m in ("M6", "M7", "M8") else [32, 256])]
    for b in batches
]

# Outputs of each model: (width, loss) with loss "bce" or "cce".
OUTPUTS = {
    "M1": [(1, "bce")],
    "M2": [(10, "cce"), (1, "bce")],
    "M3": [(3, "cce")],
    "M4": [(10, "cce")],
    "M5": [(1, "bce")],
    "M6": [((64, 64, 1), "bce")],
    "M7": [(10, "cce")],
    "M8": [(2, "cce")],
}
INPUTS = {"M1": [(8,), (4,)], "M2": [(64,)], "M3": [(32, 32, 3), (6,)], "M4": [(784,)], "M5": [(128,), (128,)], "M6": [(64, 64, 3)], "M7": [(32, 32, 3)]}


def synthetic(model, batch, rng):
    """Inputs (NHWC images in [0, 1], features in [-1, 1], M8's token ids and positions) and targets (0/1
    labels, one-hot rows)."""
    if model == "M8":
        tokens = rng.integers(0, 2000, (batch, 128)).astype(np.int64)
        positions = np.broadcast_to(np.arange(128, dtype=np.int64), (batch, 128)).copy()
        return [tokens, positions], [np.eye(2, dtype=np.float32)[rng.integers(0, 2, batch)]]
    xs = [rng.uniform(0 if len(s) == 3 else -1, 1, (batch, *s)).astype(np.float32) for s in INPUTS[model]]
    ys = []
    for width, loss in OUTPUTS[model]:
        if loss == "bce":
            shape = (batch, *width) if isinstance(width, tuple) else (batch, width)
            ys.append((rng.uniform(size=shape) > 0.5).astype(np.float32))
        else:
            ys.append(np.eye(width, dtype=np.float32)[rng.integers(0, width, batch)])
    return xs, ys


# What a call is timed with: the wall clock, or (`--clock cpu`) the CPU time of every thread of the
# process (time.process_time), steadier on a machine shared with other work.
CLOCK = time.perf_counter


def median_us(f, min_time):
    f()
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 10:
        t0 = CLOCK()
        f()
        times.append(CLOCK() - t0)
    return statistics.median(times) * 1e6


# ---------------------------------------------------------------- PyTorch


def torch_models():
    import torch
    from torch import nn

    def dense(i, o):
        layer = nn.Linear(i, o)
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    def conv(i, o):
        layer = nn.Conv2d(i, o, 3, padding="same")
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
        return layer

    relu, sigmoid = torch.relu, torch.sigmoid

    class M1(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.r1, self.head = dense(8, 16), dense(16, 8), dense(4, 8), dense(16, 1)

        def forward(self, left, right):
            l = relu(self.l2(relu(self.l1(left))))
            return [sigmoid(self.head(torch.cat([l, relu(self.r1(right))], dim=1)))]

    class M2(nn.Module):
        def __init__(self):
            super().__init__()
            self.d1, self.d2, self.skip, self.a, self.b = dense(64, 128), dense(128, 128), dense(64, 128), dense(128, 10), dense(128, 1)

        def forward(self, x):
            trunk = relu(self.d2(relu(self.d1(x)))) + self.skip(x)
            return [torch.softmax(self.a(trunk), dim=1), sigmoid(self.b(trunk))]

    class M3(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2, self.meta, self.head = conv(3, 16), conv(16, 32), dense(6, 8), dense(40, 3)

        def forward(self, image, meta):
            pooled = relu(self.c2(relu(self.c1(image)))).mean(dim=(2, 3))
            return [torch.softmax(self.head(torch.cat([pooled, relu(self.meta(meta))], dim=1)), dim=1)]

    class M4(nn.Module):
        def __init__(self):
            super().__init__()
            self.h1, self.h2, self.head = dense(784, 512), dense(512, 512), dense(512, 10)

        def forward(self, x):
            h1 = relu(self.h1(x))
            return [torch.softmax(self.head(h1 + relu(self.h2(h1))), dim=1)]

    class M5(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.head = dense(128, 64), dense(64, 1)

        def forward(self, a, b):
            return [sigmoid(self.head(0.5 * (relu(self.encoder(a)) + relu(self.encoder(b)))))]

    def glorot_(layer):
        nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
        return layer

    class M6(nn.Module):
        """The U-Net of issue #19 (NCHW; the mask is returned NHWC, a view, to meet NHWC targets)."""

        def __init__(self):
            super().__init__()
            self.c1, self.c2 = conv(3, 16), conv(16, 32)
            self.u2 = glorot_(nn.ConvTranspose2d(32, 32, 3, stride=2, padding=1, output_padding=1))
            self.u1 = glorot_(nn.ConvTranspose2d(64, 16, 3, stride=2, padding=1, output_padding=1))
            self.out = glorot_(nn.Conv2d(32, 1, 1))

        def forward(self, image):
            c1 = relu(self.c1(image))
            c2 = relu(self.c2(nn.functional.max_pool2d(c1, 2)))
            u2 = relu(self.u2(nn.functional.max_pool2d(c2, 2)))
            u1 = relu(self.u1(torch.cat([u2, c2], dim=1)))
            return [sigmoid(self.out(torch.cat([u1, c1], dim=1))).permute(0, 2, 3, 1)]

    class M7(nn.Module):
        """The MobileNet-like classifier of issue #19: depthwise 3×3 (groups = channels, no bias),
        BatchNorm2d (eps 1e-3, as Keras), relu, pointwise 1×1 with relu; four times."""

        def __init__(self):
            super().__init__()
            blocks = [(1, 3, 16), (2, 16, 32), (1, 32, 32), (2, 32, 64)]
            layers = []
            for stride, c, f in blocks:
                layers += [
                    glorot_(nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c, bias=False)),
                    nn.BatchNorm2d(c, eps=1e-3, momentum=0.01),
                    nn.ReLU(),
                    glorot_(nn.Conv2d(c, f, 1)),
                    nn.ReLU(),
                ]
            self.body, self.head = nn.Sequential(*layers), dense(64, 10)

        def forward(self, image):
            return [torch.softmax(self.head(self.body(image).mean(dim=(2, 3))), dim=1)]

    class Block(nn.Module):
        """One encoder block: nn.MultiheadAttention (4 heads of 32), Add, LayerNorm (eps 1e-3, as Keras),
        Linear 256 with exact gelu, Linear 128, Add, LayerNorm."""

        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(128, 4, batch_first=True)
            self.ln1, self.ln2 = nn.LayerNorm(128, eps=1e-3), nn.LayerNorm(128, eps=1e-3)
            self.f1, self.f2 = dense(128, 256), dense(256, 128)

        def forward(self, x):
            x = self.ln1(x + self.mha(x, x, x, need_weights=False)[0])
            return self.ln2(x + self.f2(nn.functional.gelu(self.f1(x))))

    class M8(nn.Module):
        """The transformer encoder of issue #18: token and position embeddings, two blocks, mean, softmax."""

        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(2000, 128), nn.Embedding(128, 128)
            self.blocks, self.head = nn.Sequential(Block(), Block()), dense(128, 2)

        def forward(self, tokens, positions):
            h = self.blocks(self.tok(tokens) + self.pos(positions))
            return [torch.softmax(self.head(h.mean(dim=1)), dim=1)]

    return {"M1": M1, "M2": M2, "M3": M3, "M4": M4, "M5": M5, "M6": M6, "M7": M7, "M8": M8}


def time_torch(cells, min_time):
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    models = torch_models()
    eps = 1e-7

    def loss_of(outputs, ys, kinds):
        total = 0.0
        for p, y, (_, kind) in zip(outputs, ys, kinds):
            p = p.clamp(eps, 1 - eps)
            if kind == "bce":
                total = total + -(y * p.log() + (1 - y) * (1 - p).log()).mean()
            else:
                total = total + -(y * p.log()).sum(dim=1).mean()
        return total

    rng = np.random.default_rng(0)
    out = {}
    for m, task, b in cells:
        net = models[m]()
        xs, ys = synthetic(m, b, rng)
        xs = [torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x) for x in xs]
        ys = [torch.from_numpy(y) for y in ys]
        if task == "inference":
            net.eval()

            def run():
                with torch.inference_mode():
                    net(*xs)

        else:
            net.train()
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=eps)

            def run():
                opt.zero_grad(set_to_none=True)
                loss_of(net(*xs), ys, OUTPUTS[m]).backward()
                opt.step()

        out[(m, task, b)] = median_us(run, min_time)
    return f"PyTorch {torch.__version__} eager, {torch.get_num_threads()} thread", out


# ---------------------------------------------------------------- JAX


def time_jax(cells, min_time):
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers_jax

    builders = {
        "M1": peers_jax.m1,
        "M2": peers_jax.m2,
        "M3": peers_jax.m3,
        "M4": peers_jax.m4,
        "M5": peers_jax.m5,
        "M6": peers_jax.m6,
        "M7": peers_jax.m7,
        "M8": peers_jax.m8,
    }
    rng = np.random.default_rng(0)
    out = {}
    for m, task, b in cells:
        params, forward, loss, _ = builders[m]()
        xs, ys = synthetic(m, b, rng)
        x = tuple(xs) if len(xs) > 1 else xs[0]
        y = tuple(ys) if len(ys) > 1 else ys[0]
        if task == "inference":
            fwd = jax.jit(forward)
            out[(m, task, b)] = median_us(lambda: jax.block_until_ready(fwd(params, x)), min_time)
        else:
            step = peers_jax.adam_step(loss)
            zeros = jax.tree.map(jnp.zeros_like, params)
            state = [params, zeros, zeros, jnp.float32(0)]

            def run():
                state[:] = step(*state, x, y)
                jax.block_until_ready(state[0])

            out[(m, task, b)] = median_us(run, min_time)
    return f"JAX {jax.__version__} jit on {jax.devices()[0].platform}", out


# ---------------------------------------------------------------- criterion


def read_criterion(directory):
    """{framework: {(model, task, batch): median µs}} from the peers bench's criterion output."""
    out = {name: {} for name in RUST}
    for path in Path(directory).glob("*/*/new/benchmark.json"):
        meta = json.loads(path.read_text())
        try:
            model, task, batch = meta["group_id"].split()
            key = (model, task, int(batch.lstrip("b")))
        except ValueError:
            continue  # not a peers-bench group
        name = meta.get("function_id")
        if name in out:
            estimates = json.loads((path.parent / "estimates.json").read_text())
            out[name][key] = estimates["median"]["point_estimate"] / 1000.0
    return out


def fmt(us):
    if us is None:
        return "-"
    return f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_dir = ROOT / "peers" / "target" / "criterion"
    ap.add_argument("--criterion", default=str(default_dir) if default_dir.exists() else None)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated models, e.g. M1,M4")
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="time calls by the wall clock or by the process's CPU time (all its threads)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    only = {m.strip().upper() for m in args.only.split(",") if m.strip()}
    cells = [c for c in CELLS if not only or c[0] in only]
    results = read_criterion(args.criterion) if args.criterion else {name: {} for name in RUST}
    notes = []
    if args.criterion:
        notes.append(f"modelc, candle, burn: criterion medians from {args.criterion}")
    for flag, name, timer in [(args.no_torch, "PyTorch", time_torch), (args.no_jax, "JAX", time_jax)]:
        if flag:
            results[name] = {}
            continue
        try:
            note, results[name] = timer(cells, args.min_time)
            notes.append(note)
        except ImportError as e:
            results[name] = {}
            notes.append(f"{name} not measured: {e}")

    for note in notes:
        print(f"- {note}")
    print()
    print("| model | task | batch | modelc | candle | burn | PyTorch | JAX | best peer | modelc / best |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cell in cells:
        row = {name: results.get(name, {}).get(cell) for name in RUST + ["PyTorch", "JAX"]}
        peers = {n: row[n] for n in PEERS if row[n] is not None}
        best = min(peers, key=peers.get) if peers else None
        ratio = f"{row['modelc'] / peers[best]:.2f}" if best and row["modelc"] is not None else "-"
        cols = " | ".join(fmt(row[n]) for n in RUST + ["PyTorch", "JAX"])
        print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {cols} | {best or '-'} | {ratio} |")


if __name__ == "__main__":
    main()
