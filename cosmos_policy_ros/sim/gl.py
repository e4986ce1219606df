"""Headless OpenGL backend choice for MuJoCo rendering.

MuJoCo reads MUJOCO_GL once, when ``mujoco`` is first imported, and fails on a headless machine
when it is unset. So before that import we probe each candidate (egl, then osmesa) in a child
process -- a failing GL library can abort the process that loads it -- and export the first that
renders. Child processes inherit the choice through the environment, so the probe runs once.
An explicit MUJOCO_GL from the user is always respected.
"""
from __future__ import annotations

import os
import subprocess
import sys

from cosmos_policy_ros.errors import CosmosError

DEFAULT_CANDIDATES = ("egl", "osmesa")
_PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1\"/></worldbody></mujoco>')\n"
    "r = mujoco.Renderer(m, 8, 8)\n"
    "r.render()\n"
    "r.close()\n"
)


class NoGLBackendError(CosmosError, RuntimeError):
    """No headless OpenGL backend works on this machine."""


def probe(backend: str, timeout: float = 60.0) -> bool:
    """True when a child process can render one frame with MUJOCO_GL=backend."""
    env = dict(os.environ, MUJOCO_GL=backend)
    if backend == "osmesa":
        env.setdefault("PYOPENGL_PLATFORM", "osmesa")
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def ensure_gl_backend(candidates=DEFAULT_CANDIDATES) -> str | None:
    """Set MUJOCO_GL (and PYOPENGL_PLATFORM) to a working backend; return it, or None if none works.

    Must run before the first ``import mujoco`` in this process to take effect.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        if chosen in ("egl", "osmesa"):
            os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
        return chosen
    if "mujoco" in sys.modules:
        return None  # too late to choose; rendering may fail with a GL error
    for backend in candidates:
        if probe(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    # Remember the failure for child processes; rendering raises NoGLBackendError later.
    os.environ["MUJOCO_GL"] = "disabled"
    return None
