"""Does a camera latent carry the cube position, per image size, workspace crop and camera set?

For N seeded transfer-cube scenes (seeds 5000+, disjoint from demos and evaluations) the sim renders the
cameras as a run with that layout would (Preprocessing.square_render_side: larger when a camera is cropped),
the frames go through the nodes' preprocess_image (crop, resize) and the bundle's frozen VAE (the prefix video
training encodes), and a ridge regression latent -> cube (x, y) is fitted on the first n scenes and tested
on the last quarter. A policy cannot place its gripper better than this probe does from the same number of
distinct cube positions (docs/training.md). Two states per scene:

* reset: both arms at the start pose (what the first chunk of an episode sees);
* hover: the right arm's grasp site 12 cm above the centre of the cube's spawn range, pointing down as the
  demonstrator approaches (the same pose for every seed, so only the images tell where the cube is): the
  right wrist camera sees the cube large; it partly hides the cube from cam_high.

The crop is the recipe's train.crop (default config/train/sim_crop.yaml: cam_high's workspace).

    MUJOCO_GL=egl .venv/bin/python bench/bench_cube_probe.py [--checkpoint DIR] [--images 320] [--train 60 240]
Default: 320 scenes (up to 240 to fit, 80 to test), about 6 min on one core. Prints a table in cm; not a test.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

SPAWN_CENTRE_HOVER = (0.1, 0.5, 0.17)   # m: grasp site above the middle of transfer_cube's box range
HOVER_RPY_DEG = (180.0, 65.0, 0.0)      # the demonstrator's approach (config/sim/demonstrator.yaml, t = 70)


@dataclass(frozen=True)
class Probe:
    state: str                  # reset | hover
    cameras: tuple[str, ...]
    size: int                   # px, model input
    cropped: bool               # cam_high through the recipe's workspace crop

    @property
    def name(self) -> str:
        cams = " + ".join(f"{c}{' (crop)' if self.cropped and c == 'cam_high' else ''}" for c in self.cameras)
        return f"{self.state:5} {self.size:>3} {cams}"


def probes() -> list[Probe]:
    out = [Probe("reset", ("cam_high",), s, c) for c in (False, True) for s in (64, 96, 128)]
    for s in (64, 96):
        out += [Probe("hover", ("cam_high",), s, True), Probe("hover", ("cam_right_wrist",), s, False),
                Probe("hover", ("cam_high", "cam_right_wrist"), s, True)]
    return out


def ridge_error(x: np.ndarray, y: np.ndarray, n_train: int, test: slice, lambdas=(0.1, 1, 10, 100, 1000)) -> float:
    """Mean Euclidean test error of the best ridge fit (standardised features) trained on the first n_train rows."""
    a = x[:n_train]
    mu, sd = a.mean(0), a.std(0) + 1e-6
    a = (a - mu) / sd
    b = (x[test] - mu) / sd
    y_mean = y[:n_train].mean(0)
    best = np.inf
    for lam in lambdas:
        # dual form: n_train x n_train system (the features outnumber the images)
        w = a.T @ np.linalg.solve(a @ a.T + lam * np.eye(n_train), y[:n_train] - y_mean)
        best = min(best, float(np.linalg.norm(b @ w + y_mean - y[test], axis=1).mean()))
    return best


class Scenes:
    """Renders each seeded scene in both states at every (camera, render side) the probes need."""

    def __init__(self, crop):
        import mujoco

        from cosmos_policy_ros.sim.demonstrator import ARM_JOINTS
        from cosmos_policy_ros.sim.ik import ArmIK, rpy_to_mat
        from cosmos_policy_ros.sim.sim_aloha import SimAloha
        from cosmos_policy_ros.sim.world import grasp_site_name

        self.sim = SimAloha("transfer_cube", width=64, height=64)
        self.crop = crop
        right = self.sim.wc.arm_prefix["right"]
        ik = ArmIK(self.sim.model, [f"{right}/{j}" for j in ARM_JOINTS], grasp_site_name("right"))
        self.sim.reset("transfer_cube", 0)
        q, err = ik.solve(self.sim.qpos14()[7:13], np.array(SPAWN_CENTRE_HOVER), rpy_to_mat(*np.deg2rad(HOVER_RPY_DEG)))
        if err > 1e-3:
            raise RuntimeError(f"hover pose unreachable ({err * 100:.1f} cm)")
        self.hover_q, self.forward = q, mujoco.mj_forward
        model = self.sim.model
        self.right_qadr = [model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"{right}/{j}")]
                           for j in ARM_JOINTS]

    def render(self, seed: int, needs: dict[str, set[tuple[str, int]]]) -> tuple[dict, np.ndarray]:
        """({(state, camera, side): frame}, cube (x, y)) for one seed."""
        sim = self.sim
        sim.reset("transfer_cube", seed)
        xy = next(iter(sim.object_poses().values()))[:2].copy()
        out = {}
        for state in ("reset", "hover"):
            if state == "hover":
                sim.data.qpos[self.right_qadr] = self.hover_q
                self.forward(sim.model, sim.data)
            for cam, side in sorted(needs.get(state, ())):
                out[(state, cam, side)] = sim.render([cam], width=side, height=side)[cam]
        return out, xy

    def close(self) -> None:
        self.sim.close()


def features(model, frames: dict, probe: Probe, prep_crop, prep_whole) -> np.ndarray:
    """(N, features): the probe's cameras through preprocess_image and the VAE's prefix video, concatenated."""
    import torch

    from cosmos_policy_ros.inference.images import preprocess_image
    from cosmos_policy_ros.train.latent_cache import encode_prefixes

    prep = prep_crop if probe.cropped else prep_whole
    side = prep.square_render_side(probe.size, probe.cameras)
    images = {c: torch.stack([preprocess_image(f, probe.size, prep, camera=c)
                              for f in frames[(probe.state, c, side)]]).numpy() for c in probe.cameras}
    shim = SimpleNamespace(layout=SimpleNamespace(cameras=probe.cameras), encode_video=model.encode_video)
    z, _ = encode_prefixes(shim, images)
    return z.reshape(len(z), -1).numpy().astype(np.float64)


def main() -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import dataclasses

    import torch

    from cosmos_policy_ros.config import config_path
    from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
    from cosmos_policy_ros.inference.preprocessing import TRAINER
    from cosmos_policy_ros.train.config import load_recipe

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="", help="bundle whose VAE encodes (default: the bundled sim checkpoint)")
    p.add_argument("--recipe", default="train/sim_crop.yaml", help="recipe whose train.crop is the workspace crop")
    p.add_argument("--images", type=int, default=320, help="seeded scenes (the last quarter tests)")
    p.add_argument("--train", type=int, nargs="+", default=[60, 240], help="scenes the probe is fitted on")
    ns = p.parse_args()
    torch.set_num_threads(1)

    model = build_engine(resolve_bundle(ns.checkpoint)).model
    crop = dict(load_recipe(config_path(ns.recipe))[1].crop)
    prep_crop, prep_whole = dataclasses.replace(TRAINER, crop=crop), TRAINER
    todo = probes()
    needs: dict[str, set] = {}
    for pr in todo:
        prep = prep_crop if pr.cropped else prep_whole
        needs.setdefault(pr.state, set()).update((c, prep.square_render_side(pr.size, pr.cameras)) for c in pr.cameras)
    t0 = time.time()
    scenes = Scenes(crop)
    frames: dict = {}
    xy = []
    try:
        for s in range(ns.images):
            got, pos = scenes.render(5000 + s, needs)
            xy.append(pos)
            for k, f in got.items():
                frames.setdefault(k, []).append(f)
    finally:
        scenes.close()
    xy = np.stack(xy)
    test = slice(ns.images * 3 // 4, ns.images)
    chance = float(np.linalg.norm(xy[test] - xy[:test.start].mean(0), axis=1).mean())
    print(f"{ns.images} scenes rendered in {time.time() - t0:.0f} s; {len(xy[test])} test scenes; predicting the "
          f"mean position misses by {chance * 100:.2f} cm; crop {crop} (from {ns.recipe})")
    fits = [n for n in ns.train if n <= test.start]
    print(f"{'state':5} {'px':>3} {'cameras':<40} | " + " | ".join(f"fit {n:>3}" for n in fits)
          + "   (mean error, cm)")
    for pr in todo:
        t1 = time.time()
        x = features(model, frames, pr, prep_crop, prep_whole)
        errs = " | ".join(f"{ridge_error(x, xy, n, test) * 100:>7.2f}" for n in fits)
        print(f"{pr.name:<50} | {errs}   ({x.shape[1]} latent values, {time.time() - t1:.0f} s)", flush=True)
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
