"""CURVE + ZAP against the real Swift server, with real pyzmq clients (docs/operations.md).

Runs when env FLOWGATE_BIN points at the built `flowgate` binary.  Keys come from `flowgate
keygen`; the server serves the built-in demo model (`--demo`) with `--curve-secret-key` and
`--curve-allow`.  A refused or plaintext client gets no reply at all, so "refused" here means
"nothing within 1.5 s" (the timeout only bounds the wait; allowed clients answer in milliseconds).
"""
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from flowgate_client import Client, FlowgateError, FlowgateTimeout, Monitor
from flowgate_client.codec import pack, unpack
from flowgate_client.curve import KeyFileError, KeyPair, parse, read_keypair, read_public_key
from realserver import BIN, free_port, require_real_server, stop

require_real_server(model=False)

REFUSED_WAIT_MS = 1500
OBS = [0.1, 0.2, 0.3, 0.4]  # the demo model's obs_dim is 4


def keygen(prefix: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, "keygen", str(prefix), *extra], capture_output=True, text=True, timeout=60)


def start(args, log: Path, ready_kw=None, endpoint=None):
    """Starts `flowgate serve --demo ARGS`, waits until `health` answers (with ready_kw keys)."""
    cmd = [BIN, "serve", "--demo", "--workers", "1", *args]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    try:
        with Client(endpoint, timeout_ms=1000, retries=0, **(ready_kw or {})) as c:
            c.wait_ready(timeout_s=60)
    except FlowgateError as e:
        stop(proc)
        pytest.fail(f"server not ready: {e}\ncommand: {cmd}\nlog:\n{log.read_text(errors='replace')[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for name in ("server", "alice", "mallory"):
        r = keygen(d / name)
        assert r.returncode == 0, r.stderr
    allow = d / "allow"
    allow.mkdir()
    shutil.copy(d / "alice.pub", allow / "alice.pub")
    return d


@pytest.fixture(scope="module")
def curve_server(keys, tmp_path_factory):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    telemetry = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    alice = {"server_key": keys / "server.pub", "client_key": keys / "alice.secret"}
    proc = start(["--endpoint", endpoint, "--pub", telemetry, "--curve-secret-key", str(keys / "server.secret"),
                  "--curve-allow", str(keys / "allow")], log, alice, endpoint)
    yield {"endpoint": endpoint, "telemetry": telemetry, "proc": proc, "log": log, "alice": alice,
           "mallory": {"server_key": keys / "server.pub", "client_key": keys / "mallory.secret"}}
    stop(proc)


def replies_within(endpoint: str, wait_ms: int, setup=None) -> int:
    """Sends one health request on a raw pyzmq DEALER socket; returns how many replies arrived."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if setup:
        setup(s)
    s.connect(endpoint)
    try:
        s.send_multipart([b"", pack({"op": "health", "id": 1})])
        n = 0
        end = time.monotonic() + wait_ms / 1000
        while (left := end - time.monotonic()) > 0:
            if s.poll(int(left * 1000) + 1, zmq.POLLIN):
                s.recv_multipart()
                n += 1
        return n
    finally:
        s.close(linger=0)


def curve_setup(server_pub: bytes, pair: KeyPair):
    def setup(s):
        s.curve_serverkey = server_pub
        s.curve_publickey = pair.public
        s.curve_secretkey = pair.secret
    return setup


def auth_stats(server) -> dict:
    with Client(server["endpoint"], timeout_ms=5000, retries=0, **server["alice"]) as c:
        return c.stats()["auth"]


# --- key files ---------------------------------------------------------------------------------

def test_keygen_writes_a_private_secret_that_python_reads(tmp_path):
    r = keygen(tmp_path / "robot")
    assert r.returncode == 0, r.stderr
    sec, pub = tmp_path / "robot.secret", tmp_path / "robot.pub"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) & 0o077 == 0o044  # public is readable by others
    pair = read_keypair(sec)
    assert zmq.curve_public(pair.secret) == pair.public
    assert read_public_key(pub) == pair.public
    assert f"public={pair.public.decode()}" in r.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_keygen_refuses_to_overwrite_without_force(tmp_path):
    assert keygen(tmp_path / "k").returncode == 0
    before = read_keypair(tmp_path / "k.secret")
    r = keygen(tmp_path / "k")
    assert r.returncode != 0 and "already exists" in r.stderr and "--force" in r.stderr
    assert read_keypair(tmp_path / "k.secret") == before
    assert keygen(tmp_path / "k", "--force").returncode == 0
    after = read_keypair(tmp_path / "k.secret")
    assert after != before and stat.S_IMODE((tmp_path / "k.secret").stat().st_mode) == 0o600


def test_python_parser_matches_the_documented_format(tmp_path):
    pub, sec = zmq.curve_keypair()
    publics, secrets = parse(f"# c\n\npublic = \"{pub.decode()}\"\n{pub.decode()}\nsecret={sec.decode()}\n")
    assert publics == [pub.decode(), pub.decode()] and secrets == [sec.decode()]
    for bad in ("public=short", "hello", f"private={pub.decode()}"):
        with pytest.raises(KeyFileError):
            parse(bad, "x")
    f = tmp_path / "open.secret"
    f.write_text(f"secret={sec.decode()}\n")
    os.chmod(f, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        read_keypair(f)


# --- the CURVE server --------------------------------------------------------------------------

@pytest.mark.parametrize("socket_type", ["req", "dealer"])
def test_allowlisted_client_gets_replies(curve_server, socket_type):
    with Client(curve_server["endpoint"], timeout_ms=10000, retries=0, socket_type=socket_type,
                **curve_server["alice"]) as c:
        r = c.act(OBS, seed=1)
        assert r.action.shape == (2,) and np.all(np.isfinite(r.action))
        info = c.info()
    assert info["models"][0]["provenance"] == {}  # hidden unless --expose-provenance


def test_unlisted_key_gets_no_reply(curve_server, keys):
    server_pub = read_public_key(keys / "server.pub")
    mallory = read_keypair(keys / "mallory.secret")
    assert replies_within(curve_server["endpoint"], REFUSED_WAIT_MS, curve_setup(server_pub, mallory)) == 0
    # a fresh key that is in no file at all
    pub, sec = zmq.curve_keypair()
    assert replies_within(curve_server["endpoint"], REFUSED_WAIT_MS, curve_setup(server_pub, KeyPair(pub, sec))) == 0
    with Client(curve_server["endpoint"], timeout_ms=REFUSED_WAIT_MS, retries=0, **curve_server["mallory"]) as c:
        with pytest.raises(FlowgateTimeout):
            c.health()
    # the allowlisted key on the same raw socket code path does get its reply
    alice = read_keypair(keys / "alice.secret")
    assert replies_within(curve_server["endpoint"], REFUSED_WAIT_MS, curve_setup(server_pub, alice)) == 1


def test_plaintext_client_gets_no_reply(curve_server):
    assert replies_within(curve_server["endpoint"], REFUSED_WAIT_MS) == 0
    with Client(curve_server["endpoint"], timeout_ms=REFUSED_WAIT_MS, retries=0) as c:
        with pytest.raises(FlowgateTimeout):
            c.health()
    # Not asserted: auth.handshake_failures. Whether the server or the plaintext client notices the
    # mechanism mismatch first is a race; when the client does, the server sees only a reset.


def test_wrong_server_key_gets_no_reply_and_is_counted(curve_server, keys):
    # a client that trusts another public key than the server's cannot complete the handshake
    before = auth_stats(curve_server)["handshake_failures"]
    alice = read_keypair(keys / "alice.secret")
    impostor = read_public_key(keys / "mallory.pub")
    assert replies_within(curve_server["endpoint"], REFUSED_WAIT_MS, curve_setup(impostor, alice)) == 0
    # it fails before the ZAP handler (the server cannot open its HELLO); the socket monitor counts it
    assert auth_stats(curve_server)["handshake_failures"] >= before + 1
    assert "cryptographic error" in curve_server["log"].read_text(errors="replace")


def test_pub_refuses_unlisted_subscriber(curve_server):
    t = curve_server["telemetry"]
    allowed = Monitor(t, timeout_ms=50, **curve_server["alice"])
    unlisted = Monitor(t, timeout_ms=0, **curve_server["mallory"])
    plaintext = Monitor(t, timeout_ms=0)
    try:
        seen, leaked = 0, 0
        with Client(curve_server["endpoint"], timeout_ms=10000, retries=0, **curve_server["alice"]) as c:
            for _ in range(200):  # PUB/SUB drops events until a subscription is up: bounded warm-up
                c.act(OBS)
                if allowed.recv() is not None:
                    seen += 1
                leaked += sum(m.recv(timeout_ms=0) is not None for m in (unlisted, plaintext))
                if seen >= 5:
                    break
        assert seen >= 5, "the allowlisted subscriber saw no telemetry"
        leaked += sum(m.recv(timeout_ms=500) is not None for m in (unlisted, plaintext))
        assert leaked == 0
    finally:
        for m in (allowed, unlisted, plaintext):
            m.close()


def test_refusals_are_counted_and_logged(curve_server, keys):
    before = auth_stats(curve_server)
    assert before["curve"] is True and before["allowlist_keys"] == 1
    server_pub = read_public_key(keys / "server.pub")
    assert replies_within(curve_server["endpoint"], REFUSED_WAIT_MS,
                          curve_setup(server_pub, read_keypair(keys / "mallory.secret"))) == 0
    after = auth_stats(curve_server)
    assert after["refused"] >= before["refused"] + 1
    assert after["allowed"] >= before["allowed"] + 1  # the stats client itself
    mallory_pub = read_public_key(keys / "mallory.pub").decode()
    assert f"refused key {mallory_pub}" in curve_server["log"].read_text(errors="replace")


def test_allowlist_is_reloaded_when_it_changes_and_sighup_is_harmless(curve_server, keys):
    carol = keys / "carol"
    assert keygen(carol).returncode == 0
    kw = {"server_key": keys / "server.pub", "client_key": keys / "carol.secret"}
    with Client(curve_server["endpoint"], timeout_ms=REFUSED_WAIT_MS, retries=0, **kw) as c:
        with pytest.raises(FlowgateTimeout):
            c.health()
    shutil.copy(keys / "carol.pub", keys / "allow" / "carol.pub")
    deadline = time.monotonic() + 15  # the server polls the allowlist about once a second
    admitted = False
    while not admitted and time.monotonic() < deadline:
        with Client(curve_server["endpoint"], timeout_ms=1000, retries=0, **kw) as c:
            try:
                admitted = c.health()["ok"]
            except FlowgateTimeout:
                pass
    assert admitted, "carol's key was not admitted after it was added to the allowlist"
    assert auth_stats(curve_server)["allowlist_keys"] == 2
    # SIGHUP reloads on demand; it must not kill the server (its default action would)
    curve_server["proc"].send_signal(signal.SIGHUP)
    with Client(curve_server["endpoint"], timeout_ms=5000, retries=0, **curve_server["alice"]) as c:
        assert c.health()["ok"]
    assert curve_server["proc"].poll() is None


def test_cli_takes_keys(curve_server, keys):
    base = [sys.executable, "-m", "flowgate_client.cli", "health", "--endpoint", curve_server["endpoint"],
            "--timeout-ms", "5000", "--retries", "0"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    ok = subprocess.run(base + ["--server-key", str(keys / "server.pub"), "--client-key", str(keys / "alice.secret")],
                        capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0 and '"ready": true' in ok.stdout, ok.stderr
    half = subprocess.run(base + ["--server-key", str(keys / "server.pub")], capture_output=True, text=True,
                          timeout=60, env=env)
    assert half.returncode != 0 and "--client-key" in half.stderr


# --- startup checks ----------------------------------------------------------------------------

def run_serve(args, timeout=60):
    return subprocess.run([BIN, "serve", "--demo", "--endpoint", f"tcp://127.0.0.1:{free_port()}", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_bad_key_files_stop_the_server_with_the_file_named(keys, tmp_path):
    open_secret = tmp_path / "open.secret"
    shutil.copy(keys / "server.secret", open_secret)
    os.chmod(open_secret, 0o644)
    r = run_serve(["--curve-secret-key", str(open_secret), "--curve-allow", str(keys / "allow")])
    assert r.returncode != 0 and str(open_secret) in r.stderr and "chmod 600" in r.stderr, r.stderr

    r = run_serve(["--curve-secret-key", str(keys / "server.secret"), "--curve-allow", str(tmp_path / "nope")])
    assert r.returncode != 0 and "nope" in r.stderr and "does not exist" in r.stderr, r.stderr

    garbled = tmp_path / "garbled.secret"
    garbled.write_text("secret=this-is-not-a-z85-key\n")
    os.chmod(garbled, 0o600)
    r = run_serve(["--curve-secret-key", str(garbled), "--curve-allow", str(keys / "allow")])
    assert r.returncode != 0 and "garbled.secret" in r.stderr and "Z85" in r.stderr, r.stderr

    r = run_serve(["--curve-secret-key", str(keys / "server.secret")])
    assert r.returncode != 0 and "curve_allow" in r.stderr, r.stderr


def test_exposed_endpoint_without_curve_warns_and_provenance_is_opt_in(tmp_path):
    port = free_port()
    log = tmp_path / "exposed.log"
    proc = start(["--endpoint", f"tcp://*:{port}", "--expose-provenance"], log, endpoint=f"tcp://127.0.0.1:{port}")
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout_ms=5000, retries=0) as c:
            assert c.info()["models"][0]["provenance"].get("kind") == "demo"
    finally:
        stop(proc)
    text = log.read_text(errors="replace")
    assert "SECURITY WARNING" in text and f"tcp://*:{port}" in text, text

    log2 = tmp_path / "loopback.log"
    port2 = free_port()
    proc = start(["--endpoint", f"tcp://127.0.0.1:{port2}"], log2, endpoint=f"tcp://127.0.0.1:{port2}")
    proc.send_signal(signal.SIGHUP)  # systemctl reload: must not kill a server without CURVE either
    with Client(f"tcp://127.0.0.1:{port2}", timeout_ms=5000, retries=0) as c:
        assert c.health()["ok"]
    assert stop(proc) == 0
    assert "SECURITY WARNING" not in log2.read_text(errors="replace")


def test_sigterm_stops_the_curve_server(curve_server):
    # runs last in this module (pytest keeps file order)
    proc = curve_server["proc"]
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
