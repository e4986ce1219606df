"""The latent cache: reuse and resume by manifest, upstream augmentation per (seed, episode, copy), the same
preprocessing as the inference engine, memory-mapped batches equal to in-memory ones, 480x640 recordings at 224.

Tiny VAEs (tiny_test and a 224-px variant of it) on synthetic episodes: seconds each.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cosmos_policy_ros.data.aloha_hdf5 import read_episode, write_episode
from cosmos_policy_ros.inference.engine import PolicyEngine
from cosmos_policy_ros.inference.images import preprocess_image
from cosmos_policy_ros.inference.normalization import DatasetStats
from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.text import T5EmbeddingStore
from cosmos_policy_ros.train import augment as aug
from cosmos_policy_ros.train import cli
from cosmos_policy_ros.train.config import TrainConfig
from cosmos_policy_ros.train.dataset import LatentSampleSet
from cosmos_policy_ros.train.latent_store import FrameEncoder
from cosmos_policy_ros.train.prepare import (
    encode_latents,
    encode_settings,
    episode_files,
    inference_preprocessing,
    training_preprocessing,
)
from cosmos_policy_ros.train.trainer import build_for_run

ROOT = Path(__file__).resolve().parents[2]
CAMS = ("cam_left_wrist", "cam_right_wrist", "cam_high")
INSTRUCTION = "do the toy task"


def make_episodes(d: Path, n: int = 3, T: int = 8, shape: tuple[int, int] = (64, 64), first: int = 0) -> Path:
    """n synthetic ALOHA episodes with random frames of `shape` for the three cameras."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(first)
    for e in range(first, first + n):
        qpos = np.sin(np.linspace(0, 1, T)[:, None] * np.arange(1, 15) + e).astype(np.float32)
        imgs = {c: (rng.random((T, *shape, 3)) * 255).astype(np.uint8) for c in CAMS}
        write_episode(d / f"episode_{e}.hdf5", qpos, qpos * 0, np.roll(qpos, -1, axis=0), imgs, success=True,
                      task="toy", instruction=INSTRUCTION, seed=e)
    return d


def model_224(tmp: Path) -> Path:
    """tiny_test at layout.image_size 224 (28x28 latents, 14x14 tokens)."""
    cfg = yaml.safe_load((ROOT / "config/model/tiny_test.yaml").read_text())
    cfg["model"]["layout"]["image_size"] = 224
    cfg["model"]["dit"].update(max_img_h=28, max_img_w=28)
    cfg["model"]["name"] = "tiny_test_224"
    p = tmp / "tiny_224.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def recipe(tmp: Path, model: Path | None = None, **train) -> Path:
    body = {"steps": 2, "batch_size": 4, "warmup_steps": 1, "sample_stride": 3, "checkpoint_every_s": 1e9,
            "threads": 1, "encode_batch": 4}
    body.update(train)
    p = tmp / "recipe.yaml"
    p.write_text(yaml.safe_dump({"model": str(model or ROOT / "config/model/tiny_test.yaml"), "train": body}))
    return p


class Encoded:
    """Runs encode_latents on a directory with the tiny model and counts what it encoded."""

    def __init__(self, tmp: Path, data: Path, **train):
        self.tmp, self.data = tmp, data
        self.cfg = TrainConfig(sample_stride=3, encode_batch=4, **train)
        self.model = build_for_run(cli.load_recipe(recipe(tmp))[0], 0, "cpu")

    def __call__(self):
        files = episode_files(self.data)
        eps = [read_episode(p) for p in files]
        return encode_latents(files, eps, self.tmp / "run", self.cfg, self.model, "cpu", progress=False)


def test_unchanged_cache_is_reused_and_a_changed_episode_alone_is_re_encoded(tmp_path):
    enc = Encoded(tmp_path, make_episodes(tmp_path / "eps"))
    store, sources, done = enc()
    assert len(done) == 3
    assert enc()[2] == []                                                     # nothing changed: no encode
    before = {p.name: p.stat().st_mtime_ns for p in store.dir.glob("ep_*.npy")}
    make_episodes(tmp_path / "eps", n=1, first=1)                             # rewrite episode_1
    _, _, done = enc()
    assert done == [str((tmp_path / "eps" / "episode_1.hdf5").resolve())]
    after = {p.name: p.stat().st_mtime_ns for p in store.dir.glob("ep_*.npy")}
    assert sum(before[k] != after[k] for k in before) == 1
    enc.cfg = TrainConfig(sample_stride=3, encode_batch=4, latent_dtype="float32")   # other settings: all again
    assert len(enc()[2]) == 3


def test_interrupted_encode_resumes_with_the_unfinished_episodes_only(tmp_path, monkeypatch):
    enc = Encoded(tmp_path, make_episodes(tmp_path / "eps"))
    calls = {"n": 0}
    real = FrameEncoder.encode

    def crash_in_second_episode(self, episode, frames):
        if episode.endswith("episode_1.hdf5"):
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(self, episode, frames)

    monkeypatch.setattr(FrameEncoder, "encode", crash_in_second_episode)
    with pytest.raises(KeyboardInterrupt):
        enc()
    monkeypatch.setattr(FrameEncoder, "encode", real)
    _, _, done = enc()
    assert [Path(k).name for k in done] == ["episode_1.hdf5", "episode_2.hdf5"]


def test_augmentation_parameters_are_in_range_and_fixed_per_seed_episode_and_copy():
    draws = [aug.draw_params(224, 0, f"/data/episode_{e}.hdf5", c) for e in range(40) for c in range(3)]
    for p in draws:
        assert p.crop == 213 and 0 <= p.top <= 11 and 0 <= p.left <= 11
        assert -5 <= p.angle <= 5 and 0.7 <= p.brightness <= 1.3 and 0.6 <= p.contrast <= 1.4
        assert 0.5 <= p.saturation <= 1.5 and -0.05 <= p.hue <= 0.05
    assert aug.draw_params(224, 0, "/data/episode_3.hdf5", 1) == draws[3 * 3 + 1]
    assert len({p for p in draws}) == len(draws)                                    # copies and episodes differ
    assert aug.draw_params(224, 1, "/data/episode_3.hdf5", 1) != draws[3 * 3 + 1]   # and seeds
    black = torch.zeros(1, 224, 224, 3, dtype=torch.uint8)
    assert not aug.augment(black, draws[0]).any()                                   # blank slots stay black


def test_one_draw_serves_every_camera_and_frame_of_an_episode_copy(tmp_path):
    model = build_for_run(cli.load_recipe(recipe(tmp_path))[0], 0, "cpu")
    settings = encode_settings(model, TrainConfig(augment_copies=2))
    encoder = FrameEncoder(model.vae, model.layout, settings, "cpu")
    frame = torch.from_numpy((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    same = {c: frame.expand(3, 64, 64, 3).contiguous() for c in CAMS}
    v0, v1 = encoder.view("ep", same, 0), encoder.view("ep", same, 1)
    for v in (v0, v1):
        assert all(torch.equal(v[c][i], v[CAMS[0]][0]) for c in CAMS for i in range(3))
    assert not torch.equal(v0[CAMS[0]], v1[CAMS[0]]) and not torch.equal(v0[CAMS[0]], frame[None])
    assert torch.equal(encoder.view("ep", same, 1)[CAMS[0]], v1[CAMS[0]])          # deterministic
    encoder.close()


def test_recorded_480x640_episode_at_224_caches_what_the_engine_computes(tmp_path):
    """The un-augmented cache of a 480x640 three-camera recording equals the engine's latents of the same raw
    frames (preprocess_image + VAE), and such a run trains at a tiny 224 config."""
    data = make_episodes(tmp_path / "eps", n=1, T=6, shape=(480, 640))
    r = recipe(tmp_path, model_224(tmp_path), latent_dtype="float32", sample_stride=5)
    assert cli.main(["--config", str(r), "--data", str(data), "--run", str(tmp_path / "run"), "--encode-only",
                     "--no-progress"]) == 0
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "latents").iterdir()}
    tr = cli.start(r, data, tmp_path / "run", progress=False)
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "latents").iterdir()}   # reused
    ep = read_episode(next(data.glob("*.hdf5")), CAMS)
    model = build_for_run(cli.load_recipe(r)[0], 0, "cpu")            # the VAE that encoded (unfolded stats)
    prep = training_preprocessing(tr.cfg)
    engine = PolicyEngine(model, DatasetStats.from_dict(tr.stats), T5EmbeddingStore({INSTRUCTION: tr.context}),
                          preprocessing=prep)
    assert prep == inference_preprocessing(tr.cfg) and not prep.center_crop
    lay = model.layout
    for t, row in ((0, int(tr.data.table.row_t[0])), (5, int(tr.data.table.row_f[0]))):
        images = {c: torch.stack([preprocess_image(ep.images[c][t], 224, prep)]) for c in CAMS}
        clean = model.encode_video(L.build_pixel_sequence(images, lay))
        cached = tr.data.latents.read(np.array([row]), np.array([0]))[0]
        for k, cam in enumerate(CAMS):
            torch.testing.assert_close(cached[k], clean[0, :, lay.camera(cam)], atol=1e-4, rtol=1e-4)
    obs = {"images": {c: ep.images[c][0] for c in CAMS}, "proprio": ep.qpos[0], "instruction": INSTRUCTION}
    given = engine.prepare(obs).clean
    cached = tr.data.latents.read(np.array([int(tr.data.table.row_t[0])]), np.array([0]))[0]
    for k, cam in enumerate(CAMS):
        torch.testing.assert_close(cached[k], given[0, :, lay.camera(cam)], atol=1e-4, rtol=1e-4)
    tr.fit(progress=False, checkpoint=False)
    assert tr.step == 2 and np.isfinite(tr.history[-1]["loss"])


def test_memory_mapped_sample_set_batches_like_the_in_memory_one_and_pickles_small(tmp_path):
    data = make_episodes(tmp_path / "eps", n=2, T=12)
    tr = cli.start(recipe(tmp_path, augment_copies=2), data, tmp_path / "run", progress=False)
    ds = tr.data
    assert ds.num_aug_copies == 2
    mem = LatentSampleSet(ds.layout, ds.table, ds.latents.load(), ds.shift, ds.scale)
    idx = np.array([0, 3, 5, 1, 2, 7, 6, 4]) % len(ds)
    kinds = ds.kinds_for(8, (0.5, 0.25, 0.25))
    copies = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    x_map, m_map = ds.batch(idx, kinds, aug_copy=copies)
    x_mem, m_mem = mem.batch(idx, kinds, aug_copy=copies)
    assert torch.equal(x_map, x_mem) and torch.equal(m_map, m_mem)
    assert not torch.equal(x_map, ds.batch(idx, kinds)[0])                 # copy 1 differs from copy 0
    blob = pickle.dumps(ds)
    assert len(blob) < 64_000                                               # no latents inside
    clone = pickle.loads(blob)
    assert clone.latents._maps is None                                      # maps open lazily, per process
    assert torch.equal(clone.batch(idx, kinds, aug_copy=copies)[0], x_map)
    assert clone.latents._pid == os.getpid()
    with pytest.raises(ValueError, match="aug_copy must be in"):
        ds.batch(idx, kinds, aug_copy=copies + 1)
