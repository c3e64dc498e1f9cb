"""Train a behaviour policy for a pybullet env that ships no working expert, with SAC.

pybullet's wheel bundles trained policies for Hopper, Ant and the pendulums; its Walker2D and
HalfCheetah policies fall or run backwards in this pybullet. The collector needs a policy to make
D4RL-style datasets for them, so this script trains one with Stable-Baselines3's SAC (one torch
thread, networks 256-256 ReLU, SB3's defaults otherwise) and exports the deterministic actor
(``tanh(W3 relu(W2 relu(W1 s + b1) + b2) + b3)``) as an npz that ``flowgate_client.envs`` loads with
numpy alone:

    pip install stable-baselines3==2.9.2      # beside the client's requirements; not in the bootstrap
    python scripts/train_behaviour_policy.py --env Walker2DBulletEnv --steps 150000 --out runs/sac-walker2d
    python scripts/train_behaviour_policy.py --env Walker2DBulletEnv --steps 150000 --out runs/sac-walker2d --resume

Every ``--export-every`` steps it writes ``policy-<steps>.npz`` (the actor, with its mean return
over ``--eval-episodes`` deterministic episodes in the metadata), appends a line to
``progress.jsonl``, and checkpoints the model and its replay buffer, so ``--resume`` continues an
interrupted run where its last checkpoint left it. Episodes are cut at 1000 steps (a truncation,
not a termination) and actions are clipped to [-1, 1], as the collector does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "python"))
from flowgate_client.envs import MAX_EPISODE_STEPS, canonical_env_name, make_env  # noqa: E402


def gym_env(name: str, seed: int):
    import gymnasium

    class BulletEnv(gymnasium.Env):
        """The old-API pybullet env as a gymnasium env: 1000-step truncation, clipped actions."""

        def __init__(self):
            self.env = make_env(name, seed)
            obs_dim = self.env.observation_space.shape[0]
            act_dim = self.env.action_space.shape[0]
            self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
            self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
            self.t = 0

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return np.asarray(self.env.reset(), np.float32), {}

        def step(self, action):
            obs, r, done, _ = self.env.step(np.clip(np.asarray(action, np.float64), -1.0, 1.0))
            self.t += 1
            return np.asarray(obs, np.float32), float(r), bool(done), (not done and self.t >= MAX_EPISODE_STEPS), {}

    return BulletEnv()


def actor_weights(model) -> list[np.ndarray]:
    """The deterministic actor's weights as [w1, b1, w2, b2, w3, b3] (float32, as trained), w as (inputs, outputs)."""
    import torch
    actor = model.policy.actor
    linears = [m for m in actor.latent_pi if isinstance(m, torch.nn.Linear)] + [actor.mu]
    if len(linears) != 3:
        raise SystemExit(f"expected a 2-hidden-layer actor, got {len(linears) - 1} hidden layers")
    out = []
    for layer in linears:
        out.append(layer.weight.detach().cpu().numpy().T.astype(np.float32))
        out.append(layer.bias.detach().cpu().numpy().astype(np.float32))
    return out


def evaluate(name: str, weights: list[np.ndarray], episodes: int, seed: int) -> tuple[float, float]:
    from flowgate_client.envs import MLPPolicy, run_episode
    policy = MLPPolicy([w.astype(np.float64) for w in weights], squash=True)
    env = make_env(name, seed)
    returns = [run_episode(env, policy)[0] for _ in range(episodes)]
    env.close()
    return float(np.mean(returns)), float(np.std(returns))


def save_atomic(path: Path, arrays: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True)
    ap.add_argument("--steps", type=int, default=150_000, help="environment steps in all")
    ap.add_argument("--out", required=True, help="run directory (exports, progress.jsonl, checkpoint)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export-every", type=int, default=10_000)
    ap.add_argument("--eval-episodes", type=int, default=5)
    ap.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    args = ap.parse_args(argv)

    import torch
    from stable_baselines3 import SAC
    torch.set_num_threads(1)
    name = canonical_env_name(args.env)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, replay = out / "checkpoint.zip", out / "replay.pkl"
    env = gym_env(name, args.seed)
    if args.resume:
        if not checkpoint.exists():
            raise SystemExit(f"--resume: no checkpoint in {out}")
        model = SAC.load(checkpoint, env=env, device="cpu")
        model.load_replay_buffer(replay)
    else:
        if checkpoint.exists():
            raise SystemExit(f"{out} already holds a run; pass --resume to continue it, or another --out")
        model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [256, 256]}, learning_starts=5000,
                    seed=args.seed, device="cpu", verbose=0)
    command = "python scripts/train_behaviour_policy.py " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.monotonic()
    while model.num_timesteps < args.steps:
        chunk = min(args.export_every - model.num_timesteps % args.export_every, args.steps - model.num_timesteps)
        start = model.num_timesteps
        model.learn(total_timesteps=chunk, reset_num_timesteps=False)
        steps = model.num_timesteps
        weights = actor_weights(model)
        mean, std = evaluate(name, weights, args.eval_episodes, seed=10_000 + steps)
        meta = {"env_name": name, "trainer": "stable-baselines3 SAC", "sb3_version": __import__("stable_baselines3").__version__,
                "net_arch": [256, 256], "seed": args.seed, "env_steps": steps, "eval_return_mean": round(mean, 3),
                "eval_return_std": round(std, 3), "eval_episodes": args.eval_episodes, "command": command,
                "actor": "tanh(W3 relu(W2 relu(W1 s + b1) + b2) + b3), w as (inputs, outputs)"}
        save_atomic(out / f"policy-{steps}.npz",
                    {**{k: w for k, w in zip(("w1", "b1", "w2", "b2", "w3", "b3"), weights)},
                     "metadata": np.array(json.dumps(meta, sort_keys=True))})
        model.save(out / "checkpoint.tmp.zip")
        model.save_replay_buffer(out / "replay.tmp.pkl")
        os.replace(out / "checkpoint.tmp.zip", checkpoint)
        os.replace(out / "replay.tmp.pkl", replay)
        rate = (steps - start) / max(time.monotonic() - t0, 1e-9)
        t0 = time.monotonic()
        line = {"env_steps": steps, "eval_return_mean": round(mean, 1), "eval_return_std": round(std, 1),
                "steps_per_s": round(rate, 1)}
        with open(out / "progress.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"[sac] {name} {steps}/{args.steps} steps, eval return {mean:.1f} ± {std:.1f}, {rate:.0f} steps/s",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
