"""Evaluate served models in real pybullet episodes: start ``flowgate serve`` on the given model
directories (a free loopback port), run the simulator runner for every model and every flow-step
count K, optionally sweep a disturbance, and write one JSON summary plus a markdown table.

    python -m flowgate_client.evaluate --bin .build/release/flowgate --env HopperBulletEnv \\
        --model models/hopper-medium --baseline runs/models/hopper-medium-bc-flow \\
        --steps 1,2,4,8 --episodes 10 --out models/hopper-medium/eval.json
    python -m flowgate_client.evaluate ... --sweep obs-noise:0,0.02,0.05,0.1 --sweep-steps 4
    python -m flowgate_client.evaluate --endpoint tcp://127.0.0.1:5555 --env HopperBulletEnv \
        --model models/hopper-medium --dataset data/hopper-medium.npz --out eval.json

With --endpoint it drives a server that is already running (this is what `flowgate eval` does:
it serves the model in-process and runs this module) instead of starting --bin. The table has one
row per run: normalised score mean ± std, falls (episodes terminated before the time limit),
unreliable share, client latency p50 / p99, and the dataset's average score when --dataset is given.

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
from .envs import MAX_EPISODE_STEPS, canonical_env_name


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


def dataset_average(path: str) -> float | None:
    """The dataset's average normalised episode score, as the collector recorded it (None if absent)."""
    from .datasets import load_dataset
    _, meta = load_dataset(path)
    value = meta.get("normalized_score_mean")
    return None if value is None else float(value)


def simulate_once(endpoint: str, model: str, env: str, episodes: int, seed: int, steps: int | None,
                  candidates: int | None, disturbance: str | None = None, scale: float = 0.0,
                  max_episode_steps: int | None = None, timeout_ms: int = 10_000) -> dict:
    argv = ["--env", env, "--episodes", str(episodes), "--endpoint", endpoint, "--model", model,
            "--seed", str(seed), "--server-seed", str(seed * 1_000_003), "--timeout-ms", str(timeout_ms)]
    if max_episode_steps is not None:
        argv += ["--max-episode-steps", str(max_episode_steps)]
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
    ap.add_argument("--endpoint", help="use the server already running here instead of starting --bin "
                                       "(it must serve --model and every --baseline)")
    ap.add_argument("--dataset", help="the training dataset (npz): its average score goes into the summary")
    ap.add_argument("--max-episode-steps", type=int, help="episode cut (default 1000; shorter for smoke tests)")
    ap.add_argument("--timeout-ms", type=int, default=10_000,
                    help="per-act reply timeout; generous, since this scores the policy, not the latency")
    ap.add_argument("--env", required=True)
    ap.add_argument("--model", required=True, help="model directory to evaluate")
    ap.add_argument("--baseline", action="append", default=[], help="baseline model directories (served alongside)")
    ap.add_argument("--steps", default="1,2,4,8",
                    help="flow step counts K to evaluate the main model at; empty (--steps '') for none, e.g. a sweep only")
    ap.add_argument("--candidates", type=int, help="candidates M (model default if unset)")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=100, help="env seeds differ from the dataset's (0…)")
    ap.add_argument("--sweep", help="disturbance sweep KIND:s1,s2,... (obs-noise or push)")
    ap.add_argument("--sweep-steps", type=int, help="K used for the sweep (model default if unset)")
    ap.add_argument("--sweep-episodes", type=int, help="episodes per sweep point (default --episodes)")
    ap.add_argument("--out", required=True, help="summary JSON; per-run reports go beside it")
    args = ap.parse_args(argv)
    if args.episodes <= 0:
        ap.error("--episodes must be positive")
    try:
        env_name = canonical_env_name(args.env)
    except ValueError as e:
        ap.error(str(e))
    ks = []
    for x in args.steps.split(",") if args.steps.strip() else []:
        if not x.strip().isdigit() or int(x) <= 0:
            ap.error(f"--steps: {x!r} is not a positive integer (expected e.g. 1,2,4,8)")
        ks.append(int(x))
    if not ks and not args.sweep and not args.baseline:
        ap.error("--steps is empty and there is no --sweep or --baseline: nothing to evaluate")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reports_dir = out.with_suffix("")
    reports_dir.mkdir(parents=True, exist_ok=True)
    main_name = model_name(args.model)
    summary = {"env": env_name, "episodes": args.episodes, "seed": args.seed, "model": main_name,
               "max_episode_steps": args.max_episode_steps or MAX_EPISODE_STEPS,
               "dataset": args.dataset, "dataset_average": dataset_average(args.dataset) if args.dataset else None,
               "runs": []}

    def record(label: str, rep: dict, **extra):
        path = reports_dir / f"{label}.json"
        write_atomic(path, json.dumps(rep, indent=2) + "\n")
        row = {"label": label, "return_mean": rep["return_mean"], "return_std": rep["return_std"],
               "score_mean": rep["normalized_score_mean"], "score_std": rep["normalized_score_std"],
               "falls": rep["falls"], "episodes": rep["episodes"],
               "unreliable_share": rep["unreliable_share"], "latency_ms": rep["latency_ms"],
               "server_compute_us": rep["server_compute_us"], "report": str(path), **extra}
        summary["runs"].append(row)
        write_atomic(out, json.dumps(summary, indent=2) + "\n")

    def run_all(endpoint: str):
        with Client(endpoint, timeout_ms=args.timeout_ms) as c:
            summary["info"] = c.info()
            # One untimed act first: a server's first request can pay one-off set-up costs that
            # would otherwise land in the first run's latency p99.
            obs_dim = next((m.get("obs_dim") for m in summary["info"].get("models", []) if m.get("name") == main_name), None)
            if obs_dim:
                import numpy as np
                c.act(np.zeros(int(obs_dim), np.float32), model=main_name)
        mes = args.max_episode_steps
        for k in ks:
            rep = simulate_once(endpoint, main_name, env_name, args.episodes, args.seed, k, args.candidates,
                                max_episode_steps=mes, timeout_ms=args.timeout_ms)
            record(f"{main_name}-K{k}", rep, model=main_name, steps=k)
        for b in args.baseline:
            name = model_name(b)
            rep = simulate_once(endpoint, name, env_name, args.episodes, args.seed, None, None, max_episode_steps=mes,
                                timeout_ms=args.timeout_ms)
            record(f"{name}", rep, model=name, steps=None)
        if args.sweep:
            kind, scales = args.sweep.split(":")
            for s in [float(x) for x in scales.split(",")]:
                rep = simulate_once(endpoint, main_name, env_name, args.sweep_episodes or args.episodes, args.seed,
                                    args.sweep_steps, args.candidates, kind if s > 0 else None, s, max_episode_steps=mes,
                                    timeout_ms=args.timeout_ms)
                rep["disturbance"] = kind
                rep["disturbance_scale"] = s
                record(f"{main_name}-{kind}-{s:g}", rep, model=main_name, steps=args.sweep_steps, disturbance=kind, scale=s)

    if args.endpoint:
        run_all(args.endpoint)
    else:
        with Server(args.bin, [args.model, *args.baseline]) as server:
            run_all(server.endpoint)
            summary["server_exit_code"] = server.stop()
    write_atomic(out, json.dumps(summary, indent=2) + "\n")
    print()
    print(markdown_table(summary))
    return 0


def markdown_table(summary: dict) -> str:
    """One row per run: score, falls, unreliable share, client latency; the dataset average below."""
    lines = ["| run | return | normalised score | falls | unreliable | latency p50 / p99 (ms) |",
             "|---|---|---|---|---|---|"]
    for r in summary["runs"]:
        lat = r["latency_ms"]
        lat_text = "–" if lat["p50"] is None else f"{lat['p50']:.2f} / {lat['p99']:.2f}"
        score = "–" if r["score_mean"] is None else f"{r['score_mean']:.1f} ± {r['score_std']:.1f}"
        lines.append(f"| {r['label']} | {r['return_mean']:.0f} ± {r['return_std']:.0f} | {score} "
                     f"| {r['falls']}/{r['episodes']} | {100 * r['unreliable_share']:.1f} % | {lat_text} |")
    avg = summary.get("dataset_average")
    if avg is not None:
        lines.append(f"\ndataset average ({Path(summary['dataset']).name}): {avg:.1f}")
    elif summary.get("dataset") is None:
        lines.append("\ndataset average: unknown (no --dataset)")
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """write + fsync + rename, so a reader never sees half a summary (missing directories are
    created). scripts/compare_d3rlpy.py writes its summary through this too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
