"""Ctrl-C in `flowgate train`: a checkpoint, exit status 130, and a printed resume command that
works as printed (it must carry the step, energy and config flags the run was started with)."""
import json
import shlex
import signal
import subprocess
import time

import numpy as np

from realserver import BIN, require_real_server

require_real_server(model=False)


def _tiny_dataset(path, n=256, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, 3)).astype(np.float32)
    act = np.clip(0.5 * obs[:, :2] + 0.1 * rng.standard_normal((n, 2)), -1, 1).astype(np.float32)
    np.savez(path, observations=obs, actions=act, rewards=-np.abs(act[:, 0] - 0.5 * obs[:, 0]).astype(np.float32),
             next_observations=(0.9 * obs).astype(np.float32), terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool))


def test_interrupted_run_resumes_with_the_printed_command(tmp_path):
    dataset = tmp_path / "tiny.npz"
    _tiny_dataset(dataset)
    config = tmp_path / "small nets.json"  # a space: the printed command must quote it
    config.write_text(json.dumps({"policy": {"hiddenDims": [8]}, "critic": {"hiddenDims": [8]}}))
    run_dir = tmp_path / "run"
    out = tmp_path / "model"
    cmd = [BIN, "train", "--dataset", str(dataset), "--out", str(out), "--run-dir", str(run_dir),
           "--config", str(config), "--batch-size", "8", "--behaviour-steps", "20000000", "--critic-steps", "3",
           "--qipo-steps", "3", "--log-every", "50", "--energy", "--energy-steps", "2",
           "--energy-autoencoder-steps", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "train.jsonl"
    for _ in range(1200):  # until the behaviour phase has logged (bounded; no timing assertion)
        if log.exists() and log.read_text().count("\n") >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert (run_dir / "checkpoint.safetensors").exists(), err
    line = next(l for l in err.splitlines() if "continue with: " in l)
    printed = shlex.split(line.split("continue with: ", 1)[1])
    assert printed[0] == BIN and printed[-1] == "--resume", printed
    for flag in ("--energy", "--energy-steps", "--qipo-steps", "--config", "--behaviour-steps"):
        assert flag in printed, (flag, printed)

    # The printed command, as printed, is accepted (same config and phases). The behaviour phase
    # is too long to finish here: interrupt it again once it has resumed and logged further.
    resumed = subprocess.Popen(printed, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines_before = log.read_text().count("\n")
    for _ in range(1200):
        if log.read_text().count("\n") > lines_before or resumed.poll() is not None:
            break
        time.sleep(0.05)
    assert resumed.poll() is None, resumed.communicate()
    resumed.send_signal(signal.SIGTERM)
    _, err2 = resumed.communicate(timeout=120)
    assert resumed.returncode == 130, err2
    assert "resumed from" in err2 and "different config" not in err2, err2


def test_resume_with_other_flags_names_the_setting(tmp_path):
    dataset = tmp_path / "tiny.npz"
    _tiny_dataset(dataset)
    base = [BIN, "train", "--dataset", str(dataset), "--out", str(tmp_path / "m"), "--run-dir", str(tmp_path / "run"),
            "--batch-size", "8", "--behaviour-steps", "20000000", "--critic-steps", "3", "--qipo-steps", "3",
            "--log-every", "50"]
    proc = subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "train.jsonl"
    for _ in range(1200):
        if log.exists() and log.read_text().count("\n") >= 1 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    changed = [a if a != "3" else "4" for a in base] + ["--resume"]  # critic and QIPO steps 3 -> 4
    r = subprocess.run(changed, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "criticTraining.steps: 3 in the checkpoint, 4 in this run" in r.stderr, r.stderr
    assert "qipo.steps: 3 in the checkpoint, 4 in this run" in r.stderr, r.stderr
