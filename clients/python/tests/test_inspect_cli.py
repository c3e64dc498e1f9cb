"""`flowgate inspect` on the shipped model and on broken copies of it (the real binary)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from realserver import BIN, require_real_server
from realserver import MODEL as MODEL_DIR

require_real_server()
MODEL = Path(MODEL_DIR)


def inspect(*args):
    return subprocess.run([BIN, "inspect", *map(str, args)], capture_output=True, text=True, timeout=60)


def test_valid_model_summary_and_json():
    r = inspect(MODEL)
    assert r.returncode == 0, r.stderr
    assert "OK: all" in r.stdout and "policy.safetensors" in r.stdout
    j = inspect(MODEL, "--json")
    assert j.returncode == 0
    summary = json.loads(j.stdout)
    assert summary["manifest"]["observationDim"] == 15
    assert summary["totalParameterCount"] > 0


@pytest.mark.parametrize("damage", ["truncate", "no-manifest", "bad-json", "nan"])
def test_broken_model_is_rejected_with_a_named_file(tmp_path, damage):
    broken = tmp_path / "model"
    shutil.copytree(MODEL, broken)
    if damage == "truncate":
        target = broken / "policy.safetensors"
        target.write_bytes(target.read_bytes()[:1000])
        expect = "policy.safetensors"
    elif damage == "no-manifest":
        (broken / "manifest.json").unlink()
        expect = "manifest.json"
    elif damage == "bad-json":
        (broken / "manifest.json").write_text("{ not json")
        expect = "manifest.json"
    else:
        import numpy as np
        from safetensors.numpy import load_file, save_file
        t = load_file(str(broken / "critic.safetensors")) if (broken / "critic.safetensors").exists() else load_file(str(broken / "policy.safetensors"))
        name = sorted(t)[0]
        t[name] = t[name].copy()
        t[name].flat[0] = np.nan
        out = broken / ("critic.safetensors" if (broken / "critic.safetensors").exists() else "policy.safetensors")
        save_file(t, str(out))
        expect = out.name
    r = inspect(broken)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert expect in r.stderr and "error" in r.stderr.lower()
    assert "Fatal error" not in r.stderr  # a message, not a crash
