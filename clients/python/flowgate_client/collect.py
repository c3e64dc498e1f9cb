"""Collect D4RL-style offline datasets from pybullet with the policies bundled in the pybullet wheel.

    python -m flowgate_client.collect --env HopperBulletEnv --kind medium --steps 200000 \
        --seed 0 --out /work/data/hopper-medium.npz --compress
    python -m flowgate_client.collect --reference            # (re)measure references.json

Kinds
  expert         the bundled policy, deterministic, actions clipped to [-1, 1]
  random         uniform actions in [-1, 1]
  medium         a fixed mixture of a few *perturbed copies* of the expert (weights
                 W + N(0, (alpha*std(W))^2) per matrix, drawn once), one member chosen per episode,
                 plus small Gaussian action noise; members were picked by measuring returns so the
                 mixture lands at roughly a third to a half of the expert (see MEDIUM_PRESETS)
  medium-replay  per-episode blend a = (1-b)*(expert(s) + N(0, 0.1^2)) + b*U(-1, 1) with b annealed
                 from 1 (uniform random) to 0 over the step budget (REPLAY_SCHEDULE), like a
                 learner's replay buffer
  medium-expert  medium (first half of the budget) + expert (second half), concatenated

Walker2DBulletEnv and HalfCheetahBulletEnv: the wheel's policies for them are broken, so their
"expert" is a SAC policy trained here (scripts/train_behaviour_policy.py; flowgate_client/policies/)
and their "medium" is an earlier checkpoint of the same run plus action noise 0.1.

Episodes are cut at 1000 steps and marked as timeouts; true terminations go to ``terminals``.
The final episode is cut by the step budget and marked as a timeout too.  Same arguments and
seed give a byte-identical file.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from .datasets import REFERENCES_PATH, load_references, normalized_score, save_hdf5, save_npz
from .envs import (MAX_EPISODE_STEPS, SHORT_NAMES, canonical_env_name, expert_policy, make_env, run_episode,
                   trained_policy)

KINDS = ("expert", "medium", "random", "medium-replay", "medium-expert")

# Perturbed-expert mixtures for "medium", chosen by measurement (10 episodes each, see DATASETS.md):
#   Hopper, alpha 0.2, action noise 0.1: seed 1 669±148, seed 4 1583±537, seed 6 730±262,
#     seed 11 1424±510 (expert ~2530) -> mixture ~1100 (~43 % of expert)
#   InvertedDoublePendulum, action noise 0.05: alpha 0.1 seed 1 4607±2351, alpha 0.05 seed 5
#     3024±1399, alpha 0.05 seed 6 2264±681 (expert ~8600) -> mixture ~3300 (~36 %)
MEDIUM_PRESETS = {
    "HopperBulletEnv": {"members": [(0.2, 1), (0.2, 4), (0.2, 6), (0.2, 11)], "action_sigma": 0.1},
    "InvertedDoublePendulumBulletEnv": {"members": [(0.1, 1), (0.05, 5), (0.05, 6)], "action_sigma": 0.05},
    # Ant, alpha 0.3, action noise 0.1 (3 episodes each): seed 0 1170±91, seed 1 917±75,
    #   seed 2 902±71 (expert 2371, random 403) -> mixture ~980 (~29 normalised); alpha 0.5 gave
    #   568-1065, alpha 0.7 396-479 (DATASETS.md)
    "AntBulletEnv": {"members": [(0.3, 0), (0.3, 1), (0.3, 2)], "action_sigma": 0.1},
    # not tuned: a reasonable default
    "InvertedPendulumSwingupBulletEnv": {"members": [(0.1, 0), (0.1, 1), (0.1, 2)], "action_sigma": 0.05},
    # Walker2D and HalfCheetah: as D4RL made its medium data, an earlier checkpoint of the run that
    # trained the env's reference policy (policies/*-sac-medium.npz, picked for a return of about
    # a third to a half of the final one), plus small Gaussian action noise.
    "Walker2DBulletEnv": {"policy": "medium", "action_sigma": 0.1},
    "HalfCheetahBulletEnv": {"policy": "medium", "action_sigma": 0.1},
}
REPLAY_FINAL_SIGMA = 0.1
# medium-replay blend schedule b(p) over the share p of the budget collected (piecewise linear).
# Hopper only learns to hop for b < ~0.5, so a linear 1 -> 0 anneal produced half junk and ~40 %
# near-expert with a sharp jump; spending 60 % of the budget on b in [0.6, 0.4] gives a gradual
# improvement like a learner's replay buffer.
REPLAY_SCHEDULE = ((0.0, 0.2, 0.8, 1.0), (1.0, 0.6, 0.4, 0.0))


def log(msg: str) -> None:
    print(f"[collect] {msg}", file=sys.stderr, flush=True)


@dataclass
class Behaviour:
    """Chooses the acting function for each episode."""
    kind: str
    env_name: str
    total_steps: int
    rng: np.random.Generator

    def __post_init__(self):
        self.expert = expert_policy(self.env_name)
        self.act_dim = self.expert.act_dim
        if self.kind == "medium":
            preset = MEDIUM_PRESETS[self.env_name]
            if "policy" in preset:
                self.members = [trained_policy(self.env_name, preset["policy"])]
            else:
                self.members = [self.expert.perturbed(a, s) for a, s in preset["members"]]
            self.sigma = preset["action_sigma"]

    def description(self) -> dict:
        if self.kind == "expert":
            return {"policy": self.expert.description}
        if self.kind == "random":
            return {"policy": "uniform random actions in [-1, 1]"}
        if self.kind == "medium" and "policy" in MEDIUM_PRESETS[self.env_name]:
            return {"policy": "the medium checkpoint of the reference policy's training run, plus Gaussian action "
                              "noise: " + self.members[0].description,
                    "members": [{"file": self.members[0].extra["file"],
                                 "eval_return_mean": self.members[0].extra["eval_return_mean"]}],
                    "action_sigma": self.sigma}
        if self.kind == "medium":
            return {"policy": "mixture of perturbed experts, one member chosen uniformly per episode, "
                              "plus Gaussian action noise; perturbation W + N(0, (alpha*std(W))^2) on each "
                              "weight matrix (biases unchanged) of " + self.expert.description,
                    "members": [m.extra for m in self.members], "action_sigma": self.sigma}
        if self.kind == "medium-replay":
            return {"policy": "per-episode blend a = (1-b)*(expert(s) + N(0, 0.1^2)) + b*U(-1,1), "
                              "b = interp(steps collected / budget at episode start, schedule) of " + self.expert.description,
                    "final_sigma": REPLAY_FINAL_SIGMA,
                    "schedule": {"progress": list(REPLAY_SCHEDULE[0]), "blend": list(REPLAY_SCHEDULE[1])}}
        raise ValueError(self.kind)

    def episode(self, collected: int):
        """Returns (act_fn, info) for a new episode starting after ``collected`` transitions."""
        rng, d = self.rng, self.act_dim
        if self.kind == "expert":
            return self.expert, {}
        if self.kind == "random":
            return (lambda obs: rng.uniform(-1.0, 1.0, size=d)), {}
        if self.kind == "medium":
            k = int(rng.integers(len(self.members)))
            pol, sigma = self.members[k], self.sigma
            return (lambda obs: pol(obs) + sigma * rng.standard_normal(d)), {"member": k}
        if self.kind == "medium-replay":
            b = float(np.interp(collected / self.total_steps, *REPLAY_SCHEDULE))
            ex = self.expert

            def act(obs):
                good = ex(obs) + REPLAY_FINAL_SIGMA * rng.standard_normal(d)
                return (1.0 - b) * good + b * rng.uniform(-1.0, 1.0, size=d)
            return act, {"blend": b}
        raise ValueError(self.kind)


def collect(env_name: str, kind: str, steps: int, seed: int, progress: bool = True) -> tuple[dict, dict]:
    """Collect ``steps`` transitions; returns (arrays, metadata)."""
    env_name = canonical_env_name(env_name)
    if kind == "medium-expert":
        half = steps // 2
        a1, m1 = collect(env_name, "medium", half, seed, progress)
        a2, m2 = collect(env_name, "expert", steps - half, seed + 1, progress)
        arrays = {k: np.concatenate([a1[k], a2[k]]) for k in a1}
        meta = dict(m1, kind=kind, seed=seed, steps=steps,
                    behaviour={"medium": m1["behaviour"], "expert": m2["behaviour"],
                               "layout": f"rows [0, {half}) medium (seed {seed}), rows [{half}, {steps}) expert (seed {seed + 1})"})
        _add_return_stats(meta, arrays, env_name)
        return arrays, meta

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    env = make_env(env_name, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, KINDS.index(kind)]))
    beh = Behaviour(kind, env_name, steps, rng)
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    O = np.zeros((steps, obs_dim), np.float32)
    A = np.zeros((steps, act_dim), np.float32)
    R = np.zeros(steps, np.float32)
    O2 = np.zeros((steps, obs_dim), np.float32)
    T = np.zeros(steps, bool)
    TO = np.zeros(steps, bool)
    ep_returns, ep_lengths, ep_complete, ep_info = [], [], [], []
    n = 0
    t0 = last = time.monotonic()
    while n < steps:
        act_fn, info = beh.episode(n)
        obs = env.reset()
        ret, length = 0.0, 0
        complete = False
        while n < steps:
            a = np.clip(np.asarray(act_fn(obs), dtype=np.float64), -1.0, 1.0)
            nobs, r, done, _ = env.step(a)
            length += 1
            ret += float(r)
            O[n], A[n], R[n], O2[n] = obs, a, r, nobs
            if done:
                T[n] = True
            elif length >= MAX_EPISODE_STEPS or n == steps - 1:
                TO[n] = True
            n += 1
            obs = nobs
            if done or length >= MAX_EPISODE_STEPS:
                complete = True
                break
        ep_returns.append(ret)
        ep_lengths.append(length)
        ep_complete.append(complete)
        ep_info.append(info.get("member", info.get("blend", -1)))
        now = time.monotonic()
        if progress and (now - last > 5.0 or n >= steps):
            last = now
            done_r = [r for r, c in zip(ep_returns, ep_complete) if c]
            log(f"{SHORT_NAMES.get(env_name, env_name)} {kind} seed {seed}: {n}/{steps} transitions "
                f"({100.0 * n / steps:.0f}%), {len(ep_returns)} episodes, mean return "
                f"{np.mean(done_r) if done_r else float('nan'):.1f}, {n / (now - t0):.0f} steps/s")
    env.close()
    arrays = {
        "observations": O, "actions": A, "rewards": R, "next_observations": O2,
        "terminals": T, "timeouts": TO,
        "episode_returns": np.asarray(ep_returns, np.float32),
        "episode_lengths": np.asarray(ep_lengths, np.int32),
        "episode_complete": np.asarray(ep_complete, bool),
        "episode_behaviour": np.asarray(ep_info, np.float32),
    }
    import pybullet
    meta = {
        "format": "flowgate-d4rl-npz/1",
        "env_name": env_name, "kind": kind, "seed": seed, "steps": steps,
        "obs_dim": obs_dim, "act_dim": act_dim,
        "max_episode_steps": MAX_EPISODE_STEPS,
        "behaviour": beh.description(),
        "actions": "clipped to [-1, 1] before env.step; stored as clipped",
        "last_episode": "cut by the step budget and marked as a timeout" if not ep_complete[-1] else "complete",
        "generator": "flowgate_client.collect",
        "pybullet_api_version": int(pybullet.getAPIVersion()),
    }
    _add_return_stats(meta, arrays, env_name)
    return arrays, meta


def _add_return_stats(meta: dict, arrays: dict, env_name: str) -> None:
    refs = load_references().get(env_name, {})
    rnd, exp = refs.get("random_return", math.nan), refs.get("expert_return", math.nan)
    meta["ref_random_return"] = rnd
    meta["ref_expert_return"] = exp
    rets = arrays["episode_returns"][arrays["episode_complete"]].astype(np.float64)
    meta["episodes"] = int(len(arrays["episode_returns"]))
    meta["complete_episodes"] = int(len(rets))
    if len(rets):
        meta["return_mean"] = round(float(rets.mean()), 3)
        meta["return_std"] = round(float(rets.std()), 3)
        meta["return_min"] = round(float(rets.min()), 3)
        meta["return_max"] = round(float(rets.max()), 3)
        meta["normalized_score_mean"] = round(float(normalized_score(rets.mean(), random_return=rnd, expert_return=exp)), 3)
        meta["normalized_score_std"] = round(float(100.0 * rets.std() / (exp - rnd)), 3)


def finalize(arrays: dict, meta: dict) -> dict:
    out = dict(arrays)
    out["ref_random_return"] = np.float64(meta["ref_random_return"])
    out["ref_expert_return"] = np.float64(meta["ref_expert_return"])
    out["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    return out


def measure_references(envs, episodes_expert: int, episodes_random: int, seed: int) -> dict:
    result = {}
    for name in envs:
        name = canonical_env_name(name)
        env = make_env(name, seed)
        pi = expert_policy(name)
        t0 = time.monotonic()
        exp = [run_episode(env, pi)[0] for _ in range(episodes_expert)]
        rng = np.random.default_rng(seed)
        rnd = [run_episode(env, lambda o: rng.uniform(-1, 1, size=pi.act_dim))[0] for _ in range(episodes_random)]
        env.close()
        result[name] = {
            "random_return": round(float(np.mean(rnd)), 3), "random_std": round(float(np.std(rnd)), 3),
            "random_episodes": episodes_random,
            "expert_return": round(float(np.mean(exp)), 3), "expert_std": round(float(np.std(exp)), 3),
            "expert_episodes": episodes_expert,
            "expert_policy": pi.description,
        }
        log(f"reference {name}: random {np.mean(rnd):.1f} ± {np.std(rnd):.1f}, expert "
            f"{np.mean(exp):.1f} ± {np.std(exp):.1f} ({time.monotonic() - t0:.1f}s)")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowgate_client.collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="HopperBulletEnv")
    ap.add_argument("--kind", choices=KINDS, default="medium")
    ap.add_argument("--steps", type=int, default=100_000, help="number of transitions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="output file (.npz, or .hdf5/.h5 for D4RL-style HDF5)")
    ap.add_argument("--compress", action="store_true", help="deflate the npz members")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--reference", action="store_true", help="measure reference returns instead of collecting")
    ap.add_argument("--reference-envs", default="HopperBulletEnv,InvertedDoublePendulumBulletEnv")
    ap.add_argument("--reference-episodes", type=int, default=20, help="expert episodes per env")
    ap.add_argument("--reference-random-episodes", type=int, default=100)
    ap.add_argument("--reference-out", default=str(REFERENCES_PATH))
    args = ap.parse_args(argv)

    if args.reference:
        envs = [e for e in args.reference_envs.split(",") if e]
        refs = measure_references(envs, args.reference_episodes, args.reference_random_episodes, args.seed)
        # Measuring some envs keeps the others' references (each entry records its own episodes).
        previous = load_references(args.reference_out)
        refs = {**previous, **refs}
        doc = {
            "description": "Reference returns (mean over episodes of at most 1000 steps, actions clipped to [-1,1]) "
                           "for D4RL-style normalised scores: 100*(R - random)/(expert - random).",
            "command": "python -m flowgate_client.collect --reference " + " ".join(a for a in (argv or sys.argv[1:]) if a != "--reference")
                       + (" (merged into the entries measured before)" if previous else ""),
            "seed": args.seed,
            "envs": refs,
        }
        with open(args.reference_out, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.write("\n")
        log(f"wrote {args.reference_out}")
        return 0

    if not args.out:
        ap.error("--out is required")
    t0 = time.monotonic()
    arrays, meta = collect(args.env, args.kind, args.steps, args.seed, progress=not args.quiet)
    if args.out.endswith((".hdf5", ".h5")):
        save_hdf5(args.out, finalize(arrays, meta), meta)
    else:
        save_npz(args.out, finalize(arrays, meta), compress=args.compress)
    summary = {k: meta.get(k) for k in ("env_name", "kind", "seed", "steps", "episodes", "complete_episodes",
                                        "return_mean", "return_std", "return_min", "return_max",
                                        "normalized_score_mean", "normalized_score_std")}
    summary["out"] = args.out
    summary["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
