import os
import sys
import threading

import pytest

# Make the package importable even without `pip install -e` (pytest run from the repo root).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from flowgate_client.fake_server import FakeServer  # noqa: E402


@pytest.fixture
def fake_server():
    with FakeServer(obs_dim=15, act_dim=3) as s:
        yield s


def pybullet_available() -> bool:
    try:
        import pybullet_envs  # noqa: F401
        return True
    except Exception:  # noqa: BLE001
        return False


requires_pybullet = pytest.mark.skipif(not pybullet_available(), reason="pybullet/pybullet_envs (and gym==0.23.1, setuptools<82) not installed")


class TelemetryListener:
    """Collects every event a `Monitor` on `pub` receives, on a background thread, until `stop()`.

    `events` is read under `lock` (a Condition notified on each event); `wait_for(predicate)` waits,
    bounded, until `predicate(events)` holds."""

    def __init__(self, pub: str, **monitor_args):
        self.events, self.lock = [], threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, args=(pub, monitor_args), daemon=True)
        self._thread.start()

    def _listen(self, pub, monitor_args):
        from flowgate_client import Monitor
        with Monitor(pub, timeout_ms=100, **monitor_args) as m:
            while not self._stop.is_set():
                ev = m.recv()
                if ev is not None:
                    with self.lock:
                        self.events.append(ev)
                        self.lock.notify_all()

    def wait_for(self, predicate, timeout_s: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: predicate(self.events), timeout=timeout_s)

    def stop(self) -> list:
        """Stops listening and returns the events received."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self.lock:
            return list(self.events)


@pytest.fixture
def telemetry_listener():
    """`telemetry_listener(pub, **monitor_args)` starts a `TelemetryListener`; every one started is
    stopped when the test ends, passed or not."""
    started = []

    def start(pub: str, **monitor_args) -> TelemetryListener:
        started.append(TelemetryListener(pub, **monitor_args))
        return started[-1]

    yield start
    for listener in started:
        listener.stop()
