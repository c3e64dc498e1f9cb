"""flowgate_client.evaluate against a running server (--endpoint, what `flowgate eval` uses): falls,
the dataset average and the summary JSON, with the fake server and short pybullet episodes."""
import json

import numpy as np
import pytest

from conftest import requires_pybullet
from flowgate_client import evaluate
from flowgate_client.datasets import save_npz
from flowgate_client.fake_server import FakeServer

pytestmark = requires_pybullet


def _model_dir(tmp_path, name="fake"):
    d = tmp_path / "model"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"name": name}))
    return d


def test_endpoint_mode_reports_falls_latency_and_dataset_average(tmp_path, capsys):
    model = _model_dir(tmp_path)
    dataset = tmp_path / "hopper-medium.npz"
    save_npz(dataset, {"rewards": np.zeros(3, np.float32),
                       "metadata": np.array(json.dumps({"normalized_score_mean": 38.3}))})
    out = tmp_path / "eval.json"
    with FakeServer(obs_dim=15, act_dim=3, model="fake") as s:
        assert evaluate.main(["--endpoint", s.endpoint, "--env", "hopper", "--model", str(model),
                              "--episodes", "2", "--steps", "1,2", "--max-episode-steps", "40",
                              "--dataset", str(dataset), "--out", str(out)]) == 0
        summary = json.loads(out.read_text())
        # one act per env step, plus one untimed warm-up act
        assert s.acts == 1 + sum(json.loads(open(r["report"]).read())["total_steps"] for r in summary["runs"])
    assert summary["env"] == "HopperBulletEnv" and summary["max_episode_steps"] == 40
    assert summary["dataset_average"] == pytest.approx(38.3)
    assert [r["steps"] for r in summary["runs"]] == [1, 2]
    for r in summary["runs"]:
        rep = json.loads(open(r["report"]).read())
        fell = [e for e in rep["per_episode"] if e["fell"]]
        # a fall is a termination before the time limit; an episode cut at 40 steps is not one
        assert all(e["length"] < 40 for e in fell)
        assert all(e["length"] == 40 for e in rep["per_episode"] if not e["fell"])
        assert r["falls"] == rep["falls"] == len(fell) and r["episodes"] == 2
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    text = capsys.readouterr().out
    assert "| fake-K1 |" in text and "| falls |" in text and "dataset average (hopper-medium.npz): 38.3" in text


def test_falls_count_terminated_episodes(monkeypatch, tmp_path):
    """The fake policy is not a hopper: with a long enough limit it falls in every episode."""
    from flowgate_client import simulate
    with FakeServer(obs_dim=15, act_dim=3) as s:
        args = simulate.build_parser().parse_args(["--endpoint", s.endpoint, "--episodes", "2",
                                                   "--max-episode-steps", "400"])
        rep = simulate.run(args)
    assert rep["falls"] == 2 and all(e["fell"] and e["length"] < 400 for e in rep["per_episode"])


@pytest.mark.parametrize("bad", [["--steps", "1,0"], ["--steps", "x"], ["--episodes", "0"], ["--env", "walker"], ["--steps", ""]])
def test_bad_arguments_exit_2(tmp_path, bad, capsys):
    model = _model_dir(tmp_path)
    argv = ["--endpoint", "tcp://127.0.0.1:1", "--env", "hopper", "--model", str(model), "--out", str(tmp_path / "e.json")]
    with pytest.raises(SystemExit) as e:
        evaluate.main(argv + bad)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert bad[0] in err or "unknown env" in err


def test_empty_steps_runs_only_the_sweep(tmp_path):
    """`--steps ''` with --sweep (the disturbance-sweep command of docs/reliability.md): no K run, one run per scale."""
    model = _model_dir(tmp_path)
    out = tmp_path / "sweep.json"
    with FakeServer(obs_dim=15, act_dim=3, model="fake") as s:
        assert evaluate.main(["--endpoint", s.endpoint, "--env", "hopper", "--model", str(model), "--steps", "",
                              "--sweep", "obs-noise:0,0.1", "--sweep-steps", "2", "--episodes", "1",
                              "--max-episode-steps", "10", "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [(r["disturbance"], r["scale"]) for r in runs] == [("obs-noise", 0.0), ("obs-noise", 0.1)]
