import time

import msgpack
import numpy as np
import pytest
import zmq

from flowgate_client import Client, FlowgateError, FlowgateTimeout, Monitor
from flowgate_client.codec import decode_ndarray, encode_ndarray
from flowgate_client.fake_server import FakeServer


def test_ndarray_roundtrip_f4_f8():
    a = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    for dt in ("<f4", "<f8"):
        m = encode_ndarray(a, dt)
        assert m["__ndarray__"] is True and m["shape"] == [2, 3] and m["dtype"] == dt
        assert len(m["data"]) == 6 * (4 if dt == "<f4" else 8)
        b = decode_ndarray(msgpack.unpackb(msgpack.packb(m, use_bin_type=True), raw=False))
        np.testing.assert_allclose(b, a, rtol=1e-6)
    with pytest.raises(ValueError):
        decode_ndarray({"__ndarray__": True, "dtype": "<f4", "shape": [3], "data": b"\0" * 8})
    with pytest.raises(ValueError):
        encode_ndarray(a, "<i4")


def test_client_sends_ndarray_f4_by_default():
    # a raw ROUTER that records what the client puts on the wire
    ctx = zmq.Context.instance()
    r = ctx.socket(zmq.ROUTER)
    r.setsockopt(zmq.LINGER, 0)
    port = r.bind_to_random_port("tcp://127.0.0.1")
    with Client(f"tcp://127.0.0.1:{port}", timeout_ms=100, retries=0, model="m1") as c:
        with pytest.raises(FlowgateTimeout):
            c.act(np.ones(4), steps=3, candidates=8, seed=5, deadline_ms=50)
    frames = r.recv_multipart()
    r.close()
    assert frames[1] == b""
    req = msgpack.unpackb(frames[2], raw=False)
    assert req["op"] == "act" and req["model"] == "m1" and req["steps"] == 3 and req["candidates"] == 8
    assert req["seed"] == 5 and req["deadline_ms"] == 50 and req["check"] is True and "id" in req
    assert req["obs"]["__ndarray__"] is True and req["obs"]["dtype"] == "<f4" and req["obs"]["shape"] == [4]
    assert "samples" not in req


@pytest.mark.parametrize("socket_type", ["req", "dealer"])
@pytest.mark.parametrize("encoding", ["ndarray", "plain"])
def test_act_single_and_batch(fake_server, socket_type, encoding):
    with Client(fake_server.endpoint, timeout_ms=2000, socket_type=socket_type, encoding=encoding) as c:
        obs = np.linspace(-0.5, 0.5, 15)
        r = c.act(obs)
        expected = np.tanh(obs @ fake_server.W)
        assert r.action.shape == (3,)
        np.testing.assert_allclose(r.action, expected, rtol=1e-5, atol=1e-6)
        assert isinstance(r.confidence, float) and isinstance(r.reliable, bool) and isinstance(r.energy, float)
        assert r.reliable is True and r.model == "fake" and r.version == 1 and r.threshold == 0.5
        assert r.timing["batch"] == 1 and not r.batched

        B = np.stack([obs, obs * 4, -obs])
        rb = c.act(B, id=42)
        assert rb.id == 42 and rb.batched
        assert rb.action.shape == (3, 3)
        assert rb.confidence.shape == (3,) and rb.reliable.dtype == bool and rb.q.shape == (3,)
        assert list(rb.reliable) == [True, False, True]
        np.testing.assert_allclose(rb.action[0], expected, rtol=1e-5, atol=1e-6)


def test_reply_uses_request_encoding():
    with FakeServer(telemetry=None) as s:
        ctx = zmq.Context.instance()
        for obs, kind in ((encode_ndarray(np.zeros(15), "<f8"), dict), ([0.0] * 15, list)):
            sock = ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(s.endpoint)
            sock.send(msgpack.packb({"op": "act", "id": 1, "obs": obs}, use_bin_type=True))
            assert sock.poll(2000)
            rep = msgpack.unpackb(sock.recv(), raw=False)
            sock.close()
            assert isinstance(rep["action"], kind)
            if kind is dict:
                assert rep["action"]["dtype"] == "<f8"


def test_seed_is_reproducible(fake_server):
    with Client(fake_server.endpoint) as c:
        B = np.zeros((2, 15))
        a = c.act(B, seed=7).action
        b = c.act(B, seed=7).action
        np.testing.assert_array_equal(a, b)
        # batch observation i uses seed + i: row 1 of seed 7 == row 0 of seed 8
        c8 = c.act(B[:1], seed=8).action
        np.testing.assert_allclose(a[1], c8[0], rtol=1e-6)


@pytest.mark.parametrize("socket_type", ["req", "dealer"])
def test_errors_raise_flowgate_error(fake_server, socket_type):
    with Client(fake_server.endpoint, socket_type=socket_type) as c:
        with pytest.raises(FlowgateError) as e:
            c.act(np.zeros(4))
        assert e.value.code == "shape_mismatch"
        with pytest.raises(FlowgateError) as e:
            c.act(np.zeros(15), model="nope")
        assert e.value.code == "unknown_model"
        with pytest.raises(FlowgateError) as e:
            c.request({"op": "explode"})
        assert e.value.code == "unknown_op" and "explode" in e.value.message
        with pytest.raises(FlowgateError) as e:
            c.request({"op": "act", "id": "x1"})
        assert e.value.code == "bad_request" and e.value.id == "x1"
        with pytest.raises(FlowgateError) as e:
            c.act(np.zeros((300, 15)))
        assert e.value.code == "too_large"
        # the socket is still usable after errors
        assert c.act(np.zeros(15)).action.shape == (3,)


def test_info_health_stats(fake_server):
    with Client(fake_server.endpoint) as c:
        info = c.info()
        assert info["protocol"] == 1 and info["models"][0]["obs_dim"] == 15
        h = c.health()
        assert h["ok"] and h["ready"] and h["uptime_s"] >= 0
        c.act(np.zeros(15))
        assert c.stats()["acts"] == 1


@pytest.mark.parametrize("socket_type", ["req", "dealer"])
def test_lazy_pirate_retry_after_dropped_reply(socket_type):
    with FakeServer(drop={1}, telemetry=None) as s:
        with Client(s.endpoint, timeout_ms=300, retries=2, socket_type=socket_type) as c:
            t0 = time.monotonic()
            r = c.act(np.zeros(15))
            assert r.action.shape == (3,)
            assert 0.25 < time.monotonic() - t0 < 5.0  # waited one timeout, then the retry answered
            assert s.requests >= 2  # the first reply was dropped, a retry was answered
            if socket_type == "req":
                assert c.reconnects >= 1
            # later requests work normally
            assert c.health(timeout_ms=3000)["ok"]


def test_dealer_ignores_late_reply_to_earlier_attempt():
    # the server answers after 150 ms, the client gives up after 100 ms and resends (same id);
    # the answer to attempt 1 satisfies attempt 2, the answer to attempt 2 arrives while the next
    # request (health) waits and must be dropped because its id is not the pending one
    with FakeServer(delay_ms=150, telemetry=None) as s:
        with Client(s.endpoint, timeout_ms=100, retries=1, socket_type="dealer") as c:
            r = c.act(np.zeros(15), id="late")
            assert r.id == "late"
            h = c.health(timeout_ms=3000)
            assert "uptime_s" in h and h["id"] != "late"


def _wait_for(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.01)
    return pred()


def test_timeout_after_bounded_retries():
    with FakeServer(drop={1, 2, 3, 4}, telemetry=None) as s:
        with Client(s.endpoint, timeout_ms=100, retries=2) as c:
            with pytest.raises(FlowgateTimeout) as e:
                c.act(np.zeros(15))
            assert e.value.code == "timeout"
            assert _wait_for(lambda: s.requests == 3)  # 1 attempt + 2 retries, no more
            time.sleep(0.2)
            assert s.requests == 3
            # request 4 is dropped, its retry (5) is answered
            assert c.act(np.zeros(15), timeout_ms=500).action.shape == (3,)
    # nothing listening at all
    with Client("tcp://127.0.0.1:1", timeout_ms=50, retries=1) as c:
        with pytest.raises(FlowgateTimeout):
            c.health()


def _wait_subscribed(mon, client, obs, want):
    # PUB/SUB joins late: keep sending until the first event arrives
    for _ in range(50):
        client.act(obs)
        ev = mon.recv(timeout_ms=100)
        if ev is not None:
            return ev
    pytest.fail(f"no telemetry event ({want})")


def test_monitor_topics(fake_server):
    good, bad = np.zeros(15), np.full(15, 3.0)
    with Client(fake_server.endpoint) as c, \
            Monitor(fake_server.telemetry_endpoint, only_unreliable=True, timeout_ms=500) as mon_bad, \
            Monitor(fake_server.telemetry_endpoint, timeout_ms=500) as mon_all:
        ev = _wait_subscribed(mon_bad, c, bad, "unreliable")
        assert ev.topic == "unreliable/fake" and ev.reliable is False and ev.model == "fake"
        assert ev.confidence < ev.threshold and ev.energy > 0
        for _ in mon_bad:  # drain
            pass
        for _ in mon_all:
            pass
        c.act(good, id="g1")
        c.act(bad, id="b1")
        c.act(np.stack([good, bad]), id="batch")
        all_events = list(mon_all)
        bad_events = list(mon_bad)
        assert [(e.id, e.reliable) for e in all_events] == [("g1", True), ("b1", False), ("batch", True), ("batch", False)]
        assert [e.id for e in bad_events] == ["b1", "batch"]
        assert all(e.topic.startswith("unreliable/") for e in bad_events)
        # check=False: no telemetry
        c.act(bad, check=False)
        assert mon_bad.recv(timeout_ms=200) is None


def test_monitor_model_filter(fake_server):
    with Client(fake_server.endpoint) as c, Monitor(fake_server.telemetry_endpoint, model="other", timeout_ms=100) as m, \
            Monitor(fake_server.telemetry_endpoint, model="fake", timeout_ms=100) as mf:
        _wait_subscribed(mf, c, np.zeros(15), "fake")
        c.act(np.zeros(15))
        assert mf.recv(timeout_ms=500) is not None
        assert m.recv(timeout_ms=100) is None


def test_cli_against_fake(fake_server, capsys):
    from flowgate_client import cli
    assert cli.main(["health", "--endpoint", fake_server.endpoint]) == 0
    assert '"ready": true' in capsys.readouterr().out
    assert cli.main(["act", "--endpoint", fake_server.endpoint, "--random-obs", "2", "--seed", "1"]) == 0
    assert '"action"' in capsys.readouterr().out
    assert cli.main(["act", "--endpoint", fake_server.endpoint, "--obs", "[1, 2]"]) == 1
    assert "shape_mismatch" in capsys.readouterr().err
