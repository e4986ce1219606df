"""The viewer: a large view of the workspace for people, whatever size the policy's cameras render at."""
from __future__ import annotations

import numpy as np
import pytest

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.sim.viewer import FreeView, ViewerConfig, ViewerSchedule, load_viewer_config, render_view


def test_the_configured_viewer_is_off_by_default_and_larger_than_the_policy_input():
    viewer = load_viewer_config()
    assert not viewer.enabled                      # the sim node renders it only when asked (the demo asks)
    assert viewer.width >= 320 and viewer.height >= 240
    assert isinstance(viewer.view(), FreeView)     # the free view across the table
    assert ViewerConfig(camera="cam_high").view() == "cam_high"


def test_a_bad_viewer_section_is_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "sim_node.yaml"
    bad.write_text("viewer: {width: 4}\n")
    with pytest.raises(cfg.ConfigError, match=r"sim_node.yaml: viewer: width/height must be at least 16 px"):
        load_viewer_config(str(bad))
    bad.write_text("viewer: {zoom: 2}\n")
    with pytest.raises(cfg.ConfigError, match=r"viewer.zoom: unknown key"):
        load_viewer_config(str(bad))


def test_the_viewer_renders_at_its_own_size_and_a_snapshot_renders_the_same(sim):
    sim.reset("transfer_cube", 3)
    viewer = ViewerConfig()
    image = render_view(sim, viewer)
    assert image.shape == (240, 320, 3) and image.std() > 10
    np.testing.assert_array_equal(render_view(sim, viewer, sim.snapshot()), image)
    assert render_view(sim, ViewerConfig(camera="cam_high", width=160, height=120)).shape == (120, 160, 3)


def test_schedule_gives_one_frame_per_period_of_simulated_time_and_restarts_on_reset():
    due = ViewerSchedule(rate_hz=5.0)
    times = [round(0.08 * k, 2) for k in range(14)]   # rendered camera steps at 12.5 Hz
    assert [t for t in times if due.due(t)] == [0.0, 0.24, 0.4, 0.64, 0.8, 1.04]
    assert due.due(0.02)                               # the episode was reset: start again
    assert not due.due(0.1) and due.due(0.3)
    assert due.due(5.0) and not due.due(5.1)           # far behind: no burst of catch-up frames
