"""pybullet environments and the expert policies bundled in the pybullet wheel.

The env classes are instantiated directly (no gym registry, no TimeLimit wrapper), so episode
length limits are applied by the callers (``MAX_EPISODE_STEPS``).  Actions are clipped to
[-1, 1] before ``env.step`` so stored actions are what the environment received.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_EPISODE_STEPS = 1000

# env name -> (module, class name, module with the bundled expert weights, hidden sizes)
_ENVS = {
    "HopperBulletEnv": ("pybullet_envs.gym_locomotion_envs", "HopperBulletEnv",
                        "pybullet_envs.examples.enjoy_TF_HopperBulletEnv_v0_2017may"),
    "AntBulletEnv": ("pybullet_envs.gym_locomotion_envs", "AntBulletEnv",
                     "pybullet_envs.examples.enjoy_TF_AntBulletEnv_v0_2017may"),
    "InvertedDoublePendulumBulletEnv": ("pybullet_envs.gym_pendulum_envs", "InvertedDoublePendulumBulletEnv",
                                        "pybullet_envs.examples.enjoy_TF_InvertedDoublePendulumBulletEnv_v0_2017may"),
    "InvertedPendulumSwingupBulletEnv": ("pybullet_envs.gym_pendulum_envs", "InvertedPendulumSwingupBulletEnv",
                                         "pybullet_envs.examples.enjoy_TF_InvertedPendulumSwingupBulletEnv_v0_2017may"),
    # The wheel's Walker2D and HalfCheetah policies fall or run backwards in this pybullet: these
    # two use policies trained here with SAC (scripts/train_behaviour_policy.py), shipped in
    # policies/ as npz files (POLICY_FILES).
    "Walker2DBulletEnv": ("pybullet_envs.gym_locomotion_envs", "Walker2DBulletEnv", None),
    "HalfCheetahBulletEnv": ("pybullet_envs.gym_locomotion_envs", "HalfCheetahBulletEnv", None),
}
ENV_NAMES = tuple(_ENVS)

POLICY_DIR = Path(__file__).resolve().parent / "policies"
# env -> {role: npz file in POLICY_DIR}; "expert" is the env's reference policy, "medium" the
# earlier checkpoint of the same training run that the collector's medium kind acts with.
POLICY_FILES = {
    "Walker2DBulletEnv": {"expert": "walker2d-sac-expert.npz", "medium": "walker2d-sac-medium.npz"},
    "HalfCheetahBulletEnv": {"expert": "halfcheetah-sac-expert.npz", "medium": "halfcheetah-sac-medium.npz"},
}

# short names used in dataset file names (hopper-medium.npz, ...)
SHORT_NAMES = {
    "HopperBulletEnv": "hopper",
    "AntBulletEnv": "ant",
    "InvertedDoublePendulumBulletEnv": "inverted-double-pendulum",
    "InvertedPendulumSwingupBulletEnv": "inverted-pendulum-swingup",
    "Walker2DBulletEnv": "walker2d",
    "HalfCheetahBulletEnv": "halfcheetah",
}

_WEIGHT_NAMES = ("weights_dense1_w", "weights_dense1_b", "weights_dense2_w",
                 "weights_dense2_b", "weights_final_w", "weights_final_b")


@contextlib.contextmanager
def quiet_simulator_imports():
    """Silence what importing gym and pybullet (and connecting to bullet) prints on every run.

    gym's import prints its "unmaintained" notice (gym_notices) to ``sys.stderr``; pybullet's C
    module prints "pybullet build time: ..." to C ``stderr`` and the bullet client "argv[0]=" to C
    ``stdout`` when it connects (file descriptors 2 and 1, past ``sys.stdout``/``sys.stderr``);
    pybullet_envs prints "current_dir=..." and the old gym API raises deprecation warnings. All of
    it is noise for a user and breaks CLIs that print JSON on stdout. Errors still raise (their
    tracebacks print after the descriptors are restored).
    """
    import os
    import sys
    import warnings
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                saved[fd] = os.dup(fd)
            except OSError:  # no such descriptor (a daemon): nothing C-level to hide there
                continue
            os.dup2(devnull, fd)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _flush_c_stdout()  # C stdio buffers stdout when it is not a terminal: flush it into /dev/null
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _flush_c_stdout() -> None:
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def _quiet_import(name: str):
    with quiet_simulator_imports():
        return importlib.import_module(name)


def canonical_env_name(name: str) -> str:
    if name in _ENVS:
        return name
    for full, short in SHORT_NAMES.items():
        if name == short or name == full + "-v0" or name.lower() == full.lower():
            return full
    raise ValueError(f"unknown env {name!r}; known: {', '.join(ENV_NAMES)}")


def make_env(name: str, seed: int | None = None):
    """Instantiate a pybullet env class directly (headless) and seed it."""
    mod_name, cls_name, _ = _ENVS[canonical_env_name(name)]
    cls = getattr(_quiet_import(mod_name), cls_name)
    with quiet_simulator_imports():  # the bullet client prints "argv[0]=" when it connects
        try:
            env = cls(render=False)
        except TypeError:  # the pendulum envs take no render argument
            env = cls()
    if seed is not None:
        env.seed(int(seed))
    _quiet_first_reset(env)
    return env


def _quiet_first_reset(env) -> None:
    """The locomotion envs connect to bullet (which prints "argv[0]=") in their first ``reset``."""
    original = env.reset
    connected = False

    def reset(*args, **kwargs):
        nonlocal connected
        if connected:
            return original(*args, **kwargs)
        with quiet_simulator_imports():
            result = original(*args, **kwargs)
        connected = True
        return result

    env.reset = reset


def _dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` summed input by input, in a fixed order.

    ``@`` goes to the BLAS kernel that numpy's OpenBLAS picks for this CPU (DYNAMIC_ARCH), and the
    kernels sum in different orders. A one-ulp difference then grows through the chaotic rollouts:
    the same collect command gave 61 episodes under OPENBLAS_CORETYPE=Haswell and 66 under
    Prescott. Elementwise products and a row-by-row reduction (axis 0 of a C-contiguous array, so
    no pairwise or SIMD reordering) round the same under every kernel, so the behaviour policies'
    actions no longer depend on the CPU (pybullet's physics was not compared across CPU types). The
    matrices are at most 128 wide: the cost is negligible next to the physics step.
    """
    x = np.asarray(x, dtype=np.float64)
    return np.add.reduce(x[..., :, None] * w, axis=-2)


@dataclass
class MLPPolicy:
    """obs -> ReLU -> ReLU -> linear MLP (the bundled ``SmallReactivePolicy``), numpy only.

    ``squash``: a tanh on the output (the SAC actors of ``policies/``, whose mean action is
    ``tanh(linear)``); the bundled policies have none.
    """
    params: list[np.ndarray]
    description: str = "expert"
    extra: dict = field(default_factory=dict)
    squash: bool = False

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        w1, b1, w2, b2, w3, b3 = self.params
        x = np.maximum(_dense(obs, w1) + b1, 0.0)
        x = np.maximum(_dense(x, w2) + b2, 0.0)
        y = _dense(x, w3) + b3
        return np.tanh(y) if self.squash else y

    @property
    def obs_dim(self) -> int:
        return self.params[0].shape[0]

    @property
    def act_dim(self) -> int:
        return self.params[4].shape[1]

    def perturbed(self, alpha: float, seed: int) -> "MLPPolicy":
        """A fixed perturbation of the weight matrices: W + N(0, (alpha * std(W))^2) per matrix.

        Biases are left alone; the same (alpha, seed) always gives the same policy.
        """
        rng = np.random.default_rng(seed)
        params = []
        for i, p in enumerate(self.params):
            if i % 2 == 0:  # weight matrix
                p = p + rng.normal(0.0, alpha * float(p.std()), size=p.shape)
            params.append(p.copy())
        return MLPPolicy(params, description=f"expert weights perturbed alpha={alpha} seed={seed}",
                         extra={"alpha": alpha, "perturb_seed": seed}, squash=self.squash)


def trained_policy(name: str, role: str = "expert") -> MLPPolicy:
    """A policy of ``policies/`` for ``name`` (``role``: "expert" or "medium"), trained with
    ``scripts/train_behaviour_policy.py``; its npz holds w1, b1, w2, b2, w3, b3 and metadata."""
    env = canonical_env_name(name)
    files = POLICY_FILES.get(env)
    if not files or role not in files:
        raise ValueError(f"no trained {role} policy for {env}")
    path = POLICY_DIR / files[role]
    with np.load(path, allow_pickle=False) as z:
        params = [np.asarray(z[k], dtype=np.float64) for k in ("w1", "b1", "w2", "b2", "w3", "b3")]
        meta = json.loads(str(z["metadata"]))
    return MLPPolicy(params, squash=True, extra={"file": files[role], **meta},
                     description=(f"SAC actor trained here ({files[role]}: {meta['env_steps']} env steps, "
                                  f"stable-baselines3 {meta['sb3_version']}, seed {meta['seed']})"))


def expert_policy(name: str) -> MLPPolicy:
    """The env's reference policy: the one shipped in the pybullet wheel, or for Walker2D and
    HalfCheetah the SAC policy trained here (``trained_policy``)."""
    _, _, pol_mod = _ENVS[canonical_env_name(name)]
    if pol_mod is None:
        return trained_policy(name, "expert")
    mod = _quiet_import(pol_mod)
    params = [np.asarray(getattr(mod, n), dtype=np.float64) for n in _WEIGHT_NAMES]
    return MLPPolicy(params, description=f"bundled SmallReactivePolicy ({pol_mod.rsplit('.', 1)[1]}.py)")


def push_body(env, force_xyz, link=None):
    """Apply an external force (world frame, N) on the robot's main body for the next physics step."""
    robot = env.robot
    part = robot.robot_body
    body = part.bodies[part.bodyIndex]
    link_index = part.bodyPartIndex if link is None else link
    p = env._p
    pos = p.getBasePositionAndOrientation(body)[0] if link_index == -1 else p.getLinkState(body, link_index)[0]
    p.applyExternalForce(body, link_index, list(map(float, force_xyz)), list(pos), p.WORLD_FRAME)


def run_episode(env, act_fn, max_steps: int = MAX_EPISODE_STEPS):
    """Run one episode with ``act_fn(obs) -> action`` (clipped here); returns (return, length, done)."""
    obs = env.reset()
    total, done = 0.0, False
    for t in range(max_steps):
        a = np.clip(act_fn(obs), -1.0, 1.0)
        obs, r, done, _ = env.step(a)
        total += float(r)
        if done:
            return total, t + 1, True
    return total, max_steps, False
