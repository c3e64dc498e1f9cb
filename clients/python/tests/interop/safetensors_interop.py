"""Safetensors interop between flowgate (Swift) and the reference implementation (PyPI `safetensors`).

Run by Tests/FlowgateModelFormatTests/PythonInteropTests.swift with $FLOWGATE_PYTHON; needs only numpy and
safetensors (not the flowgate client package). Not collected by pytest (no test_ prefix).

    safetensors_interop.py write DIR   write DIR/from_python.safetensors (seeded random arrays of odd
                                       shapes, float32 plus float64/float16/int32/int64, metadata) and
                                       DIR/from_python.json with the same values as repr floats
                                       (non-finite values as the strings "NaN", "Infinity", "-Infinity")
    safetensors_interop.py check DIR   load DIR/from_swift.safetensors and DIR/from_swift_plain.safetensors
                                       written by Swift, compare with DIR/expected.json exactly (values,
                                       dtypes, shapes, metadata), and check that the plain file is
                                       byte-identical to what safetensors itself writes for the same arrays

Exits 0 on success; on any mismatch prints what differs to stderr and exits 1.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save, save_file

METADATA = {"format": "flowgate-interop", "note": "quotes \" and unicode \u00e9\u4e2d", "seed": "1234"}


def fail(message: str) -> None:
    print(f"safetensors_interop: {message}", file=sys.stderr)
    sys.exit(1)


def to_json_value(x: float):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float(x)


def write(directory: Path) -> None:
    rng = np.random.default_rng(1234)
    special = np.array(
        [0.0, -0.0, 1.0e-45, -1.17549435e-38, 3.4028235e38, np.inf, -np.inf, np.nan, 1.0 / 3.0],
        dtype=np.float32,
    )
    arrays = {
        "policy.0.weight": rng.standard_normal((7, 3)).astype(np.float32),
        "policy.0.bias": rng.standard_normal((7,)).astype(np.float32),
        "odd/shape:3d": (rng.standard_normal((2, 3, 5)) * 1e-3).astype(np.float32),
        "scalar": np.array(rng.standard_normal(), dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "special": special,
        "double": rng.standard_normal((4, 1, 3)) * 1e6,  # float64: Swift rounds to Float
        "half": rng.standard_normal((5,)).astype(np.float16),
        "int32": rng.integers(-(2**20), 2**20, size=(3, 2), dtype=np.int32),
        "int64": rng.integers(-(2**40), 2**40, size=(2,), dtype=np.int64),
    }
    save_file(arrays, str(directory / "from_python.safetensors"), metadata=METADATA)
    reference = {
        "metadata": METADATA,
        "tensors": {
            name: {
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "values": [to_json_value(v) for v in array.astype(np.float64).ravel().tolist()],
            }
            for name, array in arrays.items()
        },
    }
    (directory / "from_python.json").write_text(json.dumps(reference, indent=1), encoding="utf-8")


def check(directory: Path) -> None:
    # parse_int=float keeps the sign of "-0" (Swift's JSONEncoder writes -0.0 that way).
    expected = json.loads((directory / "expected.json").read_text(encoding="utf-8"), parse_int=float)
    want = {
        name: np.array(entry["values"], dtype=np.float64).astype(np.float32).reshape([int(n) for n in entry["shape"]])
        for name, entry in expected["tensors"].items()
    }
    path = directory / "from_swift.safetensors"
    got = load_file(str(path))
    if sorted(got) != sorted(want):
        fail(f"{path}: tensor names {sorted(got)} != expected {sorted(want)}")
    for name, array in want.items():
        if got[name].dtype != np.float32:
            fail(f"{path}: tensor {name!r} has dtype {got[name].dtype}, expected float32")
        if got[name].shape != array.shape:
            fail(f"{path}: tensor {name!r} has shape {got[name].shape}, expected {array.shape}")
        if got[name].tobytes() != array.tobytes():
            fail(f"{path}: tensor {name!r} values differ: {got[name]!r} != {array!r}")
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
        if metadata != expected["metadata"]:
            fail(f"{path}: metadata {metadata!r} != expected {expected['metadata']!r}")
        for name in want:
            if handle.get_tensor(name).tobytes() != want[name].tobytes():
                fail(f"{path}: safe_open tensor {name!r} differs")

    plain = directory / "from_swift_plain.safetensors"
    reference = save(want)
    if plain.read_bytes() != reference:
        fail(f"{plain}: bytes differ from safetensors.numpy.save of the same arrays")
    print(f"ok: {len(want)} tensors and metadata match; plain file is byte-identical to the reference")


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        fail("usage: safetensors_interop.py write|check DIR")
    directory = Path(sys.argv[2])
    if sys.argv[1] == "write":
        write(directory)
    else:
        check(directory)


if __name__ == "__main__":
    main()
