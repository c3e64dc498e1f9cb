"""Reading/writing D4RL-style datasets and reference returns."""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

REFERENCES_PATH = Path(__file__).with_name("references.json")

# Keys every transition dataset carries (D4RL names).
TRANSITION_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


def load_references(path: str | os.PathLike | None = None) -> dict:
    p = Path(path) if path else REFERENCES_PATH
    if not p.exists():
        return {}
    return json.loads(p.read_text()).get("envs", {})


def reference_returns(env_name: str, path=None) -> tuple[float, float]:
    """(random, expert) reference returns for ``env_name`` (NaN when not measured)."""
    ref = load_references(path).get(env_name)
    if not ref:
        return math.nan, math.nan
    return float(ref["random_return"]), float(ref["expert_return"])


def normalized_score(ret, env_name: str | None = None, random_return=None, expert_return=None):
    """D4RL normalised score: 100 * (return - random) / (expert - random)."""
    if random_return is None or expert_return is None:
        random_return, expert_return = reference_returns(env_name)
    return 100.0 * (np.asarray(ret, dtype=np.float64) - random_return) / (expert_return - random_return)


def save_npz(path, arrays: dict, compress: bool = False) -> None:
    """Like ``np.savez`` but byte-reproducible: fixed zip timestamps, sorted entry order kept as given.

    ``np.savez`` stamps every member with the current time, so two identical collections would
    differ on disk; here the same arrays always give the same bytes.
    """
    tmp = str(path) + ".tmp"
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(tmp, "w", compression=method, allowZip64=True) as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def save_hdf5(path, arrays: dict, metadata: dict) -> None:
    """D4RL-style HDF5: transition keys at the root, ``infos/…`` for extras, ``metadata/…`` attrs."""
    import h5py
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if key == "metadata":
                continue
            name = key if key in TRANSITION_KEYS else f"infos/{key}"
            value = np.asarray(value)
            if value.ndim == 0:
                f.create_dataset(name, data=value)
            else:
                f.create_dataset(name, data=value, compression="gzip")
        g = f.create_group("metadata")
        for k, v in metadata.items():
            g.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v


def load_dataset(path) -> tuple[dict, dict]:
    """Returns (arrays, metadata) for a dataset written by the collector (npz)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("metadata"))) if "metadata" in arrays else {}
    return arrays, meta
