"""Evaluate served models in real pybullet episodes: start ``flowgate serve`` on the given model
directories (a free loopback port), run the simulator runner for every model and every flow-step
count K, optionally sweep a disturbance, and write one JSON summary plus a markdown table.

    python -m flowgate_client.evaluate --bin .build/release/flowgate --env HopperBulletEnv \\
        --model models/hopper-medium --baseline runs/models/hopper-medium-bc-flow \\
        --steps 1,2,4,8 --episodes 10 --out models/hopper-medium/eval.json
    python -m flowgate_client.evaluate ... --sweep obs-noise:0,0.02,0.05,0.1 --sweep-steps 4

Every action comes from the server over the socket; nothing is evaluated in-process.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import simulate
from .client import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_name(directory: str) -> str:
    with open(Path(directory) / "manifest.json") as f:
        return json.load(f)["name"]


class Server:
    """``flowgate serve`` as a subprocess on a free loopback port; stopped with SIGTERM."""

    def __init__(self, binary: str, models: list[str], extra: list[str] | None = None):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        cmd = [binary, "serve", "--endpoint", self.endpoint, "--pub", self.pub, *(extra or []), *models]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        with Client(self.endpoint, timeout_ms=500, retries=0) as c:
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(f"flowgate serve exited with {self.proc.returncode}: {self.proc.stderr.read()}")
                try:
                    if c.health().get("ready"):
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("flowgate serve did not become ready within 60 s")
                time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def simulate_once(endpoint: str, model: str, env: str, episodes: int, seed: int, steps: int | None,
                  candidates: int | None, disturbance: str | None = None, scale: float = 0.0) -> dict:
    argv = ["--env", env, "--episodes", str(episodes), "--endpoint", endpoint, "--model", model,
            "--seed", str(seed), "--server-seed", str(seed * 1_000_003)]
    if steps is not None:
        argv += ["--steps", str(steps)]
    if candidates is not None:
        argv += ["--candidates", str(candidates)]
    if disturbance:
        argv += ["--disturbance", disturbance, "--disturbance-scale", str(scale)]
    return simulate.run(simulate.build_parser().parse_args(argv))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("FLOWGATE_BIN", ".build/release/flowgate"))
    ap.add_argument("--env", required=True)
    ap.add_argument("--model", required=True, help="model directory to evaluate")
    ap.add_argument("--baseline", action="append", default=[], help="baseline model directories (served alongside)")
    ap.add_argument("--steps", default="1,2,4,8", help="flow step counts K to evaluate the main model at")
    ap.add_argument("--candidates", type=int, help="candidates M (model default if unset)")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=100, help="env seeds differ from the dataset's (0…)")
    ap.add_argument("--sweep", help="disturbance sweep KIND:s1,s2,... (obs-noise or push)")
    ap.add_argument("--sweep-steps", type=int, help="K used for the sweep (model default if unset)")
    ap.add_argument("--sweep-episodes", type=int, help="episodes per sweep point (default --episodes)")
    ap.add_argument("--out", required=True, help="summary JSON; per-run reports go beside it")
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reports_dir = out.with_suffix("")
    reports_dir.mkdir(parents=True, exist_ok=True)
    main_name = model_name(args.model)
    summary = {"env": args.env, "episodes": args.episodes, "seed": args.seed, "model": main_name, "runs": []}

    def record(label: str, rep: dict, **extra):
        path = reports_dir / f"{label}.json"
        path.write_text(json.dumps(rep, indent=2) + "\n")
        row = {"label": label, "return_mean": rep["return_mean"], "return_std": rep["return_std"],
               "score_mean": rep["normalized_score_mean"], "score_std": rep["normalized_score_std"],
               "unreliable_share": rep["unreliable_share"], "latency_ms": rep["latency_ms"],
               "server_compute_us": rep["server_compute_us"], "report": str(path), **extra}
        summary["runs"].append(row)
        out.write_text(json.dumps(summary, indent=2) + "\n")

    with Server(args.bin, [args.model, *args.baseline]) as server:
        with Client(server.endpoint) as c:
            summary["info"] = c.info()
        for k in [int(x) for x in args.steps.split(",") if x]:
            rep = simulate_once(server.endpoint, main_name, args.env, args.episodes, args.seed, k, args.candidates)
            record(f"{main_name}-K{k}", rep, model=main_name, steps=k)
        for b in args.baseline:
            name = model_name(b)
            rep = simulate_once(server.endpoint, name, args.env, args.episodes, args.seed, None, None)
            record(f"{name}", rep, model=name, steps=None)
        if args.sweep:
            kind, scales = args.sweep.split(":")
            for s in [float(x) for x in scales.split(",")]:
                rep = simulate_once(server.endpoint, main_name, args.env, args.sweep_episodes or args.episodes, args.seed,
                                    args.sweep_steps, args.candidates, kind if s > 0 else None, s)
                rep["disturbance"] = kind
                rep["disturbance_scale"] = s
                record(f"{main_name}-{kind}-{s:g}", rep, model=main_name, steps=args.sweep_steps, disturbance=kind, scale=s)
        summary["server_exit_code"] = server.stop()
    out.write_text(json.dumps(summary, indent=2) + "\n")

    print("\n| run | return | normalised score | unreliable | latency p50 / p99 (ms) |")
    print("|---|---|---|---|---|")
    for r in summary["runs"]:
        lat = r["latency_ms"]
        print(f"| {r['label']} | {r['return_mean']:.0f} ± {r['return_std']:.0f} | {r['score_mean']:.1f} ± {r['score_std']:.1f} "
              f"| {100 * r['unreliable_share']:.1f} % | {lat['p50']:.2f} / {lat['p99']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
