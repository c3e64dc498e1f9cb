#!/usr/bin/env python3
"""Hostile-client probe of a running flowgate server (docs/operations.md, "Hostile input").

Sends the bodies that used to crash or stall the server -- the 200 KB ragged request, 16 MiB bodies
of one-byte elements, maximal legal requests -- from N attacker threads, while a health client
measures round trips. Prints, per attack, the attacker's reply time and code and the health p50/p99.

    .venv/bin/python scripts/hostile_probe.py tcp://127.0.0.1:5555 --seconds 10
"""
import argparse
import json
import threading
import time

import msgpack
import numpy as np
import zmq


def bodies(obs_dim):
    n = 100_000
    yield "ragged_200KB", msgpack.packb({"id": "r", "obs": [[0] * n] + [None] * (n - 1)})
    big = 16 * 1024 * 1024 - 64
    yield "nil_array_16MiB", msgpack.packb({"id": "n", "obs": [None] * big})
    yield "nil_map_16MiB", b"\x82\xa2id\xa1m" + b"\xdf" + (big // 2).to_bytes(4, "big") + b"\xc0\xc0" * (big // 2)
    yield "empty_arrays_16MiB", msgpack.packb({"id": "e", "obs": [[]] * big})
    yield "advertised_maxima_64obs", msgpack.packb({"id": "x", "obs": np.zeros((64, obs_dim)).tolist(),
                                                    "steps": 64, "candidates": 256, "samples": 64})
    # The largest legal request at the model's defaults: a full batch of 64 observations.
    yield "legal_64obs_defaults", msgpack.packb({"id": "l", "obs": np.random.default_rng(0).standard_normal((64, obs_dim)).tolist()})


def rtt(sock, payload, timeout_ms):
    t = time.perf_counter()
    sock.send(payload)
    if not sock.poll(timeout_ms):
        return None, None
    reply = msgpack.unpackb(sock.recv(), raw=False)
    return (time.perf_counter() - t) * 1e3, reply


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("endpoint")
    ap.add_argument("--seconds", type=float, default=5.0, help="per attack")
    ap.add_argument("--attackers", type=int, default=1)
    ap.add_argument("--only", help="comma-separated attack names")
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args()
    ctx = zmq.Context()
    info = ctx.socket(zmq.REQ)
    info.connect(args.endpoint)
    _, reply = rtt(info, msgpack.packb({"op": "info"}), 10_000)
    model = next(m for m in reply["models"] if m["name"] == reply["default_model"])
    obs_dim = model["obs_dim"]
    results = []
    for name, payload in bodies(obs_dim):
        if args.only and name not in args.only.split(","):
            continue
        stop = threading.Event()
        attack = {"replies": 0, "max_ms": 0.0, "codes": set(), "lost": 0, "times": []}

        def attacker():
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(args.endpoint)
            while not stop.is_set():
                t = time.perf_counter()
                s.send_multipart([b"", payload])
                if not s.poll(30_000):
                    attack["lost"] += 1
                    break
                frames = s.recv_multipart()
                ms = (time.perf_counter() - t) * 1e3
                r = msgpack.unpackb(frames[-1], raw=False)
                attack["replies"] += 1
                attack["max_ms"] = max(attack["max_ms"], ms)
                attack["times"].append(ms)
                attack["codes"].add(r.get("error", {}).get("code", "ok") if isinstance(r, dict) else "?")
            s.close()

        threads = [threading.Thread(target=attacker) for _ in range(args.attackers)]
        for t in threads:
            t.start()
        health = ctx.socket(zmq.REQ)
        health.connect(args.endpoint)
        lat, lost = [], 0
        end = time.time() + args.seconds
        while time.time() < end:
            ms, _ = rtt(health, msgpack.packb({"op": "health"}), 10_000)
            if ms is None:
                lost += 1
                health.close(linger=0)
                health = ctx.socket(zmq.REQ)
                health.connect(args.endpoint)
            else:
                lat.append(ms)
            time.sleep(0.005)
        stop.set()
        for t in threads:
            t.join()
        health.close(linger=0)
        row = {"attack": name, "bytes": len(payload), "attacker_replies": attack["replies"],
               "attacker_p50_ms": round(float(np.median(attack["times"])), 2) if attack["times"] else None,
               "attacker_max_ms": round(attack["max_ms"], 2), "attackers": args.attackers, "codes": sorted(attack["codes"]),
               "attacker_lost": attack["lost"], "health_n": len(lat), "health_lost": lost,
               "health_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat else None,
               "health_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat else None}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
