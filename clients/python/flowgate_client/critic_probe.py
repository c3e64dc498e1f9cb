"""Check whether a model's critic can rank actions: the diagnostic that found why QIPO failed on
inverted-double-pendulum-medium (docs/training.md, "Critic LayerNorm").

QIPO's weights and best-of-M selection compare Q between actions *of one state*. This evaluates
the twin critic (min(Q1, Q2), read from critic.safetensors and manifest.json, numpy only) on a grid
of actions for dataset states and reports how often its argmax sits at the action bounds and how far
it lies from the action the data took there. A critic that extrapolates upward toward the bounds
pushes the policy to saturated actions.

    python -m flowgate_client.critic_probe models/NAME --dataset data/NAME.npz [--states 2000] [--json]

Without --dataset the states are drawn from N(mean, std) of the manifest's normaliser (no data
action then, so only the bound share is reported). The grid spans the action bounds per dimension
(41 points for 1-D actions, 9 per dimension up to 3-D).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

LAYER_NORM_EPS = 1e-5  # MLP.layerNormEpsilon in FlowgateCore


class NumpyMLP:
    """Forward pass of FlowgateCore's MLP: hidden layers Linear → (LayerNorm) → activation."""

    ACTIVATIONS = {
        "relu": lambda x: np.maximum(x, 0.0),
        "silu": lambda x: x / (1.0 + np.exp(-x)),
        "tanh": np.tanh,
        "identity": lambda x: x,
    }

    def __init__(self, spec: dict, tensors: dict, prefix: str):
        self.layers = len(spec["hiddenDims"]) + 1
        self.layer_norm = bool(spec.get("layerNorm", False))
        self.act = self.ACTIVATIONS[spec["activation"]]
        self.out_act = self.ACTIVATIONS[spec.get("outputActivation", "identity")]
        self.t = {k[len(prefix) + 1:]: v.astype(np.float64) for k, v in tensors.items() if k.startswith(prefix + ".")}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        for i in range(self.layers):
            x = x @ self.t[f"{i}.weight"].T + self.t[f"{i}.bias"]
            if i == self.layers - 1:
                return self.out_act(x)
            if self.layer_norm:
                mu = x.mean(-1, keepdims=True)
                var = ((x - mu) ** 2).mean(-1, keepdims=True)
                x = (x - mu) / np.sqrt(var + LAYER_NORM_EPS) * self.t[f"ln{i}.weight"] + self.t[f"ln{i}.bias"]
            x = self.act(x)
        return x


class Critic:
    """min(Q1, Q2) of a model directory, in the model's own units (raw observations, actions in bounds)."""

    def __init__(self, model_dir: str | Path):
        from safetensors.numpy import load_file
        model_dir = Path(model_dir)
        self.manifest = json.loads((model_dir / "manifest.json").read_text())
        net = self.manifest["networks"].get("critic")
        if net is None:
            raise SystemExit(f"{model_dir}: no critic network in manifest.json (kind {self.manifest['kind']})")
        tensors = load_file(str(model_dir / net["file"]))
        self.q1 = NumpyMLP(net["mlps"]["q1"], tensors, "q1")
        self.q2 = NumpyMLP(net["mlps"]["q2"], tensors, "q2")
        n = self.manifest["normalization"]
        self.mean = np.asarray(n["observationMean"], np.float64)
        self.std = np.asarray(n["observationStd"], np.float64)
        self.low = np.asarray(self.manifest["actionLow"], np.float64)
        self.high = np.asarray(self.manifest["actionHigh"], np.float64)

    def q(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        z = (np.asarray(obs, np.float64) - self.mean) / self.std
        a = 2.0 * (np.asarray(actions, np.float64) - self.low) / (self.high - self.low) - 1.0
        x = np.concatenate([z, a], axis=-1)
        return np.minimum(self.q1(x), self.q2(x))[..., 0]


def probe(critic: Critic, obs: np.ndarray, data_actions: np.ndarray | None) -> dict:
    d = len(critic.low)
    per_dim = 41 if d == 1 else 9
    unit = np.array(list(itertools.product(np.linspace(0.0, 1.0, per_dim), repeat=d)))  # G × d in [0, 1]
    grid = critic.low + unit * (critic.high - critic.low)
    n, g = len(obs), len(grid)
    q = critic.q(np.repeat(obs, g, axis=0), np.tile(grid, (n, 1))).reshape(n, g)
    best = grid[q.argmax(1)]
    at_bound = np.isclose(best, critic.low) | np.isclose(best, critic.high)
    out = {
        "states": n,
        "grid_points": g,
        "argmax_at_bound_share": float(at_bound.any(1).mean()),
        "q_range_over_grid_mean": float((q.max(1) - q.min(1)).mean()),
    }
    if data_actions is not None:
        qa = critic.q(obs, data_actions)
        out["q_data_mean"] = float(qa.mean())
        out["argmax_minus_data_action_mean_abs"] = float(np.abs(best - data_actions).mean())
        out["q_argmax_minus_q_data_mean"] = float((q.max(1) - qa).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model directory with a critic (qipo-flow-policy)")
    ap.add_argument("--dataset", help=".npz with observations and actions (states are drawn from it)")
    ap.add_argument("--states", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    critic = Critic(a.model)
    rng = np.random.default_rng(a.seed)
    if a.dataset:
        with np.load(a.dataset) as d:
            for k in ("observations", "actions"):
                if k not in d:
                    raise SystemExit(f"{a.dataset}: no '{k}' array")
            idx = rng.choice(len(d["observations"]), min(a.states, len(d["observations"])), replace=False)
            obs, act = d["observations"][idx], d["actions"][idx]
        if obs.shape[1] != len(critic.mean) or act.shape[1] != len(critic.low):
            raise SystemExit(f"{a.dataset}: observation/action dims {obs.shape[1]}/{act.shape[1]} do not match the "
                             f"model's {len(critic.mean)}/{len(critic.low)}")
    else:
        obs = critic.mean + critic.std * rng.standard_normal((a.states, len(critic.mean)))
        act = None
    r = probe(critic, obs, act)
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        for k, v in r.items():
            print(f"{k:36s} {v:.4g}" if isinstance(v, float) else f"{k:36s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
