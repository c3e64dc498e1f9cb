#!/usr/bin/env python3
"""Plot `flowgate eval --json` results of several runs side by side: one marker per run and K,
grouped by variant, with the mean score ± its standard error and the falls as a label.

    .venv/bin/python scripts/plot_eval_runs.py --out docs/img/anneal-hopper.png \
        --title "hopper-medium: refine --distil, 4 phase seeds" \
        "constant rate=docs/data/a.json,docs/data/b.json" "annealed=docs/data/c.json,docs/data/d.json"

Each positional argument is VARIANT=RUN[,RUN...], a RUN being FILE or FILE+FILE (one run's results
split over several evals); --steps picks the K values (default: all present in the files).
"""
import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def runs_by_k(path):
    with open(path) as f:
        report = json.load(f)
    out = {}
    for run in report["runs"]:
        # The model's own runs per K; baseline rows (steps None) and disturbance sweeps are skipped.
        if run.get("steps") is None or run.get("disturbance") or run.get("model") != report["model"]:
            continue
        out[run["steps"]] = (run["score_mean"], run["score_std"] / math.sqrt(run["episodes"]), run["falls"])
    return out


def merged(paths):
    """One run's results from several files (e.g. K = 1, 8 in one eval and K = 2 in another)."""
    out = {}
    for p in paths:
        out.update(runs_by_k(p))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="VARIANT=RUN[,RUN...], RUN = FILE or FILE+FILE")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="")
    ap.add_argument("--steps", default="", help="K values to plot, comma-separated (default: every K in the files)")
    args = ap.parse_args()
    variants = []
    for spec in args.variants:
        name, _, files = spec.partition("=")
        if not files:
            ap.error(f"{spec!r} is not VARIANT=FILE[,FILE...]")
        variants.append((name, [merged(p.split("+")) for p in files.split(",")]))
    ks = sorted({k for _, runs in variants for r in runs for k in r})
    if args.steps:
        ks = [int(k) for k in args.steps.split(",")]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(ks) * len(variants), 4.2))
    width = 0.8 / len(variants)
    for vi, (name, runs) in enumerate(variants):
        for ki, k in enumerate(ks):
            base = ki + (vi - (len(variants) - 1) / 2) * width
            cells = [r[k] for r in runs if k in r]
            for ri, (mean, se, falls) in enumerate(cells):
                x = base + (ri - (len(cells) - 1) / 2) * width / (len(cells) + 1)
                ax.errorbar(x, mean, yerr=se, fmt="o", color=f"C{vi}", label=name if ki == 0 and ri == 0 else None)
                ax.annotate(str(falls), (x, mean - se), textcoords="offset points", xytext=(0, -10), ha="center", fontsize=7)
    ax.set_xticks(range(len(ks)), [f"K = {k}" for k in ks])
    ax.set_ylabel("normalised score (mean ± s.e.; label: falls)")
    ax.set_title(args.title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
