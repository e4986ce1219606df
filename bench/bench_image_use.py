"""Does the policy read the cube from its cameras? The first chunk of an episode, across cube positions.

At an episode's first step both arms stand at the start pose, so the proprio is the same for every seed and
only the camera images tell where the cube lies; the demonstrator's first chunk then turns the right arm
toward it (waist std ~0.2 rad over the spawn range). For each demo episode in DEMOS this bench asks the
checkpoint for the first chunk (the engine the nodes use: crop, resize, VAE, sampler) and compares the right
arm's pose at the chunk's end with the demonstrator's:

* spread: std over episodes of the predicted joint against the demo's. A policy that ignores the images
  predicts one pose for every cube (spread ~0); one that reads them follows the demo's spread.
* corr / RMSE: per joint, predicted against demo, over the episodes.

A checkpoint can have a low training loss and still predict one first chunk for every cube (docs/training.md:
the sim_crop run at 2,844 steps, spread 0.001 rad against the demos' 0.2). Use it along a run's checkpoints
(seconds each) before spending episodes on `cosmos-aloha eval`.

    MUJOCO_GL=egl .venv/bin/python bench/bench_image_use.py [CHECKPOINT DEMOS [DEMOS ...]] [--episodes 20] [--t 0]
DEMOS: folders of scripted demos rendered for that checkpoint (`cosmos-aloha gen-demos DIR --recipe R`; its
training demos answer "has it learned to", unseen seeds "does it generalise"). Without them (`make bench`): the
demo's bundled checkpoint and demos rendered for it at unseen seeds (~8 s each). Prints a table; not a test.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

RIGHT_ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
RIGHT = slice(7, 13)   # the right arm's six joints in the 14-D ALOHA order


def bench_inputs(checkpoint: str, demos: list[str], n: int) -> tuple[str, list[str]]:
    """The checkpoint and demo folders to measure. None given: the demo's bundled checkpoint and n scripted demos
    rendered as its training demos were (its cameras, its render size) at seeds 3000+, which no bundle trained on,
    in a temporary folder."""
    if checkpoint and demos:
        return checkpoint, demos
    if checkpoint or demos:
        raise SystemExit("error: give both CHECKPOINT and DEMOS, or neither (the bundled checkpoint, fresh demos)")
    import atexit
    import shutil
    import tempfile

    from cosmos_policy_ros.deploy.bundle import default_demo_checkpoint, resolve_bundle
    from cosmos_policy_ros.train.demos import generate_demos

    checkpoint = default_demo_checkpoint()
    bundle = resolve_bundle(checkpoint)
    lay = bundle.model_config.layout
    size = bundle.preprocessing.square_render_side(int(lay.image_size), lay.cameras)
    folder = tempfile.mkdtemp(prefix="bench_demos_")
    atexit.register(shutil.rmtree, folder, True)
    print(f"no CHECKPOINT/DEMOS given: {checkpoint}, {n} demos rendered for it ({', '.join(lay.cameras)} at "
          f"{size} px, seeds 3000+, removed afterwards)", flush=True)
    generate_demos(folder, n, first_seed=3000, cameras=lay.cameras, size=size, compression="gzip", progress=False)
    return str(checkpoint), [folder]


def spread_episodes(demos, n: int) -> list:
    """n demo episode files spread evenly over the folders' sorted episodes (all of them when there are fewer)."""
    from cosmos_policy_ros.data.aloha_hdf5 import list_episodes

    paths = sorted(q for d in demos for q in list_episodes(d))
    if not paths:
        raise SystemExit(f"error: no episodes in {demos}")
    return [paths[i] for i in np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int)]


def first_chunks(engine, meta: dict, paths, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, demo) right-arm poses at the end of the chunk observed at step t, one row per episode."""
    from cosmos_policy_ros.data.aloha_hdf5 import read_episode

    cams, n = engine.cfg.layout.cameras, engine.cfg.layout.chunk_len
    pred, demo = [], []
    for p in paths:
        ep = read_episode(p, cams)
        obs = {"images": {c: ep.images[c][t] for c in cams}, "proprio": ep.qpos[t],
               "instruction": meta["instruction"]}
        chunk = engine.act(obs).actions
        end = min(n, len(ep.actions) - t) - 1
        pred.append(chunk[end, RIGHT])
        demo.append(ep.actions[t + end, RIGHT])
    return np.array(pred), np.array(demo)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default="",
                   help="bundle or training checkpoint (its EMA weights, as `cosmos-aloha eval`); default: the demo's")
    p.add_argument("demos", nargs="*", help="folders of demo episodes rendered for this checkpoint; default: fresh")
    p.add_argument("--episodes", type=int, default=20, help="spread evenly over the folders' episodes")
    p.add_argument("--t", type=int, default=0, help="observation step (0: the start pose, images alone differ)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--camera-guidance", type=float, default=None,
                   help="override the checkpoint's sampler.camera_guidance (0 = off)")
    ns = p.parse_args()

    import torch

    from cosmos_policy_ros.evaluation.in_process import engine_from_dir

    torch.set_num_threads(ns.threads)
    ns.checkpoint, ns.demos = bench_inputs(ns.checkpoint, ns.demos, ns.episodes)
    paths = spread_episodes(ns.demos, ns.episodes)
    engine, meta = engine_from_dir(ns.checkpoint, sampler=None if ns.camera_guidance is None
                                   else {"camera_guidance": ns.camera_guidance})
    t0 = time.perf_counter()
    pred, demo = first_chunks(engine, meta, paths, ns.t)
    print(f"{ns.checkpoint} (step {meta.get('step', '?')}): chunk observed at step {ns.t} of {len(paths)} demo "
          f"episodes, right arm at the chunk's end ({time.perf_counter() - t0:.0f} s)")
    print("| joint | demo spread (rad) | predicted spread | corr | RMSE (rad) |\n|---|---|---|---|---|")
    for j, name in enumerate(RIGHT_ARM):
        d, q = demo[:, j], pred[:, j]
        corr = float(np.corrcoef(q, d)[0, 1]) if q.std() > 1e-9 and d.std() > 1e-9 else float("nan")
        print(f"| {name} | {d.std():.3f} | {q.std():.3f} | {corr:.2f} | {np.sqrt(np.mean((q - d) ** 2)):.3f} |")
    ratio = float(np.mean(pred.std(0)) / max(np.mean(demo.std(0)), 1e-9))
    print(f"mean spread ratio (predicted / demo): {ratio:.2f}  (0: one chunk for every cube; 1: as the demos)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
