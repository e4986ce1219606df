"""Scripted sim demonstrations written as ALOHA HDF5 episodes + dataset statistics.

In-process (no ROS, no bag): SimAloha + ScriptedDemonstrator -> `episode_<seed>.hdf5`, so training
does not depend on the recording path. Renders only the cameras the model layout uses, at the
model's input size, because rendering dominates the cost (~12 ms per camera-frame at 64x64 here).
With a recipe whose train.crop cuts a workspace out of a camera (`--recipe`), the frames are rendered larger
(Preprocessing.square_render_side, as the in-process evaluation and the demo graph render for that bundle)
and stored whole: the latent cache crops and resizes them with the nodes' own preprocess_image.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

from cosmos_policy_ros.config import ConfigError, config_path
from cosmos_policy_ros.data.aloha_hdf5 import read_episode, write_episode
from cosmos_policy_ros.data.stats import compute_statistics, write_statistics
from cosmos_policy_ros.errors import run_main
from cosmos_policy_ros.inference.preprocessing import Preprocessing
from cosmos_policy_ros.train.config import load_recipe

INSTRUCTIONS = {
    "transfer_cube": "pick up the red cube with the right arm and hand it over to the left arm",
    "insertion": "pick up the peg and the socket and insert the peg into the socket",
}


def generate_demos(out_dir: str | Path, n: int, *, task: str = "transfer_cube", first_seed: int = 0,
                   cameras: Sequence[str] = ("cam_high",), size: int = 64, keep_failures: bool = False,
                   progress: bool = True, compression: str | None = None, steps: int | None = None,
                   spawn_x: tuple[float, float] | None = None) -> dict:
    """Write n successful demos (seeds first_seed, first_seed+1, ...; failed seeds skipped unless kept).

    size: px, square renders; compression: of the frames (h5py name, e.g. "gzip"; larger renders need it);
    steps: episode length (default: the task's; shorter ones fail, for tests with keep_failures);
    spawn_x: (lo, hi) m: only seeds whose every object spawns with lo <= x <= hi (more demos where a policy
    fails: the edges of the spawn range); the seeds passed over are not run."""
    from cosmos_policy_ros.sim.episodes import run_demo_episode
    from cosmos_policy_ros.sim.sim_aloha import SimAloha

    out = Path(out_dir)
    sim = SimAloha(task, width=size, height=size)
    written, skipped, outside, seed = [], [], 0, first_seed
    t0 = time.time()
    try:
        if spawn_x is not None:
            check_spawn_x(spawn_x, sim.task)
        out.mkdir(parents=True, exist_ok=True)
        while len(written) < n:
            if spawn_x is not None and not spawns_within_x(sim.task, seed, spawn_x):
                outside += 1
                seed += 1
                continue
            ep = run_demo_episode(sim, task, seed, cameras=tuple(cameras), width=size, height=size, steps=steps)
            if ep.success or keep_failures:
                path = out / f"episode_{seed:05d}.hdf5"
                write_episode(path, ep.qpos, ep.qvel, ep.actions, ep.images, success=ep.success, task=task,
                              instruction=INSTRUCTIONS.get(task, task), seed=seed, compression=compression)
                written.append(path.name)
            else:
                skipped.append(seed)
            if progress:
                print(f"seed {seed}: success={ep.success} ({len(written)}/{n}, {time.time() - t0:.0f} s)", flush=True)
            seed += 1
    finally:
        sim.close()
    eps = [read_episode(out / w) for w in written]
    write_statistics(out / "dataset_statistics.json",
                     compute_statistics([e.actions for e in eps], [e.qpos for e in eps]))
    info = {"task": task, "episodes": written, "failed_seeds": skipped, "cameras": list(cameras), "size": size,
            "instruction": INSTRUCTIONS.get(task, task), "seconds": round(time.time() - t0, 1)}
    if spawn_x is not None:
        info["spawn_x"] = list(spawn_x)
        info["seeds_outside_spawn_x"] = outside
    (out / "demos.json").write_text(json.dumps(info, indent=1))
    return info


def check_spawn_x(spawn_x: tuple[float, float], task) -> None:
    """lo < hi, overlapping every object's x spawn range (else no seed would ever qualify): else one ConfigError."""
    lo, hi = (float(v) for v in spawn_x)
    if not lo < hi:
        raise ConfigError(f"--spawn-x {lo:g} {hi:g}: needs LO < HI (metres)")
    for obj, r in task.config.objects.items():
        if hi < r.x[0] or lo > r.x[1]:
            raise ConfigError(f"--spawn-x {lo:g} {hi:g}: outside the {task.name} {obj}'s x spawn range "
                             f"[{r.x[0]:g}, {r.x[1]:g}] m (config/sim/tasks.yaml)")


def spawns_within_x(task, seed: int, spawn_x: tuple[float, float]) -> bool:
    """Every object of this seed's episode spawns with x inside [lo, hi] (the draw SimAloha.reset makes)."""
    lo, hi = spawn_x
    return all(lo <= pose[0] <= hi for pose in task.sample_object_poses(seed).values())


def recipe_cameras(recipe: str) -> tuple[list[str], int]:
    """(cameras, square render side) a recipe's demos are rendered with: its layout's cameras, large enough that
    each camera's train.crop still spans the model's image_size."""
    model, train = load_recipe(resolve_recipe(recipe))
    lay = model.layout
    side = Preprocessing(crop=dict(train.crop)).square_render_side(lay.image_size, lay.cameras)
    return list(lay.cameras), side


def resolve_recipe(recipe: str) -> Path:
    """A recipe path as given, else config/train/<name>."""
    p = Path(recipe)
    return p if p.is_file() else config_path(Path("train") / recipe)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cosmos-aloha gen-demos", description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("-n", type=int, default=50, help="number of successful demos")
    p.add_argument("--task", default="transfer_cube", choices=sorted(INSTRUCTIONS))
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--cameras", default="cam_high", help="comma-separated camera names")
    p.add_argument("--size", type=int, default=64, help="square render size (the model's image_size)")
    p.add_argument("--recipe", default="", help="training recipe (config/train/*.yaml): its cameras, and the "
                   "render size its image_size and train.crop need (overrides --cameras/--size)")
    p.add_argument("--spawn-x", type=float, nargs=2, metavar=("LO", "HI"),
                   help="only seeds whose objects spawn with x in [LO, HI] m (denser demos at the spawn range's "
                   "edges); the other seeds are passed over")
    ns = p.parse_args(argv)
    cameras, size = [c for c in ns.cameras.split(",") if c], ns.size
    if ns.recipe:
        cameras, size = recipe_cameras(ns.recipe)
    info = generate_demos(ns.out_dir, ns.n, task=ns.task, first_seed=ns.first_seed, cameras=cameras, size=size,
                          compression="gzip" if size > 64 else None, spawn_x=ns.spawn_x)
    outside = f", {info['seeds_outside_spawn_x']} seeds outside --spawn-x passed over" if ns.spawn_x else ""
    print(f"wrote {len(info['episodes'])} episodes to {ns.out_dir} in {info['seconds']} s "
          f"(failed demo seeds skipped: {info['failed_seeds']}{outside})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, prog="cosmos-aloha gen-demos"))
