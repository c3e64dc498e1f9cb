"""Protocol v1 against the real Swift server.

Runs when env FLOWGATE_BIN points at the built `flowgate` binary and a model directory exists
(env FLOWGATE_MODEL, else the repo's models/hopper-medium).  Starts
`$FLOWGATE_BIN serve --endpoint tcp://127.0.0.1:<free port> [$FLOWGATE_SERVE_ARGS] <model>`,
waits for `health`, checks act/info/stats/error replies, then stops it with SIGTERM.
"""
import os
import shlex
import signal
import time

import numpy as np
import pytest
import zmq

from flowgate_client import Client, FlowgateError
from flowgate_client.codec import pack, unpack
from realserver import MODEL, require_real_server, running_server

require_real_server()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    extra = shlex.split(os.environ.get("FLOWGATE_SERVE_ARGS", ""))
    log = tmp_path_factory.mktemp("flowgate") / "serve.log"
    with running_server(log, *extra, MODEL) as (endpoint, proc, log_path):
        yield {"endpoint": endpoint, "proc": proc, "log": log_path}


@pytest.fixture(scope="module")
def model_info(server):
    with Client(server["endpoint"], timeout_ms=5000) as c:
        info = c.info()
    assert info["protocol"] == 1, info
    assert info["models"], info
    return info["models"][0]


def test_health(server):
    with Client(server["endpoint"]) as c:
        h = c.health()
    assert h["ok"] is True and h["ready"] is True and h["uptime_s"] >= 0


def test_info(server, model_info):
    m = model_info
    for k in ("name", "version", "obs_dim", "act_dim"):
        assert k in m, m
    assert m["obs_dim"] > 0 and m["act_dim"] > 0


@pytest.mark.parametrize("socket_type", ["req", "dealer"])
@pytest.mark.parametrize("encoding", ["ndarray", "plain"])
def test_act_single_and_batch(server, model_info, socket_type, encoding):
    od, ad = model_info["obs_dim"], model_info["act_dim"]
    rng = np.random.default_rng(0)
    with Client(server["endpoint"], timeout_ms=10000, socket_type=socket_type, encoding=encoding) as c:
        r = c.act(rng.standard_normal(od) * 0.1, seed=1)
        assert r.action.shape == (ad,) and np.all(np.isfinite(r.action))
        assert isinstance(r.reliable, bool) and np.isfinite(r.confidence)
        assert r.model == model_info["name"]
        assert {"queue_us", "compute_us", "batch"} <= set(r.timing)
        rb = c.act(rng.standard_normal((4, od)) * 0.1, seed=1)
        assert rb.action.shape == (4, ad) and rb.reliable.shape == (4,) and rb.confidence.shape == (4,)


def test_action_bounds_and_seed_reproducible(server, model_info):
    od = model_info["obs_dim"]
    obs = np.random.default_rng(1).standard_normal((3, od)) * 0.1
    with Client(server["endpoint"], timeout_ms=10000) as c:
        a = c.act(obs, seed=123)
        b = c.act(obs, seed=123)
    np.testing.assert_allclose(a.action, b.action, rtol=1e-5, atol=1e-6)
    lo = np.asarray(model_info.get("action_low", -np.inf))
    hi = np.asarray(model_info.get("action_high", np.inf))
    assert np.all(a.action >= lo - 1e-5) and np.all(a.action <= hi + 1e-5)


def test_errors(server, model_info):
    od = model_info["obs_dim"]
    with Client(server["endpoint"], timeout_ms=5000) as c:
        with pytest.raises(FlowgateError) as e:
            c.act(np.zeros(od + 1))
        assert e.value.code == "shape_mismatch"
        with pytest.raises(FlowgateError) as e:
            c.act(np.zeros(od), model="no-such-model")
        assert e.value.code == "unknown_model"
        with pytest.raises(FlowgateError) as e:
            c.request({"op": "no-such-op"})
        assert e.value.code == "unknown_op"
        with pytest.raises(FlowgateError) as e:
            c.request({"op": "act", "id": 7})
        assert e.value.code == "bad_request" and e.value.id == 7
        assert c.health()["ok"]  # still serving


def test_stats(server, model_info):
    with Client(server["endpoint"]) as c:
        c.act(np.zeros(model_info["obs_dim"]))
        s = c.stats()
    assert s["ok"] is True


def test_sigterm_answers_in_flight_requests_then_exits_0(tmp_path):
    """SIGTERM with a backlog behind one busy worker: every request already read is answered `ok`
    and the process exits with status 0 (docs/protocol.md §6). Death by the signal, a lost reply or
    an error reply fails."""
    n = 6  # 6 × ~8.7 GFLOP: under the 16 GFLOP per-request and 64 GFLOP queued budgets
    with running_server(tmp_path / "serve.log", "--workers", "1", MODEL) as (endpoint, proc, log):
        with Client(endpoint, timeout_ms=5000) as c:
            od = c.info()["models"][0]["obs_dim"]
        obs = np.random.default_rng(2).standard_normal((32, od)).astype(np.float32) * 0.1
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(endpoint)
        try:
            for i in range(n):  # each request is seconds of work for one worker: a backlog
                dealer.send_multipart([b"", pack({"op": "act", "id": i, "obs": obs.tolist(), "steps": 8,
                                                  "candidates": 32, "seed": i})])
            with Client(endpoint, timeout_ms=5000) as c:
                deadline = time.monotonic() + 60  # a bound, not a timing assumption
                while (s := c.stats())["requests"]["act"] < n:
                    assert time.monotonic() < deadline, s
                    time.sleep(0.01)
            backlog = s["queue_depth"] + s["in_flight"]
            assert backlog >= 2, f"the server should still hold work when signalled: {s}"
            proc.send_signal(signal.SIGTERM)
            replies = {}
            while len(replies) < n and dealer.poll(120_000):
                r = unpack(dealer.recv_multipart()[-1])
                replies[r["id"]] = r
            rc = proc.wait(timeout=60)
        finally:
            dealer.close()
        tail = log.read_text(errors="replace")[-2000:]
    assert sorted(replies) == list(range(n)), f"answered {sorted(replies)} of {n}\n{tail}"
    assert all(r["ok"] is True for r in replies.values()), [r.get("error") for r in replies.values()]
    assert rc == 0, f"exit code {rc} after SIGTERM\n{tail}"
