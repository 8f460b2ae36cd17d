"""Serves the digits model exported by `cargo run --release --example digits_onnx` with onnxruntime:
the test split's accuracy, agreement with modelc's own predictions, and predictions per second at
batch 1 and 256.

    python scripts/serve_digits_onnx.py out/digits_onnx
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

out = sys.argv[1] if len(sys.argv) > 1 else "out/digits_onnx"
session = ort.InferenceSession(f"{out}/digits.onnx", providers=["CPUExecutionProvider"])
test = json.load(open(f"{out}/test.json"))
image = np.array(test["image"], np.float32).reshape(-1, 8, 8, 1)
stats = np.array(test["stats"], np.float32).reshape(-1, 26)
(probs,) = session.run(["digit"], {"image": image, "stats": stats})
accuracy = (probs.argmax(axis=1) == np.array(test["labels"])).mean()
print(f"onnxruntime test accuracy {accuracy:.4f} on {len(probs)} digits")

modelc = np.array(test["probs"], np.float32).reshape(probs.shape)
gap = np.abs(probs - modelc).max()
assert gap <= 1e-5, f"onnxruntime and modelc predict differ by {gap}"
print(f"largest difference from modelc's predict: {gap:.2e}")

for batch in (1, 256):
    rows = np.arange(batch) % len(image)
    feeds = {"image": image[rows], "stats": stats[rows]}
    session.run(None, feeds)
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < 1.0:
        session.run(None, feeds)
        done += batch
    print(f"onnxruntime, batch {batch}: {done / (time.perf_counter() - started):.0f} predictions/s")
