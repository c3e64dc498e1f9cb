"""The reference peer's staged proposals (no server needed): rows whose first P1 proposals are at
or below the stage exit report their first stage's E_min, the others E_min over all P, and every
flag equals the flag from scoring all P proposals, as flowgate's EnergySampler does."""
import copy
import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("CI"):
    import torch  # noqa: F401  (CI installs clients/python/requirements-peer.txt)
else:
    pytest.importorskip("torch")

from flowgate_client.reference_peer import RNG, Model  # noqa: E402

MODEL = os.environ.get("FLOWGATE_MODEL") or str(Path(__file__).resolve().parents[3] / "models" / "hopper-medium")


@pytest.fixture(scope="module")
def staged():
    m = Model(MODEL)
    if m.energy is None:
        pytest.skip(f"{MODEL} has no energy model")
    m.proposals, m.first_proposals, m.langevin = 384, 128, 0
    return m


def rows(model, n, seed):
    """Held-out-like rows (observations near the data, the policy's actions) and random actions."""
    rng = np.random.default_rng(seed)
    obs = (model.mean + 0.5 * model.std * rng.standard_normal((n, model.od))).astype(np.float32)
    seeds = np.arange(n, dtype=np.uint64) + np.uint64(7)
    out = model.act(obs, seeds, steps=4, candidates=16, samples=1, check=False)
    chosen = (out["action"] - model.low) / (model.high - model.low) * 2 - 1
    random = rng.uniform(-1, 1, (n, model.ad))
    return obs, seeds, np.concatenate([chosen, random]).astype(np.float32)


def e_min(model, obs, acts, seeds):
    """E_min of each (observation, action) row, observation i paired with rows i and n + i."""
    import torch
    obs_n = torch.from_numpy(((obs - model.mean) / model.std).astype(np.float32))
    return model.e_min(torch.cat([obs_n, obs_n]), torch.from_numpy(acts), np.concatenate([seeds, seeds]), 1, RNG)


def test_staged_flags_equal_all_proposals_and_stopped_rows_report_first_stage(staged):
    obs, seeds, acts = rows(staged, 48, 0)
    full_model = copy.copy(staged)
    full_model.first_proposals = 0
    first_model = copy.copy(staged)
    first_model.proposals, first_model.first_proposals = 128, 0

    e_staged = e_min(staged, obs, acts, seeds)
    e_full = e_min(full_model, obs, acts, seeds)
    e_first = e_min(first_model, obs, acts, seeds)  # the same first 128 draws of each row

    exit_ = staged.stage_exit
    stopped = e_first <= exit_
    assert 0 < stopped.sum() < len(stopped), "the rows must include both stopped and continuing ones"
    np.testing.assert_array_equal(e_staged[stopped], e_first[stopped])
    np.testing.assert_allclose(e_staged[~stopped], e_full[~stopped], atol=1e-5, rtol=0)
    assert np.array_equal(e_staged <= staged.threshold, e_full <= staged.threshold)
    assert np.all(e_full <= e_first + 1e-6)  # more proposals never raise E_min


def test_stage_exit_never_above_the_threshold(staged):
    assert staged.stage_exit is not None and staged.stage_exit <= staged.threshold
