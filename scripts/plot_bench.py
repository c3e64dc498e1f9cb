#!/usr/bin/env python3
"""Plots and a markdown table from `flowgate bench serve --json` reports (schema 2, docs/benchmarks.md).

    .venv/bin/python scripts/plot_bench.py serve.json [more.json ...] --out-dir docs/img --prefix bench
    .venv/bin/python scripts/plot_bench.py serve.json --table          # markdown table on stdout

Writes PREFIX-latency-throughput.png (p50/p90/p99/p99.9 latency against achieved throughput, one
panel per setting of mode, K, M, N, check and window, points labelled with the offered load: clients
or arrivals per second) and,
when a report sweeps K, PREFIX-latency-k.png (p50 and p99 against K, one colour per load). Rows of
several reports are pooled, so closed- and open-loop runs of one model share a figure.
"""
import argparse
import json
import os
import sys
from collections import defaultdict

PERCENTILES = [("p50", "o", "-"), ("p90", "^", "-."), ("p99", "s", "--"), ("p99_9", "D", ":")]


def load(paths):
    rows, reports = [], []
    for p in paths:
        try:
            rep = json.load(open(p))
        except (OSError, ValueError) as e:
            raise SystemExit(f"{p}: cannot read a JSON report: {e}")
        if rep.get("benchmark") != "serve" or not rep.get("results"):
            raise SystemExit(f"{p}: not a `flowgate bench serve --json` report with results")
        if rep.get("schema_version", 1) < 2:
            raise SystemExit(f"{p}: schema version {rep.get('schema_version', 1)}; re-run flowgate bench serve (schema 2 has p90/p99.9/max)")
        reports.append(rep)
        for r in rep["results"]:
            rows.append(dict(r, _model=rep.get("model", "?")))
    return reports, rows


def setting(r):
    """The request settings a line keeps fixed (everything but the load and, for the K plot, K)."""
    return (r["mode"], r["candidates"], r["samples"], r["check"], r.get("max_delay_us"))


def load_of(r):
    return r["target_rate_rps"] if r["mode"] == "open" else r["concurrency"]


def label(key, k=None):
    mode, m, n, check, window = key
    parts = [mode, f"M={m}", f"check on, N={n}" if check else "check off"]
    if k is not None:
        parts.insert(1, f"K={k}")
    if window is not None:
        parts.append(f"window {window} µs")
    return ", ".join(parts)


def plot_latency_throughput(rows, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = defaultdict(list)
    for r in rows:
        groups[setting(r) + (r["steps"],)].append(r)
    keys = sorted(groups, key=str)
    cols = min(len(keys), 3)
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), sharey=True, squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        rs = sorted(groups[key], key=load_of)
        xs = [r["throughput_rps"] for r in rs]
        for i, (name, marker, ls) in enumerate(PERCENTILES):
            ax.plot(xs, [r["latency_ms"][name] for r in rs], marker=marker, ls=ls, color=f"C{i}",
                    label=name.replace("_", "."))
        unit = "/s" if key[0] == "open" else ""
        for r in rs:  # the offered load (clients, or arrivals per second) beside the p50 point
            ax.annotate(f"{load_of(r):g}{unit}", (r["throughput_rps"], r["latency_ms"]["p50"]), fontsize=7,
                        textcoords="offset points", xytext=(3, -9))
        ax.set_yscale("log")
        ax.set_title(label(key[:5], key[5]), fontsize=8)
        ax.set_xlabel("achieved throughput (act replies/s)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("latency (ms, log)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_latency_k(rows, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = defaultdict(list)
    for r in rows:
        groups[setting(r) + (load_of(r),)].append(r)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (key, rs) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        rs.sort(key=lambda r: r["steps"])
        ks = [r["steps"] for r in rs]
        unit = "req/s" if key[0] == "open" else "clients"
        name = f"{label(key[:5])}, {int(key[5])} {unit}"
        ax.plot(ks, [r["latency_ms"]["p50"] for r in rs], marker="o", color=f"C{i % 10}", label=f"p50 {name}")
        ax.plot(ks, [r["latency_ms"]["p99"] for r in rs], marker="s", ls="--", color=f"C{i % 10}", label=f"p99 {name}")
    ks = sorted({r["steps"] for r in rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("flow steps K")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def table(rows):
    head = ["mode", "load", "K", "M", "N", "check", "window µs", "ok", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms",
            "p99.9 ms", "max ms", "batch", "MFLOP/obs", "GFLOP/s", "% of bound"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        l = r["latency_ms"]
        err = ", ".join(f"{k} {v}" for k, v in sorted(r["errors_by_code"].items())) or "0"
        frac = r.get("fraction_of_bound")
        out.append("| " + " | ".join([
            r["mode"], f"{load_of(r):g}" + ("/s" if r["mode"] == "open" else ""), str(r["steps"]), str(r["candidates"]),
            str(r["samples"]), "on" if r["check"] else "off", "-" if r.get("max_delay_us") is None else str(r["max_delay_us"]),
            str(r["requests"]), err, f"{r['throughput_rps']:.0f}", f"{l['p50']:.2f}", f"{l['p90']:.2f}", f"{l['p99']:.2f}",
            f"{l['p99_9']:.2f}", f"{l['max']:.2f}", f"{r['mean_batch']:.1f}",
            "-" if r.get("mflop_per_observation") is None else f"{r['mflop_per_observation']:.1f}",
            "-" if r.get("achieved_gflops") is None else f"{r['achieved_gflops']:.1f}",
            "-" if frac is None else f"{100 * frac:.1f}"]) + " |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="flowgate bench serve --json files")
    ap.add_argument("--out-dir", default="docs/img")
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--title", help="figure title (default: model and machine load)")
    ap.add_argument("--table", action="store_true", help="print a markdown table of every row instead of plotting")
    a = ap.parse_args(argv)
    reports, rows = load(a.reports)
    if a.table:
        print(table(rows))
        cb = [r["compute_bound"] for r in reports if r.get("compute_bound")]
        for c in cb:
            print(f"\npeak {c['peak_gflops_per_core']:.1f} GFLOP/s per core ({c['probe']}), bound {c['bound_gflops']:.0f} GFLOP/s on {c['cores']} cores")
        return 0
    loads = sorted({r["machine"].get("load_average1m") or 0 for r in reports})
    title = a.title or f"{reports[0].get('model', '?')} — load average {loads[0]:.1f}–{loads[-1]:.1f} at start"
    os.makedirs(a.out_dir, exist_ok=True)
    written = [plot_latency_throughput(rows, os.path.join(a.out_dir, f"{a.prefix}-latency-throughput.png"), title)]
    if len({r["steps"] for r in rows}) > 1:
        written.append(plot_latency_k(rows, os.path.join(a.out_dir, f"{a.prefix}-latency-k.png"), title))
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
