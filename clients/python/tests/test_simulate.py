import json

import numpy as np

from conftest import requires_pybullet
from flowgate_client.fake_server import FakeServer

pytestmark = requires_pybullet


def test_expert_policy_one_short_episode(tmp_path, capsys):
    from flowgate_client import simulate
    out = tmp_path / "r.json"
    assert simulate.main(["--policy", "expert", "--episodes", "1", "--max-episode-steps", "100",
                          "--report", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["policy"] == "expert" and rep["total_steps"] == 100
    assert rep["per_episode"][0]["length"] == 100 and rep["return_mean"] > 100  # the expert hops forward
    assert rep["unreliable_share"] == 0.0 and rep["normalized_score_mean"] is not None
    assert "episode 0" in capsys.readouterr().out


def test_push_disturbance_runs():
    from flowgate_client import simulate
    args = simulate.build_parser().parse_args(["--policy", "expert", "--episodes", "1", "--max-episode-steps", "60",
                                               "--disturbance", "push", "--disturbance-scale", "50",
                                               "--push-prob", "0.2", "--seed", "3"])
    rep = simulate.run(args)
    assert rep["per_episode"][0]["pushes"] >= 1 and rep["disturbance"] == "push"


def test_server_mode_against_fake_server(tmp_path):
    from flowgate_client import simulate
    with FakeServer(obs_dim=15, act_dim=3, threshold=0.5) as s:
        out = tmp_path / "srv.json"
        assert simulate.main(["--endpoint", s.endpoint, "--episodes", "2", "--max-episode-steps", "25",
                              "--disturbance", "obs-noise", "--disturbance-scale", "2.0", "--candidates", "4",
                              "--server-seed", "10", "--report", str(out), "--keep-latencies"]) == 0
        rep = json.loads(out.read_text())
        n = rep["total_steps"]
        assert s.acts == n  # one act per env step
        assert 0 < n <= 50 and len(rep["latencies_ms"]) == n
        lat = rep["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        # noise of std 2 makes mean(obs^2) large -> the fake server flags most steps unreliable
        assert rep["unreliable_share"] > 0.5
        assert np.isfinite(rep["return_mean"])
