#!/usr/bin/env python3
"""Latency of the same act request against several running servers, interleaved request by request.

One closed-loop client sends the same request (B observations, K and M at the model's defaults) to
each server in turn, round after round, so that a change of machine load hits every server alike:
on a shared machine the ratios between servers mean something even when absolute times do not.
Prints client p50/p99 and the server's own compute time (timing.compute_us) per server.

    python scripts/interleave_servers.py --batch 8 --requests 200 \
        before=tcp://127.0.0.1:5741 after=tcp://127.0.0.1:5742
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))
from flowgate_client import Client  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("servers", nargs="+", help="NAME=ENDPOINT, e.g. after=tcp://127.0.0.1:5742")
    p.add_argument("--batch", type=int, default=1, help="observations per request (default 1)")
    p.add_argument("--requests", type=int, default=200, help="timed requests per server (default 200)")
    p.add_argument("--no-check", action="store_true", help="send check: false")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    a = p.parse_args()
    servers = []
    for s in a.servers:
        name, sep, endpoint = s.partition("=")
        if not sep or not name or not endpoint:
            p.error(f"server '{s}' is not NAME=ENDPOINT")
        servers.append((name, Client(endpoint, timeout_ms=60000, retries=0)))
    if a.batch < 1 or a.requests < 1:
        p.error("--batch and --requests must be >= 1")
    obs_dim = servers[0][1].info()["models"][0]["obs_dim"]
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(a.batch, obs_dim) if a.batch > 1 else obs_dim).astype(np.float32)
    latency = {n: [] for n, _ in servers}
    compute = {n: [] for n, _ in servers}
    for i in range(a.warmup + a.requests):
        for name, client in servers:
            t = time.perf_counter()
            r = client.act(obs, check=not a.no_check, seed=i)
            dt = (time.perf_counter() - t) * 1e3
            if i >= a.warmup:
                latency[name].append(dt)
                compute[name].append(r.timing.get("compute_us", 0) / 1e3)
    for name, _ in servers:
        lat = np.array(latency[name])
        print(f"{name}: batch {a.batch}, check {'off' if a.no_check else 'on'}, {a.requests} requests: "
              f"p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms, "
              f"server compute p50 {np.median(compute[name]):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
