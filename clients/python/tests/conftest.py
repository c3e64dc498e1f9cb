import os
import sys

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
