#!/usr/bin/env python3
"""Variants of `flowgate serve` side by side: throughput and latency at each load, rounds interleaved.

Starts one `flowgate serve` per variant on the same model, then, round by round (the order rotated
every round), drives each in turn with `flowgate bench serve --endpoint E` (closed-loop REQ clients,
one observation per request) at every --concurrency and check setting, so that load from other
processes hits every variant alike. Prints the medians over rounds of req/s, p50 and p99 per cell
and each variant's throughput relative to the first.

    .venv/bin/python scripts/ab_serve.py --rounds 3 --concurrency 1,2,8,64 \\
        default= 'openblas=FLOWGATE_KERNELS=openblas' 'unsplit=--split-batches false'

A variant is NAME=SPEC: SPEC's words of the form UPPER_CASE=VALUE are environment variables of that
server, the rest are `flowgate serve` flags. Needs a release build (.build/release/flowgate).
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT / "scripts"))
from compare_peer import free_endpoint  # noqa: E402
from flowgate_client import Client  # noqa: E402
from flowgate_client.evaluate import write_atomic  # noqa: E402


def parse_variant(text):
    """NAME=SPEC → (name, environment overrides, serve flags); raises ValueError naming the problem."""
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise ValueError(f"variant '{text}' is not NAME=SPEC")
    env, flags = {}, []
    for word in shlex.split(spec):
        key, eq, value = word.partition("=")
        if eq and key.isupper() and key.replace("_", "").isalnum():
            env[key] = value
        else:
            flags.append(word)
    return name, env, flags


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+", help="NAME=SPEC, e.g. 'openblas=FLOWGATE_KERNELS=openblas'")
    ap.add_argument("--model", default=str(ROOT / "models" / "hopper-medium"))
    ap.add_argument("--flowgate", default=str(ROOT / ".build" / "release" / "flowgate"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,64")
    ap.add_argument("--check-modes", default="on,off")
    ap.add_argument("--steps", default="4")
    ap.add_argument("--requests", type=int, default=600, help="timed requests per cell")
    ap.add_argument("--duration", type=float, default=5, help="most seconds per cell")
    ap.add_argument("--json", help="write every run and the medians here")
    ap.add_argument("--plot", help="PNG: req/s and p99 against clients, one line per variant, a panel per check setting")
    a = ap.parse_args()
    try:
        variants = [parse_variant(v) for v in a.variants]
    except ValueError as e:
        ap.error(str(e))
    if len({v[0] for v in variants}) != len(variants):
        ap.error("variant names must differ")
    if a.rounds < 1:
        ap.error("--rounds must be >= 1")

    procs, endpoints, runs = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name, env, flags in variants:
                endpoint = free_endpoint()
                log = open(Path(tmp) / f"{name}.log", "w")
                cmd = [a.flowgate, "serve", a.model, "--endpoint", endpoint, *flags]
                print(f"# {name}: {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(cmd)}", file=sys.stderr)
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}))
                start_wait(endpoint)
                endpoints[name] = endpoint
            for r in range(a.rounds):
                order = variants[r % len(variants):] + variants[:r % len(variants)]
                for name, _, _ in order:
                    out = Path(tmp) / f"{name}-{r}.json"
                    subprocess.run(
                        [a.flowgate, "bench", "serve", "--endpoint", endpoints[name], "--model", a.model,
                         "--concurrency", a.concurrency, "--check-modes", a.check_modes, "--steps", a.steps,
                         "--requests", str(a.requests), "--duration", str(a.duration), "--no-peak-probe",
                         "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
                    for x in json.loads(out.read_text())["results"]:
                        runs.append({"variant": name, "round": r, "check": x["check"], "clients": x["concurrency"],
                                     "steps": x["steps"], "rps": x["throughput_rps"], "p50_ms": x["latency_ms"]["p50"],
                                     "p99_ms": x["latency_ms"]["p99"], "batch": x["mean_batch"], "errors": x["errors"]})
                    print(f"round {r + 1}/{a.rounds}: {name} done", file=sys.stderr)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)

    names = [v[0] for v in variants]
    cells = sorted({(x["check"], x["clients"], x["steps"]) for x in runs}, key=lambda c: (not c[0], c[1], c[2]))
    medians = []
    head = ["check", "clients", "K"] + [f"{n} req/s" for n in names] + [f"{n} / {names[0]}" for n in names[1:]] \
        + [f"{n} p50 / p99 ms" for n in names]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for check, clients, steps in cells:
        m = {}
        for n in names:
            xs = [x for x in runs if (x["variant"], x["check"], x["clients"], x["steps"]) == (n, check, clients, steps)]
            m[n] = {f: statistics.median(x[f] for x in xs) for f in ("rps", "p50_ms", "p99_ms", "batch")}
            medians.append({"variant": n, "check": check, "clients": clients, "steps": steps, **m[n]})
        row = ["on" if check else "off", clients, steps] + [f"{m[n]['rps']:.0f}" for n in names] \
            + [f"{m[n]['rps'] / m[names[0]]['rps']:.2f}" for n in names[1:]] \
            + [f"{m[n]['p50_ms']:.2f} / {m[n]['p99_ms']:.2f}" for n in names]
        print("| " + " | ".join(str(c) for c in row) + " |")
    if a.json:
        write_atomic(Path(a.json), json.dumps({"variants": [{"name": n, "env": e, "flags": f} for n, e, f in variants],
                                            "runs": runs, "medians": medians}, indent=1))
    if a.plot:
        plot(medians, names, Path(a.plot))
    return 0


def plot(medians, names, out):
    """Throughput (top) and p99 (bottom) against clients, per variant and check setting."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    checks = sorted({m["check"] for m in medians}, reverse=True)
    fig, axes = plt.subplots(2, len(checks), figsize=(5.5 * len(checks), 7), squeeze=False)
    for col, check in enumerate(checks):
        for n in names:
            ms = sorted((m for m in medians if m["variant"] == n and m["check"] == check), key=lambda m: m["clients"])
            axes[0][col].plot([m["clients"] for m in ms], [m["rps"] for m in ms], "o-", label=n)
            axes[1][col].plot([m["clients"] for m in ms], [m["p99_ms"] for m in ms], "s--", label=n)
        axes[0][col].set_title(f"check {'on' if check else 'off'}")
        axes[0][col].set_ylabel("req/s (median of rounds)")
        axes[1][col].set_ylabel("p99 ms")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("closed-loop clients")
            ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(out)


def start_wait(endpoint):
    """Waits until the server at `endpoint` answers (the model load may take a while)."""
    with Client(endpoint, timeout_ms=1000, retries=0) as c:
        c.wait_ready(timeout_s=120)


if __name__ == "__main__":
    sys.exit(main())
