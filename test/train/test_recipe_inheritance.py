"""`train_from:` in a training recipe: the train section starts from another recipe's, so a fine-tune names
only what it changes and cannot drift from its parent's data preparation."""
from __future__ import annotations

import pytest

from cosmos_policy_ros.config import share_dir
from cosmos_policy_ros.model.config import ConfigError
from cosmos_policy_ros.train.config import load_recipe

PARENT = """\
model:
  dit: {num_blocks: 2}
train:
  seed: 0
  steps: 8000
  lr: 0.0005
  sample_stride: 5
  crop:
    cam_high: [0.35, 0.45, 0.75, 0.85]
"""


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def test_own_keys_replace_the_parents_and_the_rest_is_inherited(tmp_path):
    write(tmp_path, "parent.yaml", PARENT)
    child = write(tmp_path, "child.yaml", "train_from: parent.yaml\ntrain:\n  steps: 5000\n  lr: 0.00025\n")
    model, train = load_recipe(child, model_optional=True)
    _, parent = load_recipe(tmp_path / "parent.yaml")
    assert model is None                                   # the parent's model is not taken
    assert (train.steps, train.lr) == (5000, 0.00025)
    assert (train.sample_stride, train.crop, train.seed) == (parent.sample_stride, parent.crop, parent.seed)
    assert train.crop and train.sample_stride == 5


def test_inheritance_chains_and_a_whole_key_is_replaced(tmp_path):
    write(tmp_path, "parent.yaml", PARENT)
    write(tmp_path, "mid.yaml", "train_from: parent.yaml\ntrain:\n  seed: 3\n")
    leaf = write(tmp_path, "leaf.yaml", "train_from: mid.yaml\ntrain:\n  crop:\n    cam_low: [0, 0, 0.5, 0.5]\n")
    _, train = load_recipe(leaf, model_optional=True)
    assert train.seed == 3 and train.steps == 8000
    assert set(train.crop) == {"cam_low"}                  # replaced, not merged with the parent's cam_high


@pytest.mark.parametrize("files, needle", [
    ({"a.yaml": "train_from: missing.yaml\n"}, "train_from:"),
    ({"a.yaml": "train_from: 3\n"}, "expected a recipe file name"),
    ({"a.yaml": "train_from: b.yaml\n", "b.yaml": "train_from: a.yaml\n"}, "makes a loop"),
    ({"a.yaml": "train_from: a.yaml\n"}, "makes a loop"),
    ({"a.yaml": "train_form: b.yaml\n"}, "unknown top-level key 'train_form'"),
    ({"a.yaml": "train: [1, 2]\n"}, "train: expected a mapping"),
])
def test_bad_inheritance_fails_in_one_line_naming_the_file(tmp_path, files, needle):
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_recipe(tmp_path / "a.yaml", model_optional=True)
    message = str(info.value)
    assert needle in message and message.startswith(str(tmp_path)) and "\n" not in message


def test_a_bad_key_in_the_parent_is_named_in_the_parent(tmp_path):
    write(tmp_path, "b.yaml", "train:\n  stpes: 3\n")
    write(tmp_path, "a.yaml", "train_from: b.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(tmp_path / "a.yaml", model_optional=True)
    assert str(info.value).startswith(f"{tmp_path / 'b.yaml'}: train.stpes: unknown key")


def test_a_recipe_named_under_config_finds_its_parent_from_any_working_directory(tmp_path, monkeypatch):
    """`--config train/sim_crop_edges.yaml` from elsewhere: the parent is looked up beside the file found."""
    monkeypatch.chdir(tmp_path)
    _, train = load_recipe("train/sim_crop_edges.yaml", model_optional=True)
    _, parent = load_recipe(share_dir() / "config/train/sim_crop.yaml")
    assert train.crop == parent.crop and train.steps == 5000
