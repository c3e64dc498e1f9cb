"""Streams and alarms (issue 14) against the real server and the shipped model."""
import time
from pathlib import Path

import numpy as np
import pytest

from realserver import BIN, MODEL, require_real_server  # noqa: E402

require_real_server()
if '"risk"' not in (Path(MODEL) / "manifest.json").read_text():
    pytest.skip(f"{MODEL} has no risk section", allow_module_level=True)

from flowgate_client import Client  # noqa: E402
from flowgate_client.envs import make_env, push_body  # noqa: E402
from flowgate_client.evaluate import Server, model_name  # noqa: E402


def test_stream_alarms_match_the_published_events(telemetry_listener):
    """A pushed hopper episode served on a stream: every alarm/clear transition in the replies is
    published once, on the right topic, with the stream and the risk of that step."""
    name = model_name(MODEL)
    with Server(BIN, [MODEL]) as server, Client(server.endpoint, timeout_ms=20_000) as client:
        listener = telemetry_listener(server.pub, alarms=True)
        # slow joiner: wait until a probe stream's alarm arrives (raise it by pushing the torso)
        env = make_env("HopperBulletEnv", 3)
        obs_dim = client.info()["models"][0]["obs_dim"]
        no_stream = client.act(np.zeros(obs_dim), seed=1)
        assert no_stream.alarm is None and 0.0 <= no_stream.risk <= 1.0
        replies = []
        deadline = time.monotonic() + 120
        for k in range(20):
            obs, stream = env.reset(), f"ep-{k}"
            for t in range(400):
                r = client.act(obs, seed=1000 * k + t, stream=stream)
                replies.append((stream, r))
                if t >= 30:
                    push_body(env, (-60.0, 0.0, 0.0))
                obs, _, done, _ = env.step(np.clip(r.action, -1, 1))
                if done:
                    break
            if listener.wait_for(lambda evs: any(e.kind == "alarm" for e in evs), timeout_s=1.0):
                break
            assert time.monotonic() < deadline
        # events go out in reply order from one thread: once the sentinel's transition (if any)
        # is here, every earlier one is too
        sentinel = client.act(np.zeros(obs_dim), seed=0, stream="sentinel")
        replies.append(("sentinel", sentinel))
        if sentinel.alarm:
            assert listener.wait_for(lambda evs: any(e.stream == "sentinel" for e in evs), timeout_s=30)
        else:
            time.sleep(1.0)
        events = listener.stop()
    assert events, "no alarm/clear event arrived"
    expected = []
    prev = {}
    for stream, r in replies:
        assert isinstance(r.alarm, bool) and 0.0 <= r.risk <= 1.0
        before = prev.get(stream, False)
        if r.alarm != before:
            expected.append(("alarm" if r.alarm else "clear", stream, round(float(r.risk), 5)))
        prev[stream] = r.alarm
    # events published before the subscription was up are lost: compare from the first one seen
    start = next(i for i, x in enumerate(expected) if x[:2] == (events[0].kind, events[0].stream))
    got = [(e.kind, e.stream, round(float(e.risk), 5)) for e in events]
    assert got == expected[start:start + len(got)] and len(got) == len(expected) - start
    assert all(e.topic == f"{e.kind}/{name}" and e.reason for e in events)
