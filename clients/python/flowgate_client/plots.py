"""Plots (matplotlib, Agg backend).

    python -m flowgate_client.plots training LOG.jsonl --out curve.png
        one panel per numeric field, one line per phase, over `step`
    python -m flowgate_client.plots latency REPORT.json... --out latency.png
        client-side latency percentiles (p50/p90/p99) per simulate report
    python -m flowgate_client.plots reliability REPORT.json... --out rel.png
        unreliable share (and normalised score) vs disturbance scale, one line per disturbance kind
    python -m flowgate_client.plots bench SERVE.json --out serve.png
        `flowgate bench serve --json` report: p50 (solid) and p99 (dashed) client latency vs flow
        steps K, one colour per concurrency level
"""
from __future__ import annotations

import argparse
import json
import math
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_SKIP = {"step", "phase", "time", "t", "epoch_time", "wall_s", "timestamp", "global_step"}


def read_jsonl(path) -> list[dict]:
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # tolerate a truncated last line of a log being written
            if isinstance(obj, dict):
                rows.append(obj)
    return rows


def last_attempts(rows: list[dict]) -> list[dict]:
    """Keep only each phase's last attempt: when a phase's step goes backwards (a run restarted
    with `flowgate train --resume --restart-from PHASE` appends to the same log), the earlier
    attempt's rows are dropped, so curves show the run that produced the model."""
    kept: list[dict] = []
    last_step: dict = {}
    for r in rows:
        phase, step = r.get("phase"), r.get("step")
        if isinstance(step, (int, float)) and phase in last_step and step <= last_step[phase]:
            kept = [k for k in kept if k.get("phase") != phase]
        if isinstance(step, (int, float)):
            last_step[phase] = step
        kept.append(r)
    return kept


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_training(log_path, out, title=None) -> str:
    rows = last_attempts(read_jsonl(log_path))
    series = defaultdict(lambda: defaultdict(list))  # field -> phase -> [(step, value)]
    for r in rows:
        if "step" not in r or not _is_num(r["step"]):
            continue
        phase = str(r.get("phase", "train"))
        for k, v in r.items():
            if k in _SKIP or not _is_num(v):
                continue
            series[k][phase].append((r["step"], v))
    fields = sorted(series)
    all_phases = {ph for k in series for ph in series[k]}
    if not fields:
        raise SystemExit(f"{log_path}: no rows with a numeric `step` and numeric fields")
    n = len(fields)
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.2 * nrows), squeeze=False)
    for ax, k in zip(axes.flat, fields):
        for phase, pts in sorted(series[k].items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=phase, lw=1.2,
                    marker="o" if len(pts) < 30 else None, ms=3)
        ax.set_title(k)
        ax.set_xlabel("step")
        vals = [p[1] for ph in series[k].values() for p in ph]
        if "loss" in k and vals and min(vals) > 0 and max(vals) / max(min(vals), 1e-12) > 100:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if len(all_phases) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title or os.path.basename(str(log_path)))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def _load_reports(paths) -> list[tuple[str, dict]]:
    return [(os.path.splitext(os.path.basename(str(p)))[0], json.load(open(p))) for p in paths]


def plot_latency(paths, out) -> str:
    reps = _load_reports(paths)
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(reps) + 2), 4))
    width = 0.25
    for j, q in enumerate(("p50", "p90", "p99")):
        vals = [(r.get("latency_ms") or {}).get(q) or 0.0 for _, r in reps]
        xs = [i + (j - 1) * width for i in range(len(reps))]
        ax.bar(xs, vals, width, label=q)
    ax.set_xticks(range(len(reps)))
    ax.set_xticklabels([n for n, _ in reps], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("client-side latency per act (ms)")
    ax.set_title("act latency")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def plot_reliability(paths, out) -> str:
    reps = _load_reports(paths)
    groups = defaultdict(list)
    for _, r in reps:
        kind = r.get("disturbance") or "none"
        groups[kind].append(r)
    # undisturbed runs are the scale-0 point of every disturbance curve
    base = groups.pop("none", [])
    if not groups:
        groups["none"] = base
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, rs in sorted(groups.items()):
        rs = rs + [b for b in base if b not in rs]
        rs.sort(key=lambda r: r.get("disturbance_scale") or 0.0)
        xs = [r.get("disturbance_scale") or 0.0 for r in rs]
        ax1.plot(xs, [100.0 * r.get("unreliable_share", 0.0) for r in rs], marker="o", label=kind)
        ax2.plot(xs, [r.get("normalized_score_mean") if r.get("normalized_score_mean") is not None else float("nan")
                      for r in rs], marker="o", label=kind)
    ax1.set_xlabel("disturbance scale")
    ax1.set_ylabel("steps flagged unreliable (%)")
    ax1.set_title("unreliable share")
    ax2.set_xlabel("disturbance scale")
    ax2.set_ylabel("normalised score")
    ax2.set_title("return")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out)


def plot_bench(path, out, title=None) -> str:
    rep = json.load(open(path))
    rows = rep.get("results") or []
    if rep.get("benchmark") != "serve" or not rows:
        raise SystemExit(f"{path}: not a `flowgate bench serve --json` report with results")
    by_conc = defaultdict(list)
    for r in rows:
        by_conc[r["concurrency"]].append(r)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (conc, rs) in enumerate(sorted(by_conc.items())):
        rs.sort(key=lambda r: r["steps"])
        ks = [r["steps"] for r in rs]
        colour = f"C{i}"
        ax.plot(ks, [r["latency_ms"]["p50"] for r in rs], marker="o", color=colour, label=f"{conc} clients p50")
        ax.plot(ks, [r["latency_ms"]["p99"] for r in rs], marker="s", ls="--", color=colour, label=f"{conc} clients p99")
    ax.set_xscale("log", base=2)
    ks = sorted({r["steps"] for r in rows})
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("flow steps K")
    ax.set_ylabel("client latency per act (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(title or f"act latency, {rep.get('model', '?')}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return str(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.plots", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["training", "latency", "reliability", "bench"])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title")
    a = ap.parse_args(argv)
    if a.kind == "training":
        if len(a.inputs) != 1:
            ap.error("training takes one LOG.jsonl")
        print(plot_training(a.inputs[0], a.out, a.title))
    elif a.kind == "bench":
        if len(a.inputs) != 1:
            ap.error("bench takes one SERVE.json")
        print(plot_bench(a.inputs[0], a.out, a.title))
    elif a.kind == "latency":
        print(plot_latency(a.inputs, a.out))
    else:
        print(plot_reliability(a.inputs, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
