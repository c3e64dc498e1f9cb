"""scripts/candidate_spread.py against the real server and the shipped hopper-medium model: the
numbers docs/training.md's "Why the score falls as K grows" rests on."""
import importlib.util
import json
from pathlib import Path

import numpy as np

from flowgate_client.datasets import save_npz
from realserver import BIN, require_real_server

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "candidate_spread.py"
MODEL = REPO / "models" / "hopper-medium"


def _load():
    spec = importlib.util.spec_from_file_location("candidate_spread", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_spread_and_selection_gain_per_k(tmp_path, capsys):
    require_real_server(model=False)
    manifest = json.loads((MODEL / "manifest.json").read_text())
    mean = np.asarray(manifest["normalization"]["observationMean"])
    std = np.asarray(manifest["normalization"]["observationStd"])
    rng = np.random.default_rng(0)
    n = 64
    obs = (mean + 0.3 * std * rng.standard_normal((n, len(mean)))).astype(np.float32)
    acts = rng.uniform(-1, 1, (n, manifest["actionDim"])).astype(np.float32)
    data = tmp_path / "d.npz"
    save_npz(data, {"observations": obs, "actions": acts})
    out = tmp_path / "spread.json"
    assert _load().main([str(MODEL), str(data), "--states", "32", "--steps", "1,4", "--bin", BIN, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["steps"] for r in rows] == [1, 4]
    for r in rows:
        # 16 differently seeded samples differ, and the critic's best of 16 beats their average.
        assert 0 < r["sample_std"] < 1
        assert r["q_gain"] > 0
        assert 0 < r["abs_to_data"] < 2
    assert "| 4 |" in capsys.readouterr().out
