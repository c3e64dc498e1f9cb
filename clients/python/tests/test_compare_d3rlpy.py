"""scripts/compare_d3rlpy.py without d3rlpy: argument checks and the episode returns its IQL reward
scaler is built from (d3rlpy itself is not installed in CI)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from flowgate_client.datasets import save_npz

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "compare_d3rlpy.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_d3rlpy", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_episode_returns_split_at_terminals_and_timeouts():
    mod = _load()
    arrays = {"rewards": np.array([1, 2, 3, 4, 5, 6], np.float32),
              "terminals": np.array([0, 1, 0, 0, 0, 0], bool),
              "timeouts": np.array([0, 0, 0, 1, 0, 1], bool)}
    assert mod.episode_returns(arrays).tolist() == [3.0, 7.0, 11.0]


@pytest.mark.parametrize("bad, needle", [(["--algos", "cql"], "unknown cql"), (["--minutes", "0"], "positive"),
                                         (["--env", "walker"], "unknown env")])
def test_bad_arguments_exit_2(tmp_path, capsys, bad, needle):
    data = tmp_path / "d.npz"
    n = 4
    save_npz(data, {"observations": np.zeros((n, 15), np.float32), "actions": np.zeros((n, 3), np.float32),
                    "rewards": np.zeros(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": np.ones(n, bool),
                    "metadata": np.array(json.dumps({"env_name": "HopperBulletEnv"}))})
    with pytest.raises(SystemExit) as e:
        _load().main([str(data), *bad])
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_missing_dataset_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _load().main([str(tmp_path / "nope.npz")])
    assert e.value.code == 2 and "nope.npz does not exist" in capsys.readouterr().err
