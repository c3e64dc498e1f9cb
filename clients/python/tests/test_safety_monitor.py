"""The safety-monitor scenario against the real server, the shipped model and real pybullet.

A monitor subscribes to the telemetry PUB socket while the simulator runner drives HopperBulletEnv
through the server, once undisturbed and once with observation noise that pushes the inputs off the
data. The share of steps flagged unreliable must rise with the disturbance, and the monitor must
see exactly one event per served observation, on the right topics.
"""
import os
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = os.environ.get("FLOWGATE_BIN")
MODEL = Path(os.environ.get("FLOWGATE_MODEL") or REPO / "models" / "hopper-medium")

if os.environ.get("CI") and not (BIN and MODEL.is_dir()):
    pytest.fail(f"CI: FLOWGATE_BIN={BIN!r} and model directory {MODEL} are required", pytrace=False)
if not BIN or not MODEL.is_dir():
    pytest.skip("needs FLOWGATE_BIN and a model directory", allow_module_level=True)
if not (MODEL / "energy.safetensors").exists():
    pytest.skip(f"{MODEL} has no energy model", allow_module_level=True)

from flowgate_client import Monitor  # noqa: E402
from flowgate_client.evaluate import Server, model_name, simulate_once  # noqa: E402


def test_unreliable_share_rises_with_observation_noise():
    name = model_name(str(MODEL))
    with Server(BIN, [str(MODEL)]) as server:
        events, stop = [], threading.Event()

        def listen():
            with Monitor(server.pub, timeout_ms=200) as m:
                while not stop.is_set():
                    ev = m.recv()
                    if ev is not None:
                        events.append(ev)

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(0.5)  # let the subscription reach the PUB socket (ZeroMQ slow joiner)
        clean = simulate_once(server.endpoint, name, "HopperBulletEnv", 2, 7, 2, None)
        noisy = simulate_once(server.endpoint, name, "HopperBulletEnv", 2, 7, 2, None, "obs-noise", 1.0)
        time.sleep(0.5)
        stop.set()
        listener.join(timeout=5)

    served = clean["total_steps"] + noisy["total_steps"]
    flagged = round(clean["unreliable_share"] * clean["total_steps"] + noisy["unreliable_share"] * noisy["total_steps"])
    assert noisy["unreliable_share"] >= clean["unreliable_share"] + 0.2, (clean["unreliable_share"], noisy["unreliable_share"])
    assert noisy["unreliable_share"] >= 0.3
    assert len(events) == served
    assert sum(1 for e in events if e.topic == f"unreliable/{name}") == flagged
    assert all(e.topic in (f"reliable/{name}", f"unreliable/{name}") and (e.topic.startswith("un") != e.reliable) for e in events)
    assert all(0.0 <= e.confidence <= 1.0 for e in events)
