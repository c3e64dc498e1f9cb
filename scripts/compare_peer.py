#!/usr/bin/env python3
"""flowgate against the PyTorch reference peer, side by side, with flowgate's own load tester.

    .venv/bin/python scripts/compare_peer.py            # 3 rounds, 1 and 64 clients, check on and off

Starts `flowgate serve` and the reference peer (once per --peer-threads value) on the same model,
then, round by round, drives each in turn with `flowgate bench serve --endpoint E` (closed-loop
REQ clients, single-observation act requests) for every check setting, so that load from other
processes hits all of them alike. Prints the median over rounds of req/s, p50 and p99 per cell,
and the ratio flowgate / best peer. Needs a release build (.build/release/flowgate) and torch
(clients/python/requirements-peer.txt).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
from flowgate_client import Client  # noqa: E402


def free_endpoint():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def start(cmd, endpoint, log):
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    with Client(endpoint, timeout_ms=1000, retries=0) as c:
        c.wait_ready(timeout_s=120)
    return proc


def table(runs, targets):
    """Prints the medians over rounds as a Markdown table; returns them."""
    med = {}
    for x in runs:
        med.setdefault((x["check"], x["clients"], x["steps"], x["target"]), []).append(x)
    peers = [t for t in targets if t != "flowgate"]
    head = ["check", "clients", "K"] + [f"{t} req/s" for t in targets] + ["flowgate / best peer"] \
        + [f"{t} p50 ms" for t in targets] + [f"{t} p99 ms" for t in targets] + [f"{t} batch" for t in targets]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    summary, nan = [], float("nan")
    for check in (True, False):
        for n in sorted({x["clients"] for x in runs}):
            for k in sorted({x["steps"] for x in runs}):
                m = {t: {f: statistics.median(x[f] for x in med[(check, n, k, t)]) if (check, n, k, t) in med else nan
                         for f in ("rps", "p50_ms", "p99_ms", "batch")} for t in targets}
                best = max((m[t]["rps"] for t in peers if m[t]["rps"] == m[t]["rps"]), default=nan)
                cells = ["on" if check else "off", n, k] + [f"{m[t]['rps']:.0f}" for t in targets] \
                    + [f"**{m['flowgate']['rps'] / best:.2f}**"] + [f"{m[t]['p50_ms']:.1f}" for t in targets] \
                    + [f"{m[t]['p99_ms']:.1f}" for t in targets] + [f"{m[t]['batch']:.1f}" for t in targets]
                print("| " + " | ".join(str(c) for c in cells) + " |")
                summary.append({"check": check, "clients": n, "steps": k, "median": m})
    return summary


def batch_cost(targets, repeats):
    """Server-side compute time (reply `timing.compute_us`) of one request of 1 and of 64
    observations, check on and off, targets taken in turn (order reversed every other repeat);
    prints the medians. Separates the cost of a batch from how each server forms batches."""
    import numpy as np
    obs, res = np.random.default_rng(0).standard_normal((64, 15)), {}
    for rep in range(repeats):
        for name in (list(targets) if rep % 2 == 0 else list(reversed(targets))):
            with Client(targets[name], timeout_ms=60_000, retries=0) as c:
                for b in (1, 64):
                    for check in (True, False):
                        r = c.act(obs[:b] if b > 1 else obs[0], check=check, seed=rep)
                        res.setdefault((b, check, name), []).append(r.timing["compute_us"] / 1000)
    print(f"\ncompute ms per request (median of {repeats}; load {os.getloadavg()[0]:.1f})")
    for b in (1, 64):
        for check in (True, False):
            print(f"batch {b:2d} check {'on ' if check else 'off'}: "
                  + ", ".join(f"{n} {statistics.median(res[(b, check, n)]):.1f}" for n in targets))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "hopper-medium"))
    ap.add_argument("--flowgate", default=str(ROOT / ".build" / "release" / "flowgate"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,64")
    ap.add_argument("--steps", default="4", help="flow steps K (comma-separated)")
    ap.add_argument("--requests", type=int, default=400, help="timed requests per cell")
    ap.add_argument("--duration", type=float, default=8, help="most seconds per cell")
    ap.add_argument("--peer-threads", default="1,2")
    ap.add_argument("--peer-rng", default="torch", choices=["torch", "flowgate"],
                    help="torch: torch's generator (what a PyTorch user writes); flowgate: replay flowgate's draws")
    ap.add_argument("--json", help="write every run and the medians here")
    ap.add_argument("--from-json", help="only print the table of a run saved with --json")
    ap.add_argument("--batch-cost", type=int, metavar="REPEATS",
                    help="instead of the load test: compute time of one 1- and one 64-observation request, REPEATS times")
    a = ap.parse_args()
    if a.from_json:
        saved = json.load(open(a.from_json))
        table(saved["runs"], list(dict.fromkeys(x["target"] for x in saved["runs"])))
        return

    logs = tempfile.mkdtemp(prefix="compare-peer-")
    targets, procs = {}, []
    try:
        ep = free_endpoint()
        procs.append(start([a.flowgate, "serve", "--endpoint", ep, "--log-level", "warning", a.model], ep,
                           open(os.path.join(logs, "flowgate.log"), "wb")))
        targets["flowgate"] = ep
        for t in [int(x) for x in a.peer_threads.split(",")]:
            ep = free_endpoint()
            cmd = [sys.executable, "-m", "flowgate_client.reference_peer", "--model", a.model, "--bind", ep,
                   "--threads", str(t), "--rng", a.peer_rng]
            # libgomp's default (active) wait spins between parallel regions; with more runnable
            # threads than cores (a shared machine, or the load tester beside it) torch's 2 threads
            # then ran 10-30x slower than 1 thread here. PASSIVE makes idle threads sleep.
            env = dict(os.environ, PYTHONPATH=str(ROOT / "clients" / "python"),
                       OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
            proc = subprocess.Popen(cmd, stdout=open(os.path.join(logs, f"peer{t}.log"), "wb"), stderr=subprocess.STDOUT, env=env)
            procs.append(proc)
            with Client(ep, timeout_ms=1000, retries=0) as c:
                c.wait_ready(timeout_s=120)
            targets[f"peer-t{t}"] = ep
        print(f"load average at start: {os.getloadavg()[0]:.2f} (logs in {logs})", flush=True)
        if a.batch_cost:
            batch_cost(targets, a.batch_cost)
            return
        runs, failures = [], []
        for r in range(a.rounds):
            for check in (True, False):
                names = list(targets) if r % 2 == 0 else list(reversed(targets))  # alternate the order
                for name in names:
                    out = os.path.join(logs, f"r{r}-{name}-{check}.json")
                    cmd = [a.flowgate, "bench", "serve", "--endpoint", targets[name], "--concurrency", a.concurrency,
                           "--steps", a.steps, "--requests", str(a.requests), "--duration", str(a.duration),
                           "--json", out] + ([] if check else ["--no-check"])
                    load = os.getloadavg()[0]
                    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                    if done.returncode != 0:  # e.g. the warm-up timed out (10 s): record it, go on
                        why = (done.stderr.strip().splitlines() or ["?"])[-1]
                        print(f"round {r + 1} check {'on' if check else 'off'} {name}: FAILED: {why}", flush=True)
                        failures.append({"round": r, "target": name, "check": check, "error": why})
                        continue
                    for row in json.load(open(out))["results"]:
                        runs.append({"round": r, "target": name, "check": check, "load1": load, "clients": row["concurrency"],
                                     "steps": row["steps"], "rps": row["throughput_rps"], "errors": row["errors"],
                                     "p50_ms": row["latency_ms"]["p50"], "p99_ms": row["latency_ms"]["p99"],
                                     "batch": row["mean_batch"]})
                    mine = [x for x in runs if (x["round"], x["target"], x["check"]) == (r, name, check)]
                    print(f"round {r + 1}/{a.rounds} check {'on' if check else 'off'} {name} (load {load:.1f}): "
                          + ", ".join(f"{x['clients']} clients {x['rps']:.0f} req/s" for x in mine), flush=True)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    summary = table(runs, list(targets))
    for f in failures:
        print(f"failed: round {f['round'] + 1} {f['target']} check {f['check']}: {f['error']}")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}; rounds {a.rounds}, medians; peer rng {a.peer_rng}")
    if a.json:
        json.dump({"runs": runs, "failures": failures, "medians": summary, "args": vars(a)}, open(a.json, "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
