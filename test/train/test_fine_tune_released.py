"""`cosmos-aloha train --init-from` upstream's released folder: the DiT weights (bf16 -> float32 net), the Wan2.1
tokenizer as the VAE, the statistics and Wan2.1's latent statistics are the parent's; the context is the
episodes' instruction's T5 embedding (the parent's pickle, or one `cosmos-aloha t5-embed` made, through
--t5-embeddings); the exported bundle carries it and runs in the engine; a missing instruction is one line.
Tiny model in the released layout (test/released_fixture.py), a few steps: seconds."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from released_fixture import write_released_folder, write_tiny_episodes
from tiny_t5 import write_tiny_t5

from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
from cosmos_policy_ros.model.checkpoint import read_state_dict
from cosmos_policy_ros.model.config import WAN21_LATENT_MEAN, WAN21_LATENT_STD
from cosmos_policy_ros.model.text import T5EmbeddingStore
from cosmos_policy_ros.train import cli
from cosmos_policy_ros.train.instruction_embeddings import context_file
from cosmos_policy_ros.train.t5_embed import main as t5_embed

ROOT = Path(__file__).resolve().parents[2]
CAMS = ("cam_left_wrist", "cam_right_wrist", "cam_high")


def write_recipe(d: Path, **train) -> Path:
    body = {"steps": 3, "batch_size": 4, "lr": 0.0002, "warmup_steps": 1, "sample_stride": 20,
            "checkpoint_every_s": 1e9, "log_every": 1, "threads": 1, "ema_decay": 0.9, **train}
    lines = [f"model: {ROOT / 'config/model/tiny_test.yaml'}", "train:", *(f"  {k}: {v}" for k, v in body.items())]
    (d / "recipe.yaml").write_text("\n".join(lines) + "\n")
    return d / "recipe.yaml"


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    return write_released_folder(tmp_path_factory.mktemp("released") / "Cosmos-Policy-ALOHA-Predict2-2B")


def _released_embedding(folder: Path, instruction: str) -> torch.Tensor:
    with open(folder / "aloha_t5_embeddings.pkl", "rb") as f:  # the fixture's own file: plain pickle is fine
        return pickle.load(f)[instruction][0].float()


def _acts(bundle: Path, instruction: str) -> None:
    engine = build_engine(resolve_bundle(bundle), device="cpu")
    obs = {"images": {c: np.zeros((64, 64, 3), np.uint8) for c in CAMS},
           "proprio": np.array(engine.stats.proprio_mean), "instruction": instruction}
    res = engine.act(obs, seed=0)
    assert res.actions.shape == (50, 14) and np.isfinite(res.actions).all()


def test_fine_tune_starts_from_every_released_file_and_its_bundle_runs(released, tmp_path):
    eps = write_tiny_episodes(tmp_path / "eps", "fold shirt")
    tr = cli.start(write_recipe(tmp_path), eps, tmp_path / "run", progress=False, init_from=released)
    net = tr.model.net.state_dict()
    raw = read_state_dict(released / "Cosmos-Policy-ALOHA-Predict2-2B.pt")
    assert all(net[k[4:]].dtype == torch.float32 and torch.equal(net[k[4:]].to(torch.bfloat16), v)
               for k, v in raw.items() if v.is_floating_point())                # bf16 -> float32 master copy
    vae = torch.load(released / "tokenizer" / "tokenizer.pth", weights_only=True)
    assert all(torch.equal(tr.model.vae.state_dict()[k].cpu(), v) for k, v in vae.items())
    assert tr.model.cfg.vae.latent_mean == WAN21_LATENT_MEAN and tr.model.cfg.vae.latent_std == WAN21_LATENT_STD
    assert torch.equal(tr.model.vae.latent_mean.cpu(), torch.tensor(WAN21_LATENT_MEAN))  # kept, not measured
    assert tr.stats == json.loads((released / "aloha_dataset_statistics.json").read_text())
    assert torch.equal(tr.context.cpu(), _released_embedding(released, "fold shirt"))   # not the stand-in
    tr.fit(progress=False)
    bundle = cli.export(tmp_path / "run", tmp_path / "bundle")
    carried = T5EmbeddingStore.load(bundle / "instruction_embeddings.pt")
    assert carried.instructions == ["fold shirt"]
    assert torch.equal(carried.get("fold shirt"), _released_embedding(released, "fold shirt"))
    assert json.loads((bundle / "policy.json").read_text())["init_from"] == str(released)
    _acts(bundle, "fold shirt")
    resumed = cli.resume(tmp_path / "run")                 # the checkpoint's embedding, not a stand-in
    assert torch.equal(resumed.context.cpu(), _released_embedding(released, "fold shirt"))


def test_a_new_instruction_from_t5_embed_trains_through_t5_embeddings(released, tmp_path, capsys):
    pytest.importorskip("transformers")
    t5 = write_tiny_t5(tmp_path / "tiny_t5", d_model=16)   # tiny_test: crossattn_emb_channels 16, text_len 8
    mine = tmp_path / "my_t5.pkl"
    assert t5_embed(["--out", str(mine), "--model", str(t5), "--device", "cpu", "--max-length", "8",
                     "--no-progress", "stack cups on plate"]) == 0
    eps = write_tiny_episodes(tmp_path / "eps", "stack cups on plate")
    argv = ["--config", str(write_recipe(tmp_path)), "--data", str(eps), "--run", str(tmp_path / "run"),
            "--init-from", str(released), "--no-progress"]
    assert cli.main([*argv, "--t5-embeddings", str(mine)]) == 0, capsys.readouterr().err
    bundle = cli.export(tmp_path / "run", tmp_path / "bundle")
    assert torch.equal(T5EmbeddingStore.load(bundle / "instruction_embeddings.pt").get("stack cups on plate"),
                       T5EmbeddingStore.load(mine).get("stack cups on plate"))
    _acts(bundle, "stack cups on plate")


def test_an_instruction_missing_from_the_t5_file_is_one_line_before_any_encoding(released, tmp_path, capsys):
    eps = write_tiny_episodes(tmp_path / "eps", "wipe the table", n=1)
    run = tmp_path / "run"
    code = cli.main(["--config", str(write_recipe(tmp_path)), "--data", str(eps), "--run", str(run),
                     "--init-from", str(released), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("error: "), err
    assert "'wipe the table'" in err and "aloha_t5_embeddings.pkl" in err and "cosmos-aloha t5-embed" in err
    assert not run.exists()                                  # failed before encoding anything


def test_train_t5_embeddings_is_found_beside_the_recipe(tmp_path):
    (tmp_path / "my_t5.pkl").write_bytes(b"")
    recipe = write_recipe(tmp_path, t5_embeddings="my_t5.pkl")
    assert context_file("my_t5.pkl", recipe, None) == tmp_path / "my_t5.pkl"
    assert context_file("", recipe, tmp_path / "parent.pkl") == tmp_path / "parent.pkl"
    assert context_file("", recipe, None) is None                           # no T5 file: the stand-in
    with pytest.raises(ValueError, match="nowhere.pkl: T5 embeddings file not found"):
        context_file("nowhere.pkl", recipe, None)
