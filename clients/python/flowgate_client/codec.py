"""Protocol v1 body encoding: one msgpack map per message, arrays as ndarray maps or plain lists."""
from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

NDARRAY_KEY = "__ndarray__"
_DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}


def encode_ndarray(a, dtype: str = "<f4") -> dict:
    """``{"__ndarray__": True, "dtype", "shape", "data"}`` with little-endian C-order bytes."""
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r} (protocol v1: '<f4' or '<f8')")
    arr = np.ascontiguousarray(np.asarray(a, dtype=_DTYPES[dtype]))
    return {NDARRAY_KEY: True, "dtype": dtype, "shape": list(arr.shape), "data": arr.tobytes()}


def is_ndarray_map(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get(NDARRAY_KEY) is True


def decode_ndarray(obj: dict) -> np.ndarray:
    dtype = obj.get("dtype")
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported ndarray dtype {dtype!r}")
    shape = tuple(int(s) for s in obj["shape"])
    data = obj["data"]
    dt = _DTYPES[dtype]
    expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    if len(data) != expected:
        raise ValueError(f"ndarray data has {len(data)} bytes, shape {list(shape)} {dtype} needs {expected}")
    return np.frombuffer(data, dtype=dt).reshape(shape).copy()


def decode_arrays(obj: Any) -> Any:
    """Recursively turn ndarray maps into numpy arrays (everything else unchanged)."""
    if isinstance(obj, dict):
        if is_ndarray_map(obj):
            return decode_ndarray(obj)
        return {k: decode_arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_arrays(v) for v in obj]
    return obj


def pack(msg: dict) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
