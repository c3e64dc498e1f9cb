"""The PyTorch reference peer (flowgate_client.reference_peer) against the real flowgate server:
same model, same observations, same seeds → same actions, q, E_min and reliable flags.

Tolerances (float32 throughout, but OpenBLAS and PyTorch sum the matrix products in different
orders and use different sin/cos/exp kernels, so values differ in the last bits and those
differences pass through 4 Euler steps, an argmax and 20 Langevin steps):
- action: 1e-4 absolute (measured ≤ 2e-6); q: 1e-4 + 2e-6·|q| (q ≈ 58 here; measured ≤ 3e-5);
- E_min: 1e-3 absolute (measured ≤ 2e-5: 20 Langevin steps carry last-bit differences along);
- reliable: equal except where E_min lies within 1e-3 of the threshold.
An argmax that flips between two candidates whose q differ by less than the rounding would show
up as a different action; the test allows none (it never happened on these draws).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flowgate_client import Client
from realserver import MODEL, free_port, require_real_server, running_server, stop

require_real_server()
if os.environ.get("CI"):
    import torch  # noqa: F401  (CI installs clients/python/requirements-peer.txt: a missing torch is a failure)
else:
    pytest.importorskip("torch")

ACTION_TOL, Q_TOL, E_TOL = 1e-4, 1e-4, 1e-3


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("peer")
    peer_ep = f"tcp://127.0.0.1:{free_port()}"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(tmp / "peer.log", "wb") as log:
        peer = subprocess.Popen(
            [sys.executable, "-m", "flowgate_client.reference_peer", "--model", MODEL, "--bind", peer_ep, "--threads", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with running_server(tmp / "serve.log", MODEL) as (flowgate_ep, _, _):
            with Client(peer_ep, timeout_ms=1000, retries=0) as c:
                try:
                    c.wait_ready(timeout_s=120)
                except Exception as e:  # noqa: BLE001
                    pytest.fail(f"peer not ready: {e}\n{(tmp / 'peer.log').read_text(errors='replace')[-3000:]}")
            yield flowgate_ep, peer_ep
    finally:
        stop(peer)


def observations(n, seed):
    """Observations near hopper-medium's data (mean ± 0.5 std), from the manifest."""
    import json
    norm = json.load(open(os.path.join(MODEL, "manifest.json")))["normalization"]
    mean, std = np.array(norm["observationMean"]), np.array(norm["observationStd"])
    return mean + 0.5 * std * np.random.default_rng(seed).standard_normal((n, len(mean)))


def both(endpoints, obs, **kw):
    out = []
    for ep in endpoints:
        with Client(ep, timeout_ms=60_000, retries=0) as c:
            out.append(c.act(obs, **kw))
    return out


def assert_same(f, p, check):
    np.testing.assert_allclose(p.action, f.action, atol=ACTION_TOL, rtol=0)
    np.testing.assert_allclose(p.q, f.q, atol=Q_TOL, rtol=2e-6)
    if not check:
        assert np.all(np.isnan(f.energy)) and np.all(np.isnan(p.energy))
        assert not np.any(f.reliable) and not np.any(p.reliable)
        return
    np.testing.assert_allclose(p.energy, f.energy, atol=E_TOL, rtol=0)
    np.testing.assert_allclose(p.confidence, f.confidence, atol=1e-3, rtol=0)
    near = np.abs(np.asarray(f.energy) - f.threshold) < E_TOL
    assert np.array_equal(np.asarray(p.reliable)[~near], np.asarray(f.reliable)[~near])


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("check", [True, False])
def test_single_observations(endpoints, steps, check):
    obs = observations(6, steps)
    for i, o in enumerate(obs):
        f, p = both(endpoints, o, steps=steps, check=check, seed=1000 * steps + i)
        assert_same(f, p, check)


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize("check", [True, False])
def test_batches(endpoints, steps, check):
    obs = observations(24, 100 + steps)
    f, p = both(endpoints, obs, steps=steps, check=check, seed=2**64 - 5)  # seeds wrap around 2^64
    assert f.action.shape == p.action.shape == (24, 3)
    assert_same(f, p, check)


def test_batch_row_equals_single_request(endpoints):
    """Observation i of a batch with seed S is the single request with seed S + i, on the peer too."""
    obs = observations(5, 7)
    _, batch = both(endpoints, obs, seed=42)
    _, single = both(endpoints, obs[3], seed=45)
    np.testing.assert_allclose(batch.action[3], single.action, atol=1e-5)


def test_info_and_replies_have_flowgates_keys(endpoints):
    infos, replies = [], []
    for ep in endpoints:
        with Client(ep, timeout_ms=10_000) as c:
            infos.append(c.info())
            replies.append(c.act(observations(1, 0)[0], seed=1).raw)
    assert set(infos[0]) == set(infos[1])
    assert set(infos[0]["models"][0]) == set(infos[1]["models"][0])
    assert infos[0]["models"][0]["defaults"] == infos[1]["models"][0]["defaults"]
    assert set(replies[0]) == set(replies[1])
    assert set(replies[0]["timing"]) == set(replies[1]["timing"])
    if "risk" in replies[0]:  # the shipped models carry a risk calibration: same q, same risk
        assert abs(replies[0]["risk"] - replies[1]["risk"]) <= 1e-6 + 1e-4 * replies[0]["risk"]
