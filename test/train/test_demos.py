"""`cosmos-aloha gen-demos --spawn-x`: demos only where the cube spawns in a chosen part of its x range (the edges
where the demo policy fails), and config/train/sim_crop_edges.yaml, the fine-tune recipe that trains on them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cosmos_policy_ros.sim.sim_aloha import SimAloha
from cosmos_policy_ros.train import demos
from cosmos_policy_ros.train.config import load_recipe

ROOT = Path(__file__).resolve().parents[2]


def test_spawn_x_runs_only_the_seeds_whose_cube_lands_inside(tmp_path):
    info = demos.generate_demos(tmp_path / "d", 2, first_seed=3000, steps=5, keep_failures=True, progress=False,
                                spawn_x=(0.16, 0.2))
    sim = SimAloha("transfer_cube", width=64, height=64)
    try:
        seeds = [int(name[len("episode_"):-len(".hdf5")]) for name in info["episodes"]]
        xs = [sim.task.sample_object_poses(s)["box"][0] for s in seeds]
        passed_over = [s for s in range(3000, seeds[-1]) if s not in seeds]
        assert all(0.16 <= x <= 0.2 for x in xs)
        assert passed_over and all(not demos.spawns_within_x(sim.task, s, (0.16, 0.2)) for s in passed_over)
    finally:
        sim.close()
    assert len(seeds) == 2 and info["seeds_outside_spawn_x"] == len(passed_over)
    assert json.loads((tmp_path / "d" / "demos.json").read_text())["spawn_x"] == [0.16, 0.2]


@pytest.mark.parametrize("lo, hi, says", [(0.3, 0.4, "outside the transfer_cube box's x spawn range [0, 0.2] m"),
                                          (0.2, 0.1, "needs LO < HI")])
def test_a_spawn_x_no_seed_can_meet_is_one_line_before_any_file(tmp_path, capsys, lo, hi, says):
    from cosmos_policy_ros.errors import run_main
    code = run_main(demos.main, [str(tmp_path / "d"), "-n", "1", "--spawn-x", str(lo), str(hi)], prog="gen-demos",
                    code=2)
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_the_edges_fine_tune_trains_on_what_the_parent_recipe_trained_on():
    """Its data preparation must be the parent's (crop, stride, camera norm, draws): the fine-tuned bundle is
    deployed with the preprocessing its recipe exports."""
    model, edges = load_recipe(ROOT / "config/train/sim_crop_edges.yaml", model_optional=True)
    _, parent = load_recipe(ROOT / "config/train/sim_crop.yaml")
    assert model is None
    own = {"seed", "steps", "lr"}
    raw = yaml.safe_load((ROOT / "config/train/sim_crop_edges.yaml").read_text())
    assert raw["train_from"] == "sim_crop.yaml" and set(raw["train"]) == own
    for key in set(yaml.safe_load((ROOT / "config/train/sim_crop.yaml").read_text())["train"]) - own:
        assert getattr(edges, key) == getattr(parent, key), key
    assert edges.lr < parent.lr and edges.crop == parent.crop and edges.crop
