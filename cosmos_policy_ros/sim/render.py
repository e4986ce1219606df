"""Offscreen rendering of named cameras (or a free view, `FreeView`) into HxWx3 uint8 arrays.

One mujoco.Renderer (one GL context) per image size, reused for every camera; shadows, reflections
and skybox are switched off per scene as configured, since on a CPU GL they dominate frame time.
Renderers are closed explicitly (and at interpreter exit) because an EGL context freed during
interpreter teardown raises noisy errors.
"""
from __future__ import annotations

import atexit
import os
import weakref

import mujoco
import numpy as np

from cosmos_policy_ros.errors import CosmosError
from cosmos_policy_ros.sim.viewer import FreeView
from cosmos_policy_ros.sim.world_config import RenderConfig

_LIVE: "weakref.WeakSet[CameraRenderer]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for r in list(_LIVE):
        r.close()


class RenderUnavailableError(CosmosError, RuntimeError):
    """No headless OpenGL backend could be initialised."""


class CameraRenderer:
    def __init__(self, model: mujoco.MjModel, rc: RenderConfig):
        self.model = model
        self.rc = rc
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._cam_ids: dict[str, int] = {}
        _LIVE.add(self)

    def camera_id(self, name: str) -> int:
        cid = self._cam_ids.get(name)
        if cid is None:
            cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cid < 0:
                known = [self.model.camera(i).name for i in range(self.model.ncam)]
                raise ValueError(f"unknown camera {name!r}; known: {known}")
            self._cam_ids[name] = cid
        return cid

    def _renderer(self, height: int, width: int) -> mujoco.Renderer:
        key = (height, width)
        r = self._renderers.get(key)
        if r is None:
            if os.environ.get("MUJOCO_GL", "").lower() in ("disable", "disabled", "off", "false", "0"):
                raise RenderUnavailableError("no headless GL backend (tried egl, osmesa): "
                                             "apt-get install libegl1 or libosmesa6")
            try:
                r = mujoco.Renderer(self.model, height=height, width=width)
            except Exception as exc:  # GL errors come in many types
                raise RenderUnavailableError(f"cannot create a {width}x{height} MuJoCo renderer: {exc}") from exc
            flags = r.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(self.rc.shadows)
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(self.rc.reflection)
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = int(self.rc.skybox)
            self._renderers[key] = r
        return r

    def render(self, data: mujoco.MjData, cameras, height: int, width: int) -> dict[str, np.ndarray]:
        """{name: image} of each camera, given by name or as a FreeView."""
        ids = [(c.name, c.mjv_camera()) if isinstance(c, FreeView) else (c, self.camera_id(c))
               for c in cameras]  # validate all names first
        r = self._renderer(height, width)
        out = {}
        for name, cid in ids:
            r.update_scene(data, camera=cid)
            out[name] = r.render().copy()
        return out

    def close(self) -> None:
        for r in self._renderers.values():
            try:
                r.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self._renderers.clear()
