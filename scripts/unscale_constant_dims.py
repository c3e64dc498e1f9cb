#!/usr/bin/env python3
"""Set the normaliser std of data-constant observation dimensions to 1 in a trained model's manifest.

Models trained before the normaliser stopped flooring constant dimensions at std 1e-3 scale any
sensor noise on those dimensions by 1000 (Hopper has four such dimensions: zero std in every
dataset here). On the data those dimensions equal their mean exactly, so their normalised input is
0 with either std, and the change leaves every network input on the training data bit-identical.
Off the data, noise there is no longer amplified. The script checks that constancy on the dataset
before changing anything and writes the manifest atomically.

    scripts/unscale_constant_dims.py models/hopper-medium data/hopper-medium.npz
"""
import json
import os
import sys
import tempfile

import numpy as np


def main(model_dir: str, dataset: str) -> int:
    path = os.path.join(model_dir, "manifest.json")
    manifest = json.load(open(path))
    obs = np.load(dataset)["observations"]
    std = manifest["normalization"]["observationStd"]
    mean = manifest["normalization"]["observationMean"]
    changed = []
    for k, s in enumerate(std):
        if s < 1e-3 * 1.0001:
            col = obs[:, k]
            if np.ptp(col) != 0 or np.float32(col[0]) != np.float32(mean[k]):
                raise SystemExit(f"dimension {k}: std {s} but not constant at the mean in {dataset}; not changing it")
            std[k] = 1.0
            changed.append(k)
    if not changed:
        print(f"{path}: no floored dimensions")
        return 0
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".manifest.json.tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    print(f"{path}: std set to 1 for constant dimensions {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
