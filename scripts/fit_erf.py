"""Fit the rational approximation of erf used by model-runtime's exact gelu (kernels/activation.rs, `erf`).

erf(v) = v * P(v^2) / Q(v^2) on [0, 4], P of degree 5, Q of degree 5 with Q(0) = 1, fitted to the
relative error of erf on 4000 Chebyshev nodes: linearized least squares (Loeb: P - f Q = 0 weighted
by the previous Q) with Lawson's reweighting towards the minimax error. Prints the maximum relative
error in f32 ulp (2^-24, exact arithmetic) and the coefficients rounded to f32.

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/fit_erf.py      # needs numpy and scipy
"""
import numpy as np
from scipy.special import erf

N = 4000
v = np.sort(2 + 2 * np.cos(np.pi * (np.arange(N) + 0.5) / N))
f = erf(v) / v
s = v * v


def fit(np_, nq, iters):
    qprev = np.ones_like(s)
    w = np.ones_like(s)
    for _ in range(iters):
        scale = w / (qprev * f)
        cols = [s**k * scale for k in range(np_ + 1)] + [-f * s**k * scale for k in range(1, nq + 1)]
        c, *_ = np.linalg.lstsq(np.stack(cols, 1), f * scale, rcond=None)
        p = sum(c[k] * s**k for k in range(np_ + 1))
        q = 1 + sum(c[np_ + k] * s**k for k in range(1, nq + 1))
        qprev = q
        err = (p / q - f) / f
        w = w * (np.abs(err) / np.abs(err).max()) ** 0.3 + 1e-12
        w /= w.max()
    return c, np.abs(err).max()


c, e = fit(5, 5, 60)
print(f"max relative error {e / 2**-24:.3f} ulp")
print("P (s^0..s^5)", [float(np.float32(x)) for x in c[:6]])
print("Q (s^1..s^5)", [float(np.float32(x)) for x in c[6:]])
