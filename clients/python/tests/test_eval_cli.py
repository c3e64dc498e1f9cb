"""`flowgate eval` end to end: the real binary serves the shipped model in-process and drives short
pybullet episodes through this Python; and it refuses a Python without pybullet up front."""
import json
import os
import subprocess
import sys

from conftest import requires_pybullet
from realserver import BIN, require_real_server
from realserver import MODEL as MODEL_DIR

require_real_server()


@requires_pybullet
def test_eval_short_run_env_from_provenance(tmp_path):
    out = tmp_path / "eval.json"
    r = subprocess.run([BIN, "eval", MODEL_DIR, "--episodes", "1", "--steps", "1,2", "--max-episode-steps", "15",
                        "--python", sys.executable, "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["env"] == "HopperBulletEnv"  # from provenance.dataset = hopper-medium.npz
    assert [run["steps"] for run in summary["runs"]] == [1, 2]
    for run in summary["runs"]:
        rep = json.loads(open(run["report"]).read())
        assert rep["total_steps"] == 15 and run["falls"] == 0  # every action came over the socket
        assert run["latency_ms"]["p50"] > 0 and run["score_mean"] is not None
    assert "| hopper-medium-K1 |" in r.stdout and "falls" in r.stdout


def test_eval_without_pybullet_names_what_to_install(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'pybullet'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    r = subprocess.run([BIN, "eval", MODEL_DIR, "--python", str(fake)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "pybullet" in r.stderr and "pip install" in r.stderr and "--python" in r.stderr


def test_eval_bad_flags_exit_nonzero(tmp_path):
    for bad in (["--steps", "1,0"], ["--episodes", "0"], ["--env", "humanoid"]):
        r = subprocess.run([BIN, "eval", MODEL_DIR, *bad], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "FLOWGATE_PYTHON": sys.executable})
        assert r.returncode != 0 and bad[0] in r.stderr, (bad, r.stderr)
