"""Errors a command finds while running (a bad config file) read as one message naming the problem,
with a usage-error status, and never the top-level usage (the real binary)."""
import subprocess

import numpy as np

from flowgate_client.datasets import save_npz
from realserver import BIN, MODEL, require_real_server

require_real_server()


def run(*args, cwd):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)


def tiny_dataset(path):
    rng = np.random.default_rng(0)
    n = 64
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    save_npz(path, {"observations": obs, "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                    "rewards": np.zeros(n, np.float32), "next_observations": obs,
                    "terminals": np.zeros(n, bool), "timeouts": np.arange(n) % 16 == 15})


def test_train_config_with_a_wrong_type_names_the_key(tmp_path):
    tiny_dataset(tmp_path / "d.npz")
    (tmp_path / "bad.json").write_text('{"criticTraining": {"steps": "many"}}')
    r = run("train", "--dataset", "d.npz", "--out", "m", "--config", "bad.json", cwd=tmp_path)
    assert r.returncode == 64, r.stderr
    assert "Error: --config: bad.json: criticTraining.steps: Expected to decode Int" in r.stderr, r.stderr
    assert "DecodingError" not in r.stderr
    assert "Usage: flowgate <subcommand>" not in r.stderr and "Usage:" not in r.stderr
    assert not (tmp_path / "m").exists()


def test_serve_config_with_an_unknown_key_names_it(tmp_path):
    (tmp_path / "bad.json").write_text('{"workers": 2, "wokers": 2}')
    r = run("serve", MODEL, "--config", "bad.json", cwd=tmp_path)
    assert r.returncode == 64, r.stderr
    assert "unknown server config key 'wokers'" in r.stderr, r.stderr
    assert "DecodingError" not in r.stderr and "Usage: flowgate <subcommand>" not in r.stderr
