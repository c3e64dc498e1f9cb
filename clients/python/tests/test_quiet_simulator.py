"""A simulator run prints only its own output: no gym notice, no "pybullet build time", no
"argv[0]=" from the bullet client (issue 13, what a new user hit)."""
import os
import subprocess
import sys

from conftest import requires_pybullet

pytestmark = requires_pybullet

SCRIPT = """
import numpy as np
from flowgate_client import envs
for name in ("HopperBulletEnv", "InvertedDoublePendulumBulletEnv"):
    env = envs.make_env(name, seed=1)
    env.reset()
    env.step(np.zeros(env.action_space.shape))
    env.reset()
    env.close()
print("ok")
"""


def test_making_and_stepping_envs_prints_nothing_else():
    package = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    env = dict(os.environ, PYTHONPATH=package + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n", r.stdout
    assert r.stderr == "", r.stderr
