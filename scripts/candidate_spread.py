#!/usr/bin/env python3
"""How different are a model's M candidates at each K, and what does best-of-M selection gain?

Serves MODEL with the flowgate binary on a loopback port and, for STATES dataset states, asks for
16 single-candidate actions (seeds 1000..1015, check off) and one best-of-16 action at each K. It
prints per K: the mean per-dimension standard deviation of the 16 samples (in [-1, 1]-scaled action
units when the bounds are [-1, 1]), the critic's mean Q of a sample and of the best-of-16 choice,
and the mean absolute distance to the dataset action. This is the measurement behind
docs/training.md, "Why the score falls as K grows".

    python scripts/candidate_spread.py models/hopper-medium data/hopper-medium.npz [--states 200] [--steps 1,2,4,8]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "clients" / "python"))
from flowgate_client.client import Client  # noqa: E402
from flowgate_client.datasets import load_dataset  # noqa: E402
from flowgate_client.evaluate import Server, write_atomic  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("--states", type=int, default=200)
    ap.add_argument("--steps", default="1,2,4,8")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--bin", default=str(ROOT / ".build" / "release" / "flowgate"))
    ap.add_argument("--json", help="write the table as JSON here")
    a = ap.parse_args(argv)
    steps = [int(k) for k in a.steps.split(",")]
    data, _ = load_dataset(a.dataset)
    idx = np.random.default_rng(0).choice(len(data["observations"]), a.states, replace=False)
    obs, acts = data["observations"][idx], data["actions"][idx]
    rows = []
    with Server(a.bin, [a.model], ["--log-level", "error"]) as server, Client(server.endpoint, timeout_ms=30000) as client:
        for k in steps:
            singles = [client.act(obs, steps=k, candidates=1, check=False, seed=1000 + j) for j in range(a.candidates)]
            samples = np.stack([r.action for r in singles])
            q = np.stack([r.q for r in singles])
            best = client.act(obs, steps=k, candidates=a.candidates, check=False, seed=7)
            rows.append({
                "steps": k,
                "sample_std": float(samples.std(0).mean()),
                "q_sample": float(np.mean(q.astype(float))),
                "q_best": float(best.q.mean()),
                "q_gain": float(best.q.mean() - q.mean()),
                "abs_to_data": float(np.abs(samples.mean(0) - acts).mean()),
            })
    print(f"| K | sample std per dim | Q of a sample | Q of best of {a.candidates} | gain | mean abs to data action |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        q = (f"{r['q_sample']:.2f} | {r['q_best']:.2f} | {r['q_gain']:+.3f}" if np.isfinite(r["q_sample"])
             else "n/a | n/a | n/a")  # no critic (a BC flow): one candidate, no Q
        print(f"| {r['steps']} | {r['sample_std']:.3f} | {q} | {r['abs_to_data']:.3f} |")
    if a.json:
        write_atomic(Path(a.json), json.dumps({"model": a.model, "dataset": a.dataset, "states": a.states, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
