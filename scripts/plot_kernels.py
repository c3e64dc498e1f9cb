#!/usr/bin/env python3
"""Plot of a `flowgate bench kernels --json` report: GFLOP/s of OpenBLAS, BLIS and libxsmm per product
shape, and the layer step's time before and after the kernels (docs/benchmarks.md).

    .venv/bin/python scripts/plot_kernels.py docs/data/bench-kernels-2026-12-01.json --out docs/img/bench-kernels.png
"""
import argparse
import json
import sys
from pathlib import Path


def gflops(shape, microseconds):
    s = shape["shape"]
    return 2 * s["rows"] * s["inner"] * s["outputs"] / (microseconds * 1e3) if microseconds else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report")
    ap.add_argument("--out", required=True, help="PNG to write")
    a = ap.parse_args(argv)
    report = json.loads(Path(a.report).read_text())
    shapes = report.get("shapes")
    if not shapes:
        ap.error(f"{a.report}: no 'shapes' (not a flowgate bench kernels report)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{s['shape']['rows']}×{s['shape']['inner']}→{s['shape']['outputs']} {s['shape']['activation']}" for s in shapes]
    x = range(len(shapes))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 7.5), sharex=True)
    for offset, (key, name) in zip((-0.27, 0, 0.27), (("openblas_microseconds", "OpenBLAS"),
                                                      ("blis_microseconds", "BLIS"), ("xsmm_microseconds", "libxsmm"))):
        top.bar([i + offset for i in x], [gflops(s, s.get(key)) for s in shapes], width=0.27, label=name)
    top.set_ylabel("GFLOP/s (one core)")
    top.legend()
    top.set_title(f"{report.get('model', '')}: the products action selection issues (rows × inner → outputs)")
    speedup = [s["layer_before_microseconds"] / s["layer_after_microseconds"] for s in shapes]
    bottom.bar(list(x), speedup, color=["tab:green" if v >= 1 else "tab:red" for v in speedup])
    bottom.axhline(1, color="k", lw=0.8)
    bottom.set_ylabel("layer step speed-up\n(product + bias + activation)")
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
