"""Run real pybullet episodes with every action fetched from a flowgate server (one ``act`` per step).

    python -m flowgate_client.simulate --env HopperBulletEnv --episodes 10 \
        --endpoint tcp://127.0.0.1:5555 [--steps K] [--candidates M] [--seed S] [--report out.json] \
        [--disturbance push|obs-noise --disturbance-scale X]
    python -m flowgate_client.simulate --policy expert --episodes 3      # no server: sanity check

Prints per-episode and mean ± std returns, D4RL-normalised scores (references.json), the share of
steps the server flagged unreliable, and client-side latency percentiles; writes a JSON report.

Disturbances (the safety-monitor scenario):
  obs-noise  Gaussian noise with std X added to every observation *sent to the server* (the env
             itself is untouched), so the policy acts on corrupted input.
  push       at each step, with probability --push-prob, a push starts: a horizontal force of X
             newtons (random sign along x, plus a random vertical part up to X/2) applied to the
             robot's main body (torso / cart) for --push-steps consecutive env steps
             (pybullet applyExternalForce, world frame).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from .client import DEFAULT_ENDPOINT, Client
from .datasets import reference_returns
from .envs import MAX_EPISODE_STEPS, canonical_env_name, expert_policy, make_env, push_body


def percentiles(values_ms) -> dict:
    if not len(values_ms):
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    v = np.asarray(values_ms, dtype=np.float64)
    return {"p50": float(np.percentile(v, 50)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "mean": float(v.mean()), "max": float(v.max())}


def run(args, policy=None, policy_name: str | None = None) -> dict:
    """Runs ``args.episodes`` episodes and returns the report.

    ``policy`` (a callable obs -> action) acts in-process instead of the server; other libraries'
    policies (scripts/compare_d3rlpy.py) go through this same loop, seeds and normalisation.
    """
    env_name = canonical_env_name(args.env)
    env = make_env(env_name, args.seed)
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 7]))
    client = None
    expert = policy
    if policy is not None:
        args.policy = policy_name or "local"
    elif args.policy == "expert":
        expert = expert_policy(env_name)
    else:
        client = Client(args.endpoint, timeout_ms=args.timeout_ms, retries=args.retries, model=args.model,
                        socket_type=args.socket, encoding=args.encoding)
        info = client.info()
        models = info.get("models", [])
        m = next((x for x in models if x.get("name") == args.model), models[0] if models else {})
        od = m.get("obs_dim")
        if od is not None and int(od) != env.observation_space.shape[0]:
            raise SystemExit(f"model {m.get('name')} has obs_dim {od}, {env_name} has {env.observation_space.shape[0]}")
    rnd_ref, exp_ref = reference_returns(env_name)
    episodes = []
    latencies_ms = []
    server_compute_us = []
    total_steps = total_unreliable = 0
    step_counter = 0
    t_start = time.monotonic()
    for ep in range(args.episodes):
        obs = env.reset()
        ret, unreliable, pushes, push_left, push_force = 0.0, 0, 0, 0, None
        confidences = []
        done = False
        length = 0
        for t in range(args.max_episode_steps):
            sent = obs
            if args.disturbance == "obs-noise" and args.disturbance_scale > 0:
                sent = obs + args.disturbance_scale * rng.standard_normal(obs.shape)
            if expert is not None:
                action = expert(sent)
                reliable = True
            else:
                seed = None if args.server_seed is None else args.server_seed + step_counter
                t0 = time.perf_counter()
                r = client.act(sent, steps=args.steps, candidates=args.candidates, samples=args.samples,
                               check=not args.no_check, seed=seed, deadline_ms=args.deadline_ms)
                latencies_ms.append((time.perf_counter() - t0) * 1000.0)
                if "compute_us" in r.timing:
                    server_compute_us.append(float(r.timing["compute_us"]))
                action = r.action
                reliable = bool(r.reliable) if r.reliable is not None else True
                if r.confidence is not None:
                    confidences.append(float(r.confidence))
            unreliable += 0 if reliable else 1
            if args.disturbance == "push" and args.disturbance_scale > 0:
                if push_left == 0 and rng.random() < args.push_prob:
                    push_left = args.push_steps
                    s = args.disturbance_scale
                    push_force = (float(rng.choice([-1.0, 1.0]) * s), 0.0, float(rng.uniform(0, 0.5) * s))
                    pushes += 1
                if push_left > 0:
                    push_body(env, push_force)
                    push_left -= 1
            obs, rew, done, _ = env.step(np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0))
            ret += float(rew)
            length += 1
            step_counter += 1
            if done:
                break
        total_steps += length
        total_unreliable += unreliable
        # The env classes apply no time limit, so `done` is always a true termination: a fall
        # (Hopper, Ant) or the pole dropping (pendulums), before --max-episode-steps.
        e = {"episode": ep, "return": ret, "length": length, "terminated": bool(done), "fell": bool(done),
             "normalized_score": float(100.0 * (ret - rnd_ref) / (exp_ref - rnd_ref)) if not math.isnan(rnd_ref) else None,
             "unreliable_steps": unreliable, "unreliable_share": unreliable / max(1, length), "pushes": pushes,
             "mean_confidence": float(np.mean(confidences)) if confidences else None}
        episodes.append(e)
        print(f"episode {ep}: return {ret:8.1f}  length {length:4d}  score {e['normalized_score'] if e['normalized_score'] is not None else float('nan'):6.1f}"
              f"  unreliable {100.0 * e['unreliable_share']:5.1f}%" + (f"  pushes {pushes}" if pushes else ""), flush=True)
    env.close()
    if client is not None:
        client.close()
    rets = np.array([e["return"] for e in episodes])
    scores = np.array([e["normalized_score"] for e in episodes if e["normalized_score"] is not None])
    report = {
        "env": env_name, "policy": args.policy, "endpoint": args.endpoint if client else None, "model": args.model,
        "episodes": args.episodes, "seed": args.seed, "steps": args.steps, "candidates": args.candidates,
        "samples": args.samples, "check": not args.no_check,
        "disturbance": args.disturbance, "disturbance_scale": args.disturbance_scale if args.disturbance else 0.0,
        "push_prob": args.push_prob if args.disturbance == "push" else None,
        "push_steps": args.push_steps if args.disturbance == "push" else None,
        "return_mean": float(rets.mean()), "return_std": float(rets.std()),
        "normalized_score_mean": float(scores.mean()) if len(scores) else None,
        "normalized_score_std": float(scores.std()) if len(scores) else None,
        "ref_random_return": rnd_ref, "ref_expert_return": exp_ref,
        "falls": sum(1 for e in episodes if e["fell"]),
        "total_steps": total_steps, "unreliable_share": total_unreliable / max(1, total_steps),
        "latency_ms": percentiles(latencies_ms),
        "server_compute_us": percentiles(server_compute_us),
        "wall_s": time.monotonic() - t_start,
        "per_episode": episodes,
    }
    if args.keep_latencies:
        report["latencies_ms"] = latencies_ms
    lat = report["latency_ms"]
    print(f"{env_name} ({args.policy}): return {report['return_mean']:.1f} ± {report['return_std']:.1f}, "
          f"normalised {report['normalized_score_mean'] if report['normalized_score_mean'] is not None else float('nan'):.1f} "
          f"± {report['normalized_score_std'] if report['normalized_score_std'] is not None else float('nan'):.1f}, "
          f"falls {report['falls']}/{args.episodes}, unreliable {100.0 * report['unreliable_share']:.1f}% of {total_steps} steps"
          + (f", latency p50 {lat['p50']:.3f} / p90 {lat['p90']:.3f} / p99 {lat['p99']:.3f} ms" if lat["p50"] is not None else ""),
          flush=True)
    return report


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.simulate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="HopperBulletEnv")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--endpoint", default=DEFAULT_ENDPOINT)
    ap.add_argument("--policy", choices=["server", "expert"], default="server",
                    help="server: every action from the flowgate server; expert: the bundled policy locally")
    ap.add_argument("--model", help="model name on the server (default: the server's default)")
    ap.add_argument("--steps", type=int, help="flow integration steps per act (server default if unset)")
    ap.add_argument("--candidates", type=int, help="candidate actions per act (server default if unset)")
    ap.add_argument("--samples", type=int)
    ap.add_argument("--no-check", action="store_true", help="ask the server to skip the reliability check")
    ap.add_argument("--deadline-ms", type=int)
    ap.add_argument("--seed", type=int, default=0, help="env seed (and disturbance RNG)")
    ap.add_argument("--server-seed", type=int, help="if set, act seeds are server_seed + global step")
    ap.add_argument("--max-episode-steps", type=int, default=MAX_EPISODE_STEPS)
    ap.add_argument("--disturbance", choices=["push", "obs-noise"])
    ap.add_argument("--disturbance-scale", type=float, default=0.0,
                    help="obs-noise: noise std; push: force in newtons")
    ap.add_argument("--push-prob", type=float, default=0.02, help="chance per step that a push starts")
    ap.add_argument("--push-steps", type=int, default=4, help="env steps a push lasts")
    ap.add_argument("--timeout-ms", type=int, default=2000)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--socket", choices=["req", "dealer"], default="req")
    ap.add_argument("--encoding", choices=["ndarray", "plain"], default="ndarray")
    ap.add_argument("--report", help="write the JSON report here")
    ap.add_argument("--keep-latencies", action="store_true", help="store every latency sample in the report")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.disturbance and args.disturbance_scale <= 0:
        print("warning: --disturbance given with --disturbance-scale 0: no disturbance applied", file=sys.stderr)
    report = run(args)
    if args.report:
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
