"""`cosmos-aloha t5-embed` writes upstream's T5 pickle: loadable by the engine's store, (1, L, D) bf16, zero past
the tokens, equal to running the encoder by hand, appended to without touching earlier entries; expected
failures are one line. A tiny random T5 made in the test stands in for T5-11B (no downloads here)."""
from __future__ import annotations

import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from released_fixture import INSTRUCTIONS, write_released_folder
from tiny_t5 import encode_directly, write_tiny_t5

from cosmos_policy_ros import cli as top_cli
from cosmos_policy_ros.data.aloha_hdf5 import write_episode
from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
from cosmos_policy_ros.model.text import T5EmbeddingStore, UnknownInstructionError
from cosmos_policy_ros.train.t5_embed import main

pytest.importorskip("transformers")

LENGTH, DIM = 8, 16  # config/model/tiny_test.yaml: text_len, dit.crossattn_emb_channels


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    return write_tiny_t5(tmp_path_factory.mktemp("tiny_t5"), d_model=DIM)


def _embed(t5_dir: Path, out: Path, *args: str) -> int:
    return main(["--out", str(out), "--model", str(t5_dir), "--device", "cpu", "--max-length", str(LENGTH),
                 "--no-progress", *args])


def _raw(path: Path) -> dict:
    with open(path, "rb") as f:  # our own test file: plain pickle is fine here
        return pickle.load(f)


def test_embedding_is_upstreams_entry_loadable_by_the_engine_store(t5_dir, tmp_path):
    out = tmp_path / "t5.pkl"
    assert _embed(t5_dir, out, "fold shirt") == 0
    raw = _raw(out)
    assert list(raw) == ["fold shirt"]
    assert raw["fold shirt"].shape == (1, LENGTH, DIM) and raw["fold shirt"].dtype == torch.bfloat16
    emb = T5EmbeddingStore.load(out).get("fold shirt")              # the engine's restricted reader
    assert emb.shape == (LENGTH, DIM)
    tokens = 3                                                     # "fold", "shirt", </s>
    assert torch.count_nonzero(emb[tokens:]) == 0                  # padding: exactly zero, as upstream
    assert (emb[:tokens].abs().sum(dim=1) > 0).all()
    assert torch.equal(raw["fold shirt"], encode_directly(t5_dir, "fold shirt", LENGTH))


def test_adding_keeps_earlier_entries_and_replaces_one_only_with_overwrite(t5_dir, tmp_path):
    released = write_released_folder(tmp_path / "released")
    out = tmp_path / "my_t5.pkl"
    shutil.copy(released / "aloha_t5_embeddings.pkl", out)
    before = _raw(out)
    assert _embed(t5_dir, out, "stack cups on plate") == 0
    after = _raw(out)
    assert set(after) == {*INSTRUCTIONS, "stack cups on plate"}
    assert all(torch.equal(after[s], before[s]) for s in INSTRUCTIONS)        # bit-exact, still bf16
    assert _embed(t5_dir, out, "fold shirt") == 0                              # already there: kept
    assert torch.equal(_raw(out)["fold shirt"], before["fold shirt"])
    assert _embed(t5_dir, out, "fold shirt", "--overwrite") == 0
    assert torch.equal(_raw(out)["fold shirt"], encode_directly(t5_dir, "fold shirt", LENGTH))
    assert not list(tmp_path.glob(".my_t5.pkl.*"))                             # no temporary file left


def test_instructions_of_recorded_episodes_are_embedded(t5_dir, tmp_path):
    eps = tmp_path / "eps"
    T = 4
    for e, instruction in enumerate(("put candy in bag", "do the toy task", "put candy in bag")):
        imgs = {c: np.zeros((T, 8, 8, 3), np.uint8) for c in ("cam_high",)}
        write_episode(eps / f"episode_{e}.hdf5", np.zeros((T, 14)), np.zeros((T, 14)), np.zeros((T, 14)), imgs,
                      success=True, task="toy", instruction=instruction)
    out = tmp_path / "t5.pkl"
    assert _embed(t5_dir, out, "fold shirt", "--from-episodes", str(eps)) == 0
    assert T5EmbeddingStore.load(out).instructions == ["do the toy task", "fold shirt", "put candy in bag"]


def test_the_engine_runs_an_added_instruction_and_names_a_missing_one_in_one_line(t5_dir, tmp_path):
    released = write_released_folder(tmp_path / "released")
    out = tmp_path / "t5.pkl"
    assert _embed(t5_dir, out, "stack cups on plate") == 0
    engine = build_engine(resolve_bundle(released, model_config="tiny_test.yaml", t5_embeddings=str(out)),
                          device="cpu")
    obs = {"images": {c: np.zeros((64, 64, 3), np.uint8) for c in engine.layout.cameras},
           "proprio": np.array(engine.stats.proprio_mean), "instruction": "stack cups on plate"}
    res = engine.act(obs, seed=0)
    assert res.actions.shape == (50, 14) and np.isfinite(res.actions).all()
    with pytest.raises(UnknownInstructionError) as err:
        engine.act({**obs, "instruction": "wipe the table"}, seed=0)
    assert "\n" not in str(err.value) and "'wipe the table'" in str(err.value) and str(out) in str(err.value)


def _one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_expected_failures_are_one_line(t5_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "t5.pkl"
    err = _one_line_error(capsys, _embed(tmp_path / "no_such_t5", out, "fold shirt"))
    assert "no_such_t5: T5 model folder not found" in err
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle at all")
    err = _one_line_error(capsys, _embed(t5_dir, tmp_path / "garbage.pkl", "fold shirt"))
    assert "garbage.pkl: not a T5 embeddings file" in err
    other = tmp_path / "other_width.pkl"
    with open(other, "wb") as f:
        pickle.dump({"x": torch.zeros(1, 512, 1024, dtype=torch.bfloat16)}, f)
    err = _one_line_error(capsys, _embed(t5_dir, other, "fold shirt"))
    assert "(1, 512, 1024)" in err and f"(1, {LENGTH}, {DIM})" in err
    err = _one_line_error(capsys, _embed(t5_dir, tmp_path / "no_dir" / "t5.pkl", "fold shirt"))
    assert "does not exist" in err
    err = _one_line_error(capsys, _embed(t5_dir, out, "--from-episodes", str(tmp_path / "no_eps")))
    assert "no_eps" in err
    if not torch.cuda.is_available():
        err = _one_line_error(capsys, _embed(t5_dir, out, "fold shirt", "--device", "cuda"))
        assert "no CUDA device" in err
    monkeypatch.setitem(sys.modules, "transformers", None)                   # not installed
    err = _one_line_error(capsys, _embed(t5_dir, out, "fold shirt"))
    assert "pip install -r requirements/t5.txt" in err
    assert not out.exists()


def test_the_command_is_in_cosmos_aloha():
    assert top_cli.TOOLS["t5-embed"][0] == "cosmos_policy_ros.train.t5_embed"
