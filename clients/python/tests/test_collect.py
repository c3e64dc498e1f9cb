import json

import numpy as np
import pytest

from conftest import requires_pybullet

pytestmark = requires_pybullet

ENVS = ["HopperBulletEnv", "InvertedDoublePendulumBulletEnv"]


def _collect(tmp_path, env, kind, seed, steps=300, name=None):
    from flowgate_client import collect
    out = tmp_path / (name or f"{env}-{kind}-{seed}.npz")
    assert collect.main(["--env", env, "--kind", kind, "--steps", str(steps), "--seed", str(seed),
                         "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("env", ENVS)
def test_schema_and_determinism(tmp_path, env):
    from flowgate_client.datasets import load_dataset
    a = _collect(tmp_path, env, "medium", 3, name="a.npz")
    b = _collect(tmp_path, env, "medium", 3, name="b.npz")
    c = _collect(tmp_path, env, "medium", 4, name="c.npz")
    assert a.read_bytes() == b.read_bytes(), "same seed must give a byte-identical file"
    assert a.read_bytes() != c.read_bytes()

    d, meta = load_dataset(a)
    n = 300
    obs_dim, act_dim = (15, 3) if env.startswith("Hopper") else (9, 1)
    assert d["observations"].shape == (n, obs_dim) and d["observations"].dtype == np.float32
    assert d["next_observations"].shape == (n, obs_dim) and d["next_observations"].dtype == np.float32
    assert d["actions"].shape == (n, act_dim) and d["actions"].dtype == np.float32
    assert d["rewards"].shape == (n,) and d["rewards"].dtype == np.float32
    assert d["terminals"].dtype == bool and d["timeouts"].dtype == bool
    assert np.abs(d["actions"]).max() <= 1.0
    assert not np.any(d["terminals"] & d["timeouts"])
    assert d["terminals"][-1] or d["timeouts"][-1]  # last row ends an episode (budget cut -> timeout)
    ends = d["terminals"] | d["timeouts"]
    # inside an episode the next observation is the following row's observation
    inner = np.where(~ends[:-1])[0]
    np.testing.assert_array_equal(d["next_observations"][inner], d["observations"][inner + 1])
    assert int(ends.sum()) == len(d["episode_returns"])
    np.testing.assert_allclose(d["episode_returns"].sum(), d["rewards"].astype(np.float64).sum(), rtol=1e-4)
    assert d["episode_lengths"].sum() == n
    for k in ("env_name", "kind", "seed", "behaviour", "ref_random_return", "ref_expert_return"):
        assert k in meta
    assert meta["env_name"] == env and meta["kind"] == "medium" and meta["seed"] == 3
    assert float(d["ref_expert_return"]) == meta["ref_expert_return"] > meta["ref_random_return"] == float(d["ref_random_return"])
    assert "perturbed" in meta["behaviour"]["policy"]


def test_medium_is_a_perturbed_policy_not_the_expert():
    from flowgate_client.collect import MEDIUM_PRESETS, Behaviour
    from flowgate_client.envs import expert_policy
    for env in ENVS:
        ex = expert_policy(env)
        beh = Behaviour("medium", env, 1000, np.random.default_rng(0))
        assert len(beh.members) == len(MEDIUM_PRESETS[env]["members"]) >= 2
        obs = np.random.default_rng(1).standard_normal((64, ex.obs_dim))
        for m, (alpha, seed) in zip(beh.members, MEDIUM_PRESETS[env]["members"]):
            # weights differ by about alpha * std(W), biases unchanged
            for i in (0, 2, 4):
                diff = (m.params[i] - ex.params[i]).std()
                assert 0.5 * alpha * ex.params[i].std() < diff < 1.5 * alpha * ex.params[i].std()
            for i in (1, 3, 5):
                np.testing.assert_array_equal(m.params[i], ex.params[i])
            # actions differ systematically (not zero-mean noise around the expert)
            assert np.abs(m(obs) - ex(obs)).mean() > 0.05
        # fixed for the dataset: same preset -> same weights
        again = Behaviour("medium", env, 1000, np.random.default_rng(5))
        np.testing.assert_array_equal(again.members[0].params[0], beh.members[0].params[0])


def test_medium_actions_differ_from_expert_on_dataset(tmp_path):
    from flowgate_client.datasets import load_dataset
    from flowgate_client.envs import expert_policy
    d, _ = load_dataset(_collect(tmp_path, "HopperBulletEnv", "medium", 0))
    ex = expert_policy("HopperBulletEnv")
    expert_a = np.clip(ex(d["observations"].astype(np.float64)), -1, 1)
    assert np.abs(expert_a - d["actions"]).mean() > 0.1


@pytest.mark.parametrize("kind", ["expert", "random", "medium-replay", "medium-expert"])
def test_other_kinds(tmp_path, kind):
    from flowgate_client.datasets import load_dataset
    from flowgate_client.envs import expert_policy
    d, meta = load_dataset(_collect(tmp_path, "HopperBulletEnv", kind, 1, steps=200))
    assert d["observations"].shape == (200, 15) and meta["kind"] == kind
    if kind == "expert":
        ex = expert_policy("HopperBulletEnv")
        np.testing.assert_allclose(d["actions"], np.clip(ex(d["observations"].astype(np.float64)), -1, 1), atol=1e-5)
    if kind == "random":
        assert d["actions"].std() > 0.5  # uniform in [-1, 1]: std ~0.58
    if kind == "medium-expert":
        assert "layout" in meta["behaviour"]


def test_compress_and_hdf5(tmp_path):
    from flowgate_client import collect
    out = tmp_path / "x.npz"
    assert collect.main(["--env", "InvertedDoublePendulumBulletEnv", "--kind", "random", "--steps", "500",
                         "--out", str(out), "--compress", "--quiet"]) == 0
    with np.load(out) as z:
        assert z["observations"].shape == (500, 9)
        json.loads(str(z["metadata"]))
    h5py = pytest.importorskip("h5py")
    out2 = tmp_path / "x.hdf5"
    assert collect.main(["--env", "InvertedDoublePendulumBulletEnv", "--kind", "random", "--steps", "100",
                         "--out", str(out2), "--quiet"]) == 0
    with h5py.File(out2) as f:
        assert f["observations"].shape == (100, 9) and "infos/episode_returns" in f
        assert f["metadata"].attrs["kind"] == "random"


def test_references_file_is_committed_and_sane():
    from flowgate_client.datasets import REFERENCES_PATH, normalized_score, reference_returns
    doc = json.loads(REFERENCES_PATH.read_text())
    assert "command" in doc
    from flowgate_client.envs import ENV_NAMES
    # every env the collector supports has references, so every dataset it writes can be normalised
    assert set(doc["envs"]) >= set(ENV_NAMES)
    for env in ENV_NAMES:
        rnd, exp = reference_returns(env)
        assert exp > rnd
        assert doc["envs"][env]["expert_episodes"] >= 10 and doc["envs"][env]["random_episodes"] >= 10
        assert abs(normalized_score(exp, env) - 100.0) < 1e-9 and abs(normalized_score(rnd, env)) < 1e-9


_POLICY_BYTES = """
import sys, numpy as np
from flowgate_client.envs import expert_policy
pol = expert_policy(sys.argv[1]).perturbed(0.2, 1)
obs = np.random.default_rng(0).normal(size=(500, pol.obs_dim)).astype(np.float32)
sys.stdout.write(np.stack([pol(o) for o in obs]).tobytes().hex())
"""


def _blas_kernels():
    """OpenBLAS kernels this CPU can run that sum in different orders."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return []
    return ["Prescott", "Haswell"] if " avx2" in flags and " fma" in flags else []


@pytest.mark.parametrize("env", ENVS)
def test_behaviour_policies_do_not_depend_on_the_cpus_blas_kernel(env):
    # Datasets must be the same file on every machine: numpy's OpenBLAS picks its kernel by CPU,
    # and with `@` the collected episodes differed between kernels (61 vs 66 episodes in 20k steps).
    import os
    import subprocess
    import sys
    kernels = _blas_kernels()
    if not kernels:
        pytest.skip("needs a CPU with AVX2 and FMA to run two OpenBLAS kernels")
    outs = []
    for k in kernels:
        env_vars = dict(os.environ, OPENBLAS_CORETYPE=k)
        outs.append(subprocess.run([sys.executable, "-c", _POLICY_BYTES, env], env=env_vars, check=True,
                                   capture_output=True, text=True).stdout)
    assert outs[0] == outs[1], f"actions differ between OpenBLAS kernels {kernels}"
