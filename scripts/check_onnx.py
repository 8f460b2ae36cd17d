"""Checks an ONNX file modelc exported, independently of tract: the `onnx` checker (with full shape
inference), standard operators of one opset >= 17 only, then onnxruntime's outputs against the outputs of
modelc's `predict` recorded in each case file (JSON written by onnx-tract/tests/onnx.rs), within 1e-5 (relative to the
value's size past 1).

    python scripts/check_onnx.py model.onnx case_b1.json case_b7.json
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def check_file(path):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert set(opsets) <= {"", "ai.onnx"}, f"{path}: custom domains {opsets}"
    assert max(opsets.values()) >= 17, f"{path}: opset {opsets}"
    bad = [n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx")]
    assert not bad, f"{path}: non-standard operators {bad}"
    meta = {p.key: p.value for p in model.metadata_props}
    assert "model_name" in meta and "modelc_version" in meta, f"{path}: metadata {meta}"


def compare(path, case_path, session):
    with open(case_path) as f:
        case = json.load(f)
    feeds = {
        name: np.array(t["data"], dtype=t["dtype"]).reshape(t["shape"])
        for name, t in case["inputs"].items()
    }
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, feeds)))
    for name, t in case["outputs"].items():
        want = np.array(t["data"], dtype=np.float32).reshape(t["shape"])
        have = got[name]
        assert have.shape == want.shape, f"{path} {name}: shape {have.shape}, predict {want.shape}"
        err = np.abs(have - want) / np.maximum(np.abs(want), 1.0)
        assert err.max(initial=0.0) <= 1e-5, f"{path} {name}: onnxruntime differs from predict by {err.max()}"


def main(path, *cases):
    check_file(path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for case in cases:
        compare(path, case, session)
    print(f"{path}: onnx checker and onnxruntime agree with predict ({len(cases)} batches)")


if __name__ == "__main__":
    main(*sys.argv[1:])
