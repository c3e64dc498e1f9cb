"""Server memory against the real binary (issue 12's RSS target; docs/benchmarks.md, "Memory at
the limit"): libxsmm's zero-filled registry tables are given back at start, its memory locks
released, the workers' workspaces stay small (forward-only policy and critic, shared transposed
weights), and the kernels still compute after libxsmm was initialised again.

Sizes, not times: anonymous memory is what the process itself wrote, so it does not depend on the
page cache or the machine's load. File-backed pages (the binary and libraries) are left out.
"""
import re
import time

import numpy as np
import pytest

from flowgate_client import Client
from realserver import MODEL, require_real_server, running_server

require_real_server()


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    log = tmp_path_factory.mktemp("memory") / "serve.log"
    with running_server(log, "--log-level", "debug", "--workers", "2", MODEL) as (endpoint, proc, log_path):
        yield endpoint, proc, log_path


def test_libxsmm_tables_released_and_unlocked(served):
    endpoint, proc, log_path = served
    text = log_path.read_text(errors="replace")
    m = re.search(r"libxsmm initialised; (\d+) KiB of its zero-filled tables released", text)
    assert m, f"no libxsmm release line in the log:\n{text[-2000:]}"
    # The descriptor keys alone are 131072 × 64 bytes = 8 MiB.
    assert int(m.group(1)) >= 8 * 1024, m.group(0)
    # libxsmm mlocks its tables (10.5 MB); released pages cannot stay locked.
    assert status_kib(proc.pid, "VmLck") <= 1024


def test_worker_workspaces_and_anonymous_memory_stay_small(served):
    endpoint, proc, log_path = served
    # Each worker logs its size when its warm-up ends, which may come after the first health reply.
    pattern = r"workspaces of model '[^']+' sized at ([0-9.]+) MB"
    deadline = time.monotonic() + 60
    while len(re.findall(pattern, log_path.read_text())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    sizes = [float(x) for x in re.findall(pattern, log_path.read_text())]
    assert len(sizes) >= 2, f"not every worker logged its workspaces: {sizes}"
    # 9.3 MB each before the forward-only networks (pass_rows 256, 64 samples per row).
    assert max(sizes) <= 5.5, sizes
    # Under load: 45 MB anonymous before this work, about 22 MB after.
    with Client(endpoint, timeout_ms=20000) as c:
        rng = np.random.default_rng(0)
        for _ in range(20):
            c.act(rng.normal(size=(64, 15)).astype(np.float32))
    assert status_kib(proc.pid, "RssAnon") <= 32 * 1024


def test_kernels_compute_after_reinitialisation(served):
    """The same request twice gives the same action (libxsmm's kernels, dispatched after its
    tables were reallocated and released, run and agree with themselves)."""
    endpoint, _, _ = served
    obs = np.linspace(-0.5, 0.5, 15, dtype=np.float32)
    with Client(endpoint, timeout_ms=20000) as c:
        a = c.act(obs, seed=7)
        b = c.act(obs, seed=7)
    assert np.all(np.isfinite(a.action))
    np.testing.assert_array_equal(a.action, b.action)
