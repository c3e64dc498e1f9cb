#!/usr/bin/env python3
"""d3rlpy's IQL and TD3+BC side by side with flowgate: train each on the same npz for the same
wall-clock budget, then evaluate it in the same pybullet runner loop as `flowgate eval`
(flowgate_client.simulate: same env seeds, same episode cut, same normalisation), with the policy
called in-process.

    python scripts/compare_d3rlpy.py data/hopper-medium.npz --env HopperBulletEnv --minutes 10 \\
        --algos iql,td3plusbc --episodes 30 --out runs/compare-d3rlpy/hopper-medium.json

Needs a Python with torch and d3rlpy (`pip install d3rlpy`; not part of the CI bootstrap) and the
pybullet stack of clients/python (gym 0.23.1, setuptools<82). d3rlpy 2.x refuses to import next to
gym 0.23.1 (its import-time health check wants gym >= 0.26, which pybullet_envs cannot import), and
its PyTorch check compares version strings ("2.15" < "2.5"); this script skips that health check
and nothing else.

Hyperparameters are d3rlpy's own D4RL reproduction settings (reproductions/offline/iql.py and
td3_plus_bc.py): batch 256, learning rates 3e-4; IQL expectile 0.7, weight_temp 3, max_weight 100,
rewards scaled by 1000 / (max - min episode return); TD3+BC alpha 2.5 with standardised
observations. Training stops at the first update after the budget; the JSON records the steps
reached. Writes the JSON summary (write, fsync, rename) and prints one markdown row per algorithm.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "clients" / "python"))

from flowgate_client import simulate  # noqa: E402
from flowgate_client.datasets import load_dataset  # noqa: E402
from flowgate_client.envs import canonical_env_name  # noqa: E402
from flowgate_client.evaluate import write_atomic  # noqa: E402

ALGOS = ("iql", "td3plusbc")


def import_d3rlpy():
    """Imports d3rlpy without its import-time health check (see the module docstring)."""
    stub = types.ModuleType("d3rlpy.healthcheck")
    stub.run_healthcheck = lambda: None
    sys.modules.setdefault("d3rlpy.healthcheck", stub)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import d3rlpy
            import torch
    except ImportError as e:
        raise SystemExit(f"compare_d3rlpy: cannot import d3rlpy/torch in {sys.executable} ({e}); "
                         "install them into a separate environment with `pip install d3rlpy` (brings torch) "
                         "and run this script with that environment's python") from None
    return d3rlpy, torch


def episode_returns(arrays: dict) -> np.ndarray:
    """Sum of rewards per episode (an episode ends at a terminal or timeout row)."""
    ends = np.flatnonzero(arrays["terminals"].astype(bool) | arrays["timeouts"].astype(bool))
    sums = np.add.reduceat(arrays["rewards"].astype(np.float64), np.concatenate([[0], ends[:-1] + 1]))
    return sums


def make_algo(d3rlpy, name: str, seed: int, arrays: dict):
    """The scalers are fitted here from the arrays with numpy: d3rlpy's own fitting walks every
    transition in Python (tens of seconds of the budget on 200k rows); the values are the same."""
    d3rlpy.seed(seed)
    if name == "iql":
        rets = episode_returns(arrays)
        cfg = d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256, weight_temp=3.0,
            max_weight=100.0, expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(
                return_max=float(rets.max()), return_min=float(rets.min()), multiplier=1000.0))
    elif name == "td3plusbc":
        obs = arrays["observations"].astype(np.float64)
        cfg = d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4, critic_learning_rate=3e-4, batch_size=256, target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5, alpha=2.5, update_actor_interval=2,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(
                mean=obs.mean(axis=0).astype(np.float32), std=obs.std(axis=0).astype(np.float32)))
    else:
        raise ValueError(name)
    return cfg.create(device="cpu:0")


def train(d3rlpy, name: str, dataset, arrays: dict, seconds: float, seed: int,
          log_every_s: float = 60.0) -> tuple[object, dict]:
    """Updates until `seconds` of wall clock have passed (scaler fitting and network building count)."""
    t0, c0 = time.monotonic(), time.process_time()
    algo = make_algo(d3rlpy, name, seed, arrays)
    algo.build_with_dataset(dataset)
    steps, last_log, loss = 0, t0, {}
    while time.monotonic() - t0 < seconds:
        loss = algo.update(dataset.sample_transition_batch(algo.config.batch_size))
        steps += 1
        now = time.monotonic()
        if now - last_log >= log_every_s:
            last_log = now
            shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(loss.items()))
            print(f"[{name}] {now - t0:6.0f} s  {steps} updates  {steps / (now - t0):.1f}/s  {shown}",
                  file=sys.stderr, flush=True)
    wall = time.monotonic() - t0
    # CPU seconds show how much of the wall-clock budget the process really got on a shared machine.
    return algo, {"updates": steps, "train_wall_s": round(wall, 1), "train_cpu_s": round(time.process_time() - c0, 1),
                  "updates_per_s": round(steps / wall, 2),
                  "final_losses": {k: float(v) for k, v in loss.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="npz written by flowgate_client.collect")
    ap.add_argument("--env", help="pybullet env (default: the dataset's metadata env_name)")
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per algorithm")
    ap.add_argument("--algos", default="iql,td3plusbc", help=f"comma-separated, from {', '.join(ALGOS)}")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=100, help="first env seed (the model cards use 100)")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (flowgate's trainer uses two by default; --threads 2 for the same cores)")
    ap.add_argument("--out", help="JSON summary (default runs/compare-d3rlpy/<dataset>.json)")
    args = ap.parse_args(argv)

    algos = [a.strip().lower() for a in args.algos.split(",") if a.strip()]
    unknown = [a for a in algos if a not in ALGOS]
    if not algos or unknown:
        ap.error(f"--algos: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(ALGOS)}")
    if args.minutes <= 0 or args.episodes <= 0 or args.threads <= 0:
        ap.error("--minutes, --episodes and --threads must be positive")
    path = Path(args.dataset)
    if not path.is_file():
        ap.error(f"dataset {path} does not exist")
    arrays, meta = load_dataset(path)
    missing = [k for k in ("observations", "actions", "rewards", "terminals", "timeouts") if k not in arrays]
    if missing:
        ap.error(f"dataset {path} lacks {', '.join(missing)}")
    env_name = args.env or meta.get("env_name")
    if not env_name:
        ap.error(f"dataset {path} records no env_name: give --env")
    try:
        env_name = canonical_env_name(env_name)
    except ValueError as e:
        ap.error(str(e))
    out = Path(args.out) if args.out else REPO / "runs" / "compare-d3rlpy" / (path.stem + ".json")

    d3rlpy, torch = import_d3rlpy()
    torch.set_num_threads(args.threads)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=arrays["observations"].astype(np.float32), actions=arrays["actions"].astype(np.float32),
        rewards=arrays["rewards"].astype(np.float32), terminals=arrays["terminals"].astype(np.float32),
        timeouts=arrays["timeouts"].astype(np.float32),
        action_space=d3rlpy.constants.ActionSpace.CONTINUOUS)
    summary = {"dataset": str(path), "env": env_name, "minutes": args.minutes, "episodes": args.episodes,
               "env_seed": args.seed, "train_seed": args.train_seed, "torch_threads": args.threads,
               "d3rlpy": d3rlpy.__version__, "torch": torch.__version__,
               "dataset_average": meta.get("normalized_score_mean"), "runs": []}
    for name in algos:
        print(f"[{name}] training for {args.minutes:g} min on {path.name} ({len(arrays['rewards'])} transitions)",
              file=sys.stderr, flush=True)
        algo, info = train(d3rlpy, name, dataset, arrays, args.minutes * 60.0, args.train_seed)

        def act(obs, algo=algo):
            return algo.predict(np.asarray(obs, dtype=np.float32)[None])[0]

        sim_args = simulate.build_parser().parse_args(
            ["--env", env_name, "--episodes", str(args.episodes), "--seed", str(args.seed)])
        t0 = time.monotonic()
        rep = simulate.run(sim_args, policy=act, policy_name=f"d3rlpy-{name}")
        row = {"algo": name, **info, "eval_wall_s": round(time.monotonic() - t0, 1),
               "score_mean": rep["normalized_score_mean"], "score_std": rep["normalized_score_std"],
               "return_mean": rep["return_mean"], "return_std": rep["return_std"], "falls": rep["falls"],
               "per_episode_scores": [e["normalized_score"] for e in rep["per_episode"]]}
        summary["runs"].append(row)
        write_atomic(out, json.dumps(summary, indent=2) + "\n")

    print(f"\n| dataset | algorithm | budget | updates | score (± std, {args.episodes} episodes) | falls | dataset average |")
    print("|---|---|---|---|---|---|---|")
    avg = summary["dataset_average"]
    for r in summary["runs"]:
        print(f"| {path.stem} | d3rlpy {r['algo']} | {args.minutes:g} min | {r['updates']} | "
              f"{r['score_mean']:.1f} ± {r['score_std']:.1f} | {r['falls']}/{args.episodes} | "
              f"{'–' if avg is None else f'{avg:.1f}'} |")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
