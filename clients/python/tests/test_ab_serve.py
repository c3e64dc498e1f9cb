"""scripts/ab_serve.py: variant parsing, and a real two-variant run against the built binary."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from realserver import BIN, MODEL, require_real_server

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "ab_serve.py"


def _load():
    spec = importlib.util.spec_from_file_location("ab_serve", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_variant_splits_into_environment_and_serve_flags():
    mod = _load()
    assert mod.parse_variant("default=") == ("default", {}, [])
    assert mod.parse_variant("ob=FLOWGATE_KERNELS=openblas --split-batches false") == (
        "ob", {"FLOWGATE_KERNELS": "openblas"}, ["--split-batches", "false"])
    # A flag with '=' is a flag, not an environment variable.
    assert mod.parse_variant("w=--max-delay-us=0") == ("w", {}, ["--max-delay-us=0"])
    with pytest.raises(ValueError, match="not NAME=SPEC"):
        mod.parse_variant("no-equals-sign")


def test_two_variants_side_by_side(tmp_path):
    require_real_server()
    out = tmp_path / "ab.json"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--flowgate", BIN, "--model", MODEL, "--rounds", "1", "--concurrency", "1",
         "--check-modes", "off", "--requests", "20", "--duration", "2", "--json", str(out),
         "default=", "unsplit=--split-batches false"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| off | 1 | 4 |" in r.stdout
    report = json.loads(out.read_text())
    assert {m["variant"] for m in report["medians"]} == {"default", "unsplit"}
    assert all(x["errors"] == 0 and x["rps"] > 0 for x in report["runs"])


def test_duplicate_names_are_refused():
    r = subprocess.run([sys.executable, str(SCRIPT), "a=", "a=--workers 1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "variant names must differ" in r.stderr
