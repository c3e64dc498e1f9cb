"""Shared set-up for tests against the real Swift server: find the binary and the default model,
fail in CI when they are missing (skip elsewhere), start `flowgate serve` and wait for readiness."""
import contextlib
import os
import shlex
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from flowgate_client import Client, FlowgateError

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("FLOWGATE_BIN")
MODEL = os.environ.get("FLOWGATE_MODEL") or str(REPO / "models" / "hopper-medium")


def require_real_server(model: bool = True):
    """Call at module level: the binary (and, with ``model``, the model directory) must exist —
    a failure in CI, a skip elsewhere."""
    if os.environ.get("CI") and not (BIN and (not model or os.path.isdir(MODEL))):
        needs = f"FLOWGATE_BIN={BIN!r}" + (f" and model directory {MODEL}" if model else "")
        pytest.fail(f"CI: {needs} required", pytrace=False)
    if not BIN:
        pytest.skip("FLOWGATE_BIN is not set (path to the built flowgate binary)", allow_module_level=True)
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        pytest.skip(f"FLOWGATE_BIN={BIN} is not an executable file", allow_module_level=True)
    if model and not os.path.isdir(MODEL):
        pytest.skip(f"model directory {MODEL} does not exist (set FLOWGATE_MODEL)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(log_path, *serve_args, ready_timeout_s=60):
    """Starts `flowgate serve --endpoint tcp://127.0.0.1:<free port> *serve_args`, yields
    (endpoint, process, log path), and stops it with SIGTERM (SIGKILL after 15 s)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cmd = [BIN, "serve", "--endpoint", endpoint, *serve_args]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    try:
        with Client(endpoint, timeout_ms=1000, retries=0) as c:
            try:
                c.wait_ready(timeout_s=ready_timeout_s)
            except FlowgateError as e:
                pytest.fail(f"server not ready: {e}\ncommand: {shlex.join(cmd)}\nlog:\n"
                            f"{Path(log_path).read_text(errors='replace')[-4000:]}")
        yield endpoint, proc, Path(log_path)
    finally:
        stop(proc)


def stop(proc) -> int:
    """SIGTERM (the server drains and exits 0), SIGKILL after 15 s; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
