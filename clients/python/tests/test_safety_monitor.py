"""The safety-monitor scenario against the real server, the shipped model and real pybullet.

A monitor subscribes to the telemetry PUB socket while the simulator runner drives HopperBulletEnv
through the server, once undisturbed and once with observation noise that pushes the inputs off the
data. The share of steps flagged unreliable must rise with the disturbance, and the monitor must
see exactly one event per served observation, on the right topics.
"""
import time
from pathlib import Path

import pytest

from realserver import BIN, require_real_server
from realserver import MODEL as MODEL_DIR

require_real_server()
MODEL = Path(MODEL_DIR)
if not (MODEL / "energy.safetensors").exists():
    pytest.skip(f"{MODEL} has no energy model", allow_module_level=True)

from flowgate_client import Client  # noqa: E402
from flowgate_client.evaluate import Server, model_name, simulate_once  # noqa: E402


def test_unreliable_share_rises_with_observation_noise(telemetry_listener):
    name = model_name(str(MODEL))
    with Server(BIN, [str(MODEL)]) as server, Client(server.endpoint, timeout_ms=20_000) as client:
        listener = telemetry_listener(server.pub)

        def wait_for_event(marker: str, timeout_s: float = 60) -> bool:
            """Waits (bounded) until the event of the request with id `marker` arrived."""
            return listener.wait_for(lambda evs: any(e.id == marker for e in evs), timeout_s)

        # ZeroMQ's slow joiner: the subscription is in place once a probe's event comes through.
        obs_dim = client.info()["models"][0]["obs_dim"]
        deadline = time.monotonic() + 60
        for k in range(10_000):
            client.act([0.0] * obs_dim, seed=k, id=f"probe-{k}")
            if wait_for_event(f"probe-{k}", timeout_s=0.2):
                break
            assert time.monotonic() < deadline, "no telemetry reached the subscriber within 60 s"
        clean = simulate_once(server.endpoint, name, "HopperBulletEnv", 2, 7, 2, None)
        noisy = simulate_once(server.endpoint, name, "HopperBulletEnv", 2, 7, 2, None, "obs-noise", 1.0)
        # The server publishes each reply's events right after the reply, from one thread, so once
        # the sentinel's event is here every event of the runs before it is here too.
        client.act([0.0] * obs_dim, seed=0, id="sentinel")
        assert wait_for_event("sentinel"), "the sentinel's event never arrived"
        events = listener.stop()
    events = [e for e in events if not (isinstance(e.id, str) and (e.id.startswith("probe-") or e.id == "sentinel"))]

    served = clean["total_steps"] + noisy["total_steps"]
    flagged = round(clean["unreliable_share"] * clean["total_steps"] + noisy["unreliable_share"] * noisy["total_steps"])
    assert noisy["unreliable_share"] >= clean["unreliable_share"] + 0.2, (clean["unreliable_share"], noisy["unreliable_share"])
    assert noisy["unreliable_share"] >= 0.3
    assert len(events) == served
    assert sum(1 for e in events if e.topic == f"unreliable/{name}") == flagged
    assert all(e.topic in (f"reliable/{name}", f"unreliable/{name}") and (e.topic.startswith("un") != e.reliable) for e in events)
    assert all(0.0 <= e.confidence <= 1.0 for e in events)
