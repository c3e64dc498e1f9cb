"""Scale-out on real parts: `flowgate broker` before 3 `flowgate serve --connect` replicas.

One replica is killed with SIGKILL while client threads keep sending; the clients retry the Lazy
Pirate way (time out, close and reopen the REQ socket, resend the same id) and every request id
must end with an ok answer.  With a DEALER backend there is no per-request state at the broker: a
request queued towards (or being computed by) the killed replica is simply lost, which is why the
clients retry and why the test also checks that the kill really cost some first attempts (the
victim is frozen with SIGSTOP for up to a second before SIGKILL, so it always holds requests).

Runs when env FLOWGATE_BIN points at the built `flowgate` binary and the model directory exists
(env FLOWGATE_MODEL, else the repo's models/hopper-medium), like test_server_integration.py.
Loopback only; every wait is bounded.  `pytest -s` prints the measured counts.
"""
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from flowgate_client import Client, FlowgateError, Monitor

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("FLOWGATE_BIN")
MODEL = os.environ.get("FLOWGATE_MODEL") or str(REPO / "models" / "hopper-medium")

if os.environ.get("CI") and not (BIN and os.path.isdir(MODEL)):
    pytest.fail(f"CI: FLOWGATE_BIN={BIN!r} and model directory {MODEL} are required", pytrace=False)
if not BIN:
    pytest.skip("FLOWGATE_BIN is not set (path to the built flowgate binary)", allow_module_level=True)
if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
    pytest.skip(f"FLOWGATE_BIN={BIN} is not an executable file", allow_module_level=True)
if not os.path.isdir(MODEL):
    pytest.skip(f"model directory {MODEL} does not exist (set FLOWGATE_MODEL)", allow_module_level=True)

REPLICAS = 3
CLIENTS = 8
REQUESTS_PER_CLIENT = 40
KILL_AFTER_ANSWERS = 80          # kill once this many answers arrived (load is running by then)
TIMEOUT_MS = 2000                # per attempt; generous for a loaded 2-core machine
RETRIES = 10                     # bounded: at most 11 attempts of 2 s per request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


@pytest.fixture
def cluster(tmp_path):
    """Broker + 3 replicas, each replica with its own telemetry PUB endpoint."""
    frontend = f"tcp://127.0.0.1:{free_port()}"
    backend = f"tcp://127.0.0.1:{free_port()}"
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []

    def spawn(name: str, cmd: list[str]) -> subprocess.Popen:
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as f:
            p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        procs.append(p)
        logs.append(log)
        return p

    broker = spawn("broker", [BIN, "broker", "--frontend", frontend, "--backend", backend])
    replicas, pubs = [], []
    for i in range(REPLICAS):
        pub = f"tcp://127.0.0.1:{free_port()}"
        pubs.append(pub)
        replicas.append(spawn(f"replica{i}", [BIN, "serve", "--connect", "--endpoint", backend, "--pub", pub,
                                               "--workers", "1", MODEL]))
    try:
        with Client(frontend, timeout_ms=1000, retries=0) as c:
            try:
                c.wait_ready(timeout_s=60)
            except FlowgateError as e:
                pytest.fail(f"cluster not ready: {e}\n" + "\n".join(f"--- {l.name}\n{tail(l)}" for l in logs))
        yield {"frontend": frontend, "backend": backend, "broker": broker, "replicas": replicas,
               "pubs": pubs, "logs": logs}
    finally:
        for p in reversed(procs):
            stop(p)


class Counter:
    """Telemetry events seen from one replica's PUB socket (one per answered observation)."""

    def __init__(self, endpoint: str, ctx: zmq.Context):
        self.count = 0
        self._stop = threading.Event()
        self._mon = Monitor(endpoint, timeout_ms=100, context=ctx)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            if self._mon.recv(timeout_ms=100) is not None:
                self.count += 1

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._mon.close()


def test_replica_killed_under_load_every_request_answered(cluster):
    # The broker spreads over replicas that are connected; give the other two a moment to join
    # (wait_ready proved at least one is), then check all three answer through it.
    ctx = zmq.Context()
    counters = [Counter(p, ctx) for p in cluster["pubs"]]
    time.sleep(0.5)  # SUB sockets need a moment to subscribe before events are published
    obs_dim = None
    with Client(cluster["frontend"], timeout_ms=TIMEOUT_MS, retries=RETRIES, context=ctx) as c:
        obs_dim = c.info()["models"][0]["obs_dim"]
        end = time.monotonic() + 30
        while min(k.count for k in counters) == 0 and time.monotonic() < end:
            c.act(np.zeros(obs_dim), seed=1)
    assert min(k.count for k in counters) > 0, (
        f"not every replica got requests through the broker: telemetry counts {[k.count for k in counters]}")

    rng = np.random.default_rng(0)
    lock = threading.Lock()
    answered: dict[str, np.ndarray] = {}
    failures: list[str] = []
    attempts = [0]
    retries = [0]
    victim = cluster["replicas"][REPLICAS - 1]
    killed_at = {}

    all_obs = rng.standard_normal((CLIENTS, REQUESTS_PER_CLIENT, obs_dim))  # drawn before the threads start

    def worker(t: int):
        obs = all_obs[t]
        with Client(cluster["frontend"], timeout_ms=TIMEOUT_MS, retries=RETRIES, context=ctx) as c:
            for i in range(REQUESTS_PER_CLIENT):
                rid = f"c{t}-r{i}"
                before = c.reconnects
                try:
                    r = c.act(obs[i], seed=i, id=rid)
                except FlowgateError as e:  # timeout after every retry, or an error reply
                    with lock:
                        failures.append(f"{rid}: {e}")
                    continue
                finally:
                    with lock:
                        retries[0] += c.reconnects - before
                        attempts[0] += 1 + c.reconnects - before
                with lock:
                    if r.id != rid:
                        failures.append(f"{rid}: reply carries id {r.id!r}")
                    else:
                        answered[rid] = r.action

    threads = []
    for t in range(CLIENTS):
        threads.append(threading.Thread(target=worker, args=(t,), daemon=True))
    for th in threads:
        th.start()
    end = time.monotonic() + 120
    while time.monotonic() < end:
        with lock:
            n = len(answered)
        if n >= KILL_AFTER_ANSWERS:
            break
        time.sleep(0.01)
    assert victim.poll() is None, "the replica to kill has already exited:\n" + tail(cluster["logs"][-1])
    # Freeze the victim first (SIGSTOP) so the broker deals it a few requests it never answers,
    # then kill it: a killed replica always takes work with it. Without the freeze the kill may
    # land while it holds no request (clients here are slower than the replicas) and prove nothing.
    victim.send_signal(signal.SIGSTOP)
    freeze_end = time.monotonic() + 1.0
    while time.monotonic() < freeze_end:
        with lock:
            if len(answered) >= n + 2 * CLIENTS:
                break
        time.sleep(0.01)
    per_replica_before = [k.count for k in counters]
    victim.send_signal(signal.SIGKILL)
    with lock:
        killed_at["answers"] = len(answered)
    victim.wait(timeout=10)
    # Bounded: each request makes at most RETRIES + 1 attempts of TIMEOUT_MS.
    join_end = time.monotonic() + (RETRIES + 1) * TIMEOUT_MS / 1000 * REQUESTS_PER_CLIENT + 10
    for th in threads:
        th.join(timeout=max(0.0, join_end - time.monotonic()))
    assert not any(th.is_alive() for th in threads), "client threads did not finish in their bounded time"
    for k in counters:
        k.close()
    ctx.destroy(linger=0)

    total = CLIENTS * REQUESTS_PER_CLIENT
    summary = (f"replicas {REPLICAS}, clients {CLIENTS}, requests {total}, answered {len(answered)}, "
               f"attempts sent {attempts[0]}, retries (timeouts) {retries[0]}, killed after "
               f"{killed_at['answers']} answers, telemetry per replica before kill {per_replica_before}, "
               f"at end {[k.count for k in counters]}, failures {len(failures)}")
    print("\n" + summary)
    assert not failures, summary + "\n" + "\n".join(failures[:20])
    assert len(answered) == total, summary
    assert all(a.shape[-1] > 0 and np.all(np.isfinite(a)) for a in answered.values())
    # The kill must have cost something, or the test proved nothing about retries: requests dealt
    # to the killed replica were lost and answered only on a retry.
    assert retries[0] > 0, "no request needed a retry: the kill did not hit in-flight work\n" + summary
    # The survivors carried the rest of the run.
    assert cluster["broker"].poll() is None, "the broker exited:\n" + tail(cluster["logs"][0])
    assert all(p.poll() is None for p in cluster["replicas"][:-1])


def test_broker_rejects_bad_endpoints():
    """Bad input: a clear message naming what is wrong and a non-zero exit."""
    r = subprocess.run([BIN, "broker", "--frontend", "localhost:5555"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "frontend endpoint 'localhost:5555' is not a ZeroMQ endpoint" in r.stderr, r.stderr
    port = free_port()
    same = f"tcp://127.0.0.1:{port}"
    r = subprocess.run([BIN, "broker", "--frontend", same, "--backend", same], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    assert "frontend and backend are the same endpoint" in r.stderr, r.stderr


def test_broker_reports_address_in_use_and_stops_on_sigterm():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        r = subprocess.run([BIN, "broker", "--frontend", busy, "--backend", f"tcp://127.0.0.1:{free_port()}"],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"zmq_bind({busy})" in r.stderr and "Address already in use" in r.stderr, r.stderr

    p = subprocess.Popen([BIN, "broker", "--frontend", f"tcp://127.0.0.1:{free_port()}",
                          "--backend", f"tcp://127.0.0.1:{free_port()}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        assert p.poll() is None, p.stdout.read()
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out
    assert "broker stopped" in out, out


def test_serve_connect_rejects_wildcard_endpoint():
    r = subprocess.run([BIN, "serve", "--connect", "--endpoint", "tcp://127.0.0.1:*", "--demo"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "has a wildcard, but with connect" in r.stderr, r.stderr


def test_broker_curve_admits_only_allowlisted_clients(tmp_path):
    """CURVE at the broker's frontend: allowlisted key answered, unlisted and plaintext not."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("broker", "alice", "mallory"):
        r = subprocess.run([BIN, "keygen", str(keys / name)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    allow = keys / "allow"
    allow.mkdir()
    (allow / "alice.pub").write_bytes((keys / "alice.pub").read_bytes())
    frontend = f"tcp://127.0.0.1:{free_port()}"
    backend = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path / "broker.log"
    with open(log, "wb") as f:
        broker = subprocess.Popen([BIN, "broker", "--frontend", frontend, "--backend", backend,
                                   "--curve-secret-key", str(keys / "broker.secret"), "--curve-allow", str(allow)],
                                  stdout=f, stderr=subprocess.STDOUT)
    replica = subprocess.Popen([BIN, "serve", "--demo", "--workers", "1", "--connect", "--endpoint", backend],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    alice = {"server_key": keys / "broker.pub", "client_key": keys / "alice.secret"}
    mallory = {"server_key": keys / "broker.pub", "client_key": keys / "mallory.secret"}
    try:
        with Client(frontend, timeout_ms=1000, retries=0, **alice) as c:
            try:
                c.wait_ready(timeout_s=60)
            except FlowgateError as e:
                pytest.fail(f"not ready through the CURVE broker: {e}\n{tail(log)}")
            assert c.act([0.1, 0.2, 0.3, 0.4], model="demo", seed=1).action.shape == (2,)
        for kw in (mallory, {}):
            with Client(frontend, timeout_ms=1500, retries=0, **kw) as c:
                with pytest.raises(FlowgateError) as e:
                    c.health()
                assert e.value.code == "timeout", e.value
        assert "CURVE" in log.read_text(errors="replace")
    finally:
        stop(replica)
        stop(broker)
    assert broker.returncode == 0, tail(log)


def test_broker_curve_flags_go_together(tmp_path):
    r = subprocess.run([BIN, "broker", "--curve-allow", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "curve_secret_key and curve_allow go together" in r.stderr, r.stderr


def test_connected_replica_answers_the_kubernetes_probes(tmp_path):
    """deploy/k8s probes a replica with GET /readyz and /healthz on --metrics-address: check that a
    replica in connect mode serves them (200 once its model is loaded)."""
    import urllib.error
    import urllib.request

    backend = f"tcp://127.0.0.1:{free_port()}"
    frontend = f"tcp://127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{free_port()}"
    broker = subprocess.Popen([BIN, "broker", "--frontend", frontend, "--backend", backend],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "replica.log"
    with open(log, "wb") as f:
        replica = subprocess.Popen([BIN, "serve", "--demo", "--workers", "1", "--connect", "--endpoint", backend,
                                    "--metrics-address", metrics], stdout=f, stderr=subprocess.STDOUT)
    try:
        status = {}
        end = time.monotonic() + 60
        while time.monotonic() < end and status.get("/readyz") != 200:
            for path in ("/readyz", "/healthz"):
                try:
                    with urllib.request.urlopen(f"http://{metrics}{path}", timeout=2) as r:
                        status[path] = r.status
                except (urllib.error.URLError, ConnectionError, OSError) as e:
                    status[path] = getattr(e, "code", None)
            time.sleep(0.1)
        assert status == {"/readyz": 200, "/healthz": 200}, f"{status}\n{tail(log)}"
        with Client(frontend, timeout_ms=5000, retries=2) as c:
            assert c.health()["ready"] is True
    finally:
        stop(replica)
        stop(broker)
