#!/usr/bin/env python3
"""Soak test of a running flowgate server (docs/operations.md, "Soak").

N clients (DEALER sockets, one thread each) send act requests at a fixed rate each for the given
time, each with a unique id, and check every reply: a reply whose id the client did not send, or
sent to another client, is misrouted; a request unanswered after --timeout-ms is lost. The
server's RSS is sampled every --rss-every seconds from /proc/PID/status. Prints one JSON summary.

    .venv/bin/python scripts/soak.py tcp://127.0.0.1:5555 --pid $(pgrep -f 'flowgate serve') \
        --clients 100 --rate 2 --minutes 30 --json soak.json
"""
import argparse
import json
import threading
import time

import msgpack
import numpy as np
import zmq


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("endpoint")
    ap.add_argument("--pid", type=int, required=True, help="server process, for RSS")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rate", type=float, default=2.0, help="requests per second per client")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--timeout-ms", type=int, default=30_000)
    ap.add_argument("--rss-every", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--json")
    args = ap.parse_args()

    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.connect(args.endpoint)
    req.send(msgpack.packb({"op": "info"}))
    info = msgpack.unpackb(req.recv(), raw=False)
    req.close()
    model = next(m for m in info["models"] if m["name"] == info["default_model"])
    obs_dim = model["obs_dim"]
    end = time.monotonic() + args.minutes * 60
    totals = {"sent": 0, "ok": 0, "errors": {}, "lost": 0, "misrouted": 0}
    lock = threading.Lock()

    def client(k):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(args.endpoint)
        rng = np.random.default_rng(k)
        outstanding = {}
        sent = ok = lost = misrouted = 0
        errors = {}
        period = 1.0 / args.rate
        next_send = time.monotonic() + rng.uniform(0, period)
        n = 0
        while True:
            now = time.monotonic()
            if now >= end and not outstanding:
                break
            if now >= next_send and now < end:
                rid = f"c{k}-{n}"
                n += 1
                msg = {"id": rid, "obs": rng.standard_normal(obs_dim).astype(np.float32).tolist(), "seed": n}
                if args.steps:
                    msg["steps"] = args.steps
                s.send_multipart([b"", msgpack.packb(msg)])
                outstanding[rid] = now
                sent += 1
                next_send += period
            wait = max(0.0, min(next_send, end) - time.monotonic()) if now < end else 0.1
            if s.poll(int(wait * 1000) + 1):
                frames = s.recv_multipart()
                r = msgpack.unpackb(frames[-1], raw=False)
                rid = r.get("id")
                if rid not in outstanding:
                    misrouted += 1
                    continue
                del outstanding[rid]
                if r.get("ok"):
                    ok += 1
                else:
                    code = r["error"]["code"]
                    errors[code] = errors.get(code, 0) + 1
            cutoff = time.monotonic() - args.timeout_ms / 1000
            for rid, t in list(outstanding.items()):
                if t < cutoff:
                    del outstanding[rid]
                    lost += 1
        s.close()
        with lock:
            totals["sent"] += sent
            totals["ok"] += ok
            totals["lost"] += lost
            totals["misrouted"] += misrouted
            for c, v in errors.items():
                totals["errors"][c] = totals["errors"].get(c, 0) + v

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    rss = []
    while any(t.is_alive() for t in threads):
        rss.append((round(time.monotonic() - t0, 1), round(rss_mb(args.pid), 1)))
        time.sleep(args.rss_every)
    for t in threads:
        t.join()
    # RSS "flat": the second half of the run against its first sample after warm-up (10 %).
    warm = [m for t, m in rss if t >= 0.1 * args.minutes * 60] or [m for _, m in rss]
    summary = dict(totals, clients=args.clients, rate_per_client=args.rate, minutes=args.minutes,
                   rss_mb_first=rss[0][1] if rss else None, rss_mb_after_warmup=warm[0] if warm else None,
                   rss_mb_max=max(m for _, m in rss) if rss else None, rss_mb_last=rss[-1][1] if rss else None,
                   rss_growth_after_warmup_pct=round(100 * (max(warm) - warm[0]) / warm[0], 2) if warm else None,
                   rss_samples=rss)
    print(json.dumps({k: v for k, v in summary.items() if k != "rss_samples"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
