"""Does a checkpoint's camera latent carry the cube position, and how many images does it take to read it?

Renders cam_high at the bundle's training size for N seeded transfer-cube resets (seeds 5000+, disjoint
from demos and evaluations), encodes them with the bundle's frozen VAE exactly as training does, and fits
ridge regressions latent -> cube (x, y) on the first n images for several n, tested on the last quarter.
The same fit on raw pixels is the baseline. A policy cannot place its gripper better than this probe
does from the same number of distinct cube positions, so it tells "the encoder loses the cube" apart
from "too few demonstrations to learn the map" (docs/training.md, session 3).

    .venv/bin/python bench/bench_cube_probe.py [--checkpoint DIR] [--images 600] [--train 60 120 240 450]
Prints a table in cm; not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


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


def main() -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
    from cosmos_policy_ros.sim.sim_aloha import SimAloha
    from cosmos_policy_ros.train.latent_cache import encode_prefixes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="", help="bundle (default: the bundled sim checkpoint)")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--train", type=int, nargs="+", default=[60, 120, 300, 450])
    ns = p.parse_args()
    torch.set_num_threads(1)

    engine = build_engine(resolve_bundle(ns.checkpoint))
    model = engine.model
    size = model.cfg.layout.image_size
    cam = model.cfg.layout.cameras[0]
    t0 = time.time()
    sim = SimAloha("transfer_cube", width=size, height=size)
    images, xy = [], []
    for s in range(ns.images):
        sim.reset("transfer_cube", 5000 + s)
        images.append(sim.render([cam], width=size, height=size)[cam])
        xy.append(next(iter(sim.object_poses().values()))[:2])
    sim.close()
    images, xy = np.stack(images), np.stack(xy)
    t1 = time.time()
    z, _ = encode_prefixes(model, {cam: images})
    latents = z.reshape(len(images), -1).numpy().astype(np.float64)
    pixels = images.reshape(len(images), -1).astype(np.float64)
    t2 = time.time()

    test = slice(ns.images * 3 // 4, ns.images)
    chance = float(np.linalg.norm(xy[test] - xy[:test.start].mean(0), axis=1).mean())
    print(f"{ns.images} resets rendered {size}x{size} {cam} in {t1 - t0:.1f} s, encoded in {t2 - t1:.1f} s; "
          f"{len(xy[test])} test images; predicting the mean position misses by {chance * 100:.2f} cm")
    print(f"{'train images':>12} | {'VAE latent':>10} | {'raw pixels':>10}   (mean error, cm)")
    for n in ns.train:
        if n > test.start:
            continue
        print(f"{n:>12} | {ridge_error(latents, xy, n, test) * 100:>10.2f} | "
              f"{ridge_error(pixels, xy, n, test) * 100:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
