"""The Walker2D and HalfCheetah behaviour policies trained here (flowgate_client/policies/)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pybullet")

NEW_ENVS = {"Walker2DBulletEnv": (22, 6), "HalfCheetahBulletEnv": (26, 6)}
ROOT = Path(__file__).resolve().parents[3]


def test_flowgate_evals_env_list_is_the_runners():
    # flowgate eval (Swift) maps dataset names to envs with its own copy of SHORT_NAMES.
    from flowgate_client.envs import SHORT_NAMES
    swift = (ROOT / "Sources" / "FlowgateEval" / "EvalPlan.swift").read_text()
    block = swift[swift.index("known: [(name: String, short: String)] = ["):]
    block = block[:block.index("]\n")]
    assert dict(re.findall(r'\("(\w+)", "([\w-]+)"\)', block)) == SHORT_NAMES


@pytest.mark.parametrize("env", sorted(NEW_ENVS))
def test_trained_policies_load_and_act_in_bounds(env):
    from flowgate_client.envs import expert_policy, trained_policy
    obs_dim, act_dim = NEW_ENVS[env]
    expert, medium = expert_policy(env), trained_policy(env, "medium")
    for pol in (expert, medium):
        assert pol.squash and pol.obs_dim == obs_dim and pol.act_dim == act_dim
        assert pol.extra["env_name"] == env
        a = pol(np.random.default_rng(0).standard_normal((32, obs_dim)) * 3)
        assert a.shape == (32, act_dim) and np.all(np.abs(a) <= 1)
    # the medium policy is an earlier checkpoint of the same run, with a lower return
    assert medium.extra["env_steps"] < expert.extra["env_steps"]
    assert medium.extra["eval_return_mean"] < expert.extra["eval_return_mean"]
    assert medium.extra["seed"] == expert.extra["seed"]


@pytest.mark.parametrize("env", sorted(NEW_ENVS))
def test_medium_collection_acts_with_the_medium_checkpoint(tmp_path, env):
    from flowgate_client import collect
    from flowgate_client.datasets import load_dataset
    from flowgate_client.envs import trained_policy
    out = tmp_path / "d.npz"
    assert collect.main(["--env", env, "--kind", "medium", "--steps", "300", "--seed", "0", "--out", str(out),
                         "--quiet"]) == 0
    d, meta = load_dataset(out)
    obs_dim, act_dim = NEW_ENVS[env]
    assert d["observations"].shape == (300, obs_dim) and d["actions"].shape == (300, act_dim)
    assert meta["behaviour"]["members"][0]["file"].endswith("-sac-medium.npz")
    assert meta["ref_expert_return"] > meta["ref_random_return"]
    # the stored actions are the medium policy's plus N(0, 0.1^2) noise, clipped
    medium = trained_policy(env, "medium")
    residual = d["actions"] - np.clip(medium(d["observations"].astype(np.float64)), -1, 1)
    inside = np.abs(d["actions"]) < 0.99
    assert 0.07 < residual[inside].std() < 0.13
    assert json.loads(json.dumps(meta))  # metadata stays JSON
