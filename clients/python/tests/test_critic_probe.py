"""The numpy critic of flowgate_client.critic_probe against the real Swift server.

The server's reply carries Q of the action it chose; the probe must compute the same Q from the
model files, LayerNorm included (the shipped inverted-double-pendulum-medium critic has it), or
its diagnosis would describe some other function.
"""
from pathlib import Path

import numpy as np
import pytest

from flowgate_client import Client
from flowgate_client.critic_probe import Critic, main, probe
from flowgate_client.evaluate import Server
from realserver import BIN, require_real_server

REPO = Path(__file__).resolve().parents[3]
MODELS = [REPO / "models" / "inverted-double-pendulum-medium", REPO / "models" / "hopper-medium"]


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.name)
def test_numpy_critic_matches_the_served_q(model):
    require_real_server(model=False)
    critic = Critic(model)
    rng = np.random.default_rng(1)
    obs = critic.mean + 0.5 * critic.std * rng.standard_normal((64, len(critic.mean)))
    with Server(BIN, [str(model)]) as s, Client(s.endpoint, timeout_ms=20000) as c:
        r = c.act(obs, steps=4, candidates=4, check=False, seed=3)
    served_q = np.asarray(r.q, np.float64)
    ours = critic.q(obs, np.asarray(r.action, np.float64).reshape(len(obs), -1))
    # float32 on the server against float64 here: agreement to a few ulps of |Q| ≈ 60.
    np.testing.assert_allclose(ours, served_q, rtol=1e-4, atol=1e-3)


def test_probe_reports_bound_share_and_data_distance(tmp_path, capsys):
    model = MODELS[0]
    critic = Critic(model)
    rng = np.random.default_rng(0)
    obs = critic.mean + critic.std * rng.standard_normal((50, len(critic.mean)))
    r = probe(critic, obs, np.zeros((50, 1)))
    assert r["states"] == 50 and r["grid_points"] == 41
    assert 0.0 <= r["argmax_at_bound_share"] <= 1.0
    assert r["q_argmax_minus_q_data_mean"] >= 0.0  # the grid contains a = 0, so its max is at least Q(s, 0)
    # The command line: a dataset whose dimensions do not match is refused with a message.
    bad = tmp_path / "bad.npz"
    np.savez(bad, observations=np.zeros((5, 3), np.float32), actions=np.zeros((5, 1), np.float32))
    with pytest.raises(SystemExit, match="do not match"):
        main([str(model), "--dataset", str(bad)])
    assert main([str(model), "--states", "20", "--json"]) == 0
    assert '"argmax_at_bound_share"' in capsys.readouterr().out


def test_model_without_critic_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text('{"kind": "bc-flow", "networks": {"policy": {}}}')
    with pytest.raises(SystemExit, match="no critic"):
        Critic(tmp_path)
