"""Command line: ``python -m flowgate_client.cli act|info|health|stats|monitor --endpoint ...``.

    python -m flowgate_client.cli info
    python -m flowgate_client.cli wait --wait-s 900                    # until the server is ready
    python -m flowgate_client.cli act --obs "[0.1, 0.2, ...]"          # or --obs-file obs.npy, --random-obs
    python -m flowgate_client.cli monitor --telemetry tcp://127.0.0.1:5556 --only-unreliable
    python -m flowgate_client.cli info --server-key keys/server.pub --client-key keys/robot1.secret   # CURVE
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .client import DEFAULT_ENDPOINT, DEFAULT_TELEMETRY, Client, FlowgateError, Monitor


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, bytes):
        return o.hex()
    raise TypeError(type(o).__name__)


def _dump(obj) -> None:
    print(json.dumps(obj, default=_jsonable, indent=2, sort_keys=True))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.cli", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["act", "info", "health", "stats", "monitor", "wait"],
                    help="wait: poll health until the server is ready (e.g. while it builds and starts)")
    ap.add_argument("--wait-s", type=float, default=900.0, help="wait: give up after this many seconds")
    ap.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    ap.add_argument("--telemetry", default=DEFAULT_TELEMETRY, help="PUB endpoint (monitor)")
    ap.add_argument("--timeout-ms", type=int, default=5000)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--socket", choices=["req", "dealer"], default="req")
    ap.add_argument("--encoding", choices=["ndarray", "plain"], default="ndarray")
    ap.add_argument("--model")
    ap.add_argument("--obs", help="JSON list (obs_dim) or list of lists (batch)")
    ap.add_argument("--obs-file", help=".npy file with obs_dim or B x obs_dim")
    ap.add_argument("--random-obs", type=int, metavar="B", help="B random observations (uses info's obs_dim)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--candidates", type=int)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--deadline-ms", type=int)
    ap.add_argument("--only-unreliable", action="store_true")
    ap.add_argument("--count", type=int, default=0, help="monitor: stop after N events (0: no limit)")
    ap.add_argument("--server-key", help="CURVE: the server's public key file (NAME.pub from flowgate keygen)")
    ap.add_argument("--client-key", help="CURVE: this client's keypair file (NAME.secret, mode 0600)")
    a = ap.parse_args(argv)
    if (a.server_key is None) != (a.client_key is None):
        ap.error("CURVE needs both --server-key and --client-key")
    keys = {"server_key": a.server_key, "client_key": a.client_key}
    try:
        from .curve import credentials
        credentials(**keys)  # fail early, with the file named, on a bad key file
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if a.command == "monitor":
        n = 0
        with Monitor(a.telemetry, only_unreliable=a.only_unreliable, model=a.model, timeout_ms=None, **keys) as m:
            for ev in m:
                print(json.dumps({"topic": ev.topic, **ev.raw}, default=_jsonable), flush=True)
                n += 1
                if a.count and n >= a.count:
                    break
        return 0

    try:
        with Client(a.endpoint, timeout_ms=a.timeout_ms, retries=a.retries, model=a.model,
                    socket_type=a.socket, encoding=a.encoding, **keys) as c:
            if a.command == "wait":
                _dump(c.wait_ready(timeout_s=a.wait_s))
                return 0
            if a.command in ("info", "health", "stats"):
                _dump(getattr(c, a.command)())
                return 0
            if a.obs is not None:
                obs = np.asarray(json.loads(a.obs), dtype=np.float64)
            elif a.obs_file:
                obs = np.load(a.obs_file)
            elif a.random_obs:
                info = c.info()
                models = info.get("models", [])
                m = next((x for x in models if x.get("name") == a.model), models[0] if models else None)
                if not m:
                    ap.error("server reports no models")
                obs = np.random.default_rng(a.seed or 0).standard_normal((a.random_obs, int(m["obs_dim"])))
            else:
                ap.error("act needs --obs, --obs-file or --random-obs")
            r = c.act(obs, steps=a.steps, candidates=a.candidates, samples=a.samples, check=not a.no_check,
                      seed=a.seed, deadline_ms=a.deadline_ms)
            out = {k: getattr(r, k) for k in ("id", "model", "version", "action", "confidence", "reliable",
                                               "energy", "q", "threshold", "timing")}
            _dump(out)
            return 0
    except FlowgateError as e:
        print(f"error: {e.code}: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
