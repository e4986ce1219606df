"""Latent layout: frame indices, inject -> readout round trip, condition masks, pixel sequence."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.config import LayoutConfig


@pytest.fixture(scope="module")
def aloha():
    return L.LatentLayout.from_config(LayoutConfig())


def test_aloha_indices_match_upstream(aloha):
    assert aloha.describe() == {
        0: "blank", 1: "proprio", 2: "cam_left_wrist", 3: "cam_right_wrist", 4: "cam_high",
        5: "action", 6: "future_proprio", 7: "future_cam_left_wrist", 8: "future_cam_right_wrist",
        9: "future_cam_high", 10: "value"}
    assert aloha.num_frames == 11 and aloha.num_pixel_frames == 41 and aloha.num_conditional_frames == 5


def test_four_camera_layout():
    lay = L.LatentLayout(("a", "b", "c", "d"), 50, 14, 14)
    assert lay.num_frames == 13 and lay.action == 6 and lay.value == 12
    assert lay.future_camera_frames == (8, 9, 10, 11)


def test_condition_masks(aloha):
    def m(q):
        return L.condition_mask(aloha, q)[0].int().tolist()
    assert m("policy") == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert m("world") == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert m("value") == [1] * 10 + [0]
    assert m("value_sprime") == [1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0]  # spec 7.2
    assert m("q_value") == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError):
        L.condition_mask(aloha, "nonsense")


def test_tiling_matches_upstream_counts():
    """700-long action vector over 12,544 values: 17 full copies + 644 values of the 18th."""
    vec = torch.arange(700, dtype=torch.float)[None]
    frame = L.tile_to_frame(vec, (16, 28, 28))
    flat = frame.reshape(-1)
    assert flat.numel() == 12544
    assert torch.equal(flat[700:1400], vec[0]) and torch.equal(flat[17 * 700:], vec[0, :644])
    # the read-back ignores the partial copy: corrupting it changes nothing
    frame2 = frame.clone().reshape(1, -1)
    frame2[0, 17 * 700:] = 1e6
    assert torch.equal(L.read_from_frame(frame2.reshape(1, 16, 28, 28), 700), vec)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(0, 2 ** 31 - 1))
def test_inject_readout_round_trip(batch, seed, ):
    g = torch.Generator().manual_seed(seed)
    lay = L.LatentLayout(("l", "r", "h"), 50, 14, 14)
    latent = torch.randn(batch, 16, 11, 8, 8, generator=g)
    actions = torch.rand(batch, 50, 14, generator=g) * 2 - 1
    proprio = torch.rand(batch, 14, generator=g) * 2 - 1
    fut = torch.rand(batch, 14, generator=g) * 2 - 1
    value = torch.rand(batch, generator=g) * 2 - 1
    z = L.inject_state(latent, lay, proprio=proprio, actions=actions, future_proprio=fut, value=value)
    assert torch.allclose(L.read_actions(z, lay), actions, atol=1e-6)
    assert torch.allclose(L.read_proprio(z, lay, future=False), proprio, atol=1e-6)
    assert torch.allclose(L.read_proprio(z, lay, future=True), fut, atol=1e-6)
    assert torch.allclose(L.read_value(z, lay), (value + 1) / 2, atol=1e-6)
    # untouched frames stay as they were
    for f in (0, 2, 3, 4, 7, 8, 9):
        assert torch.equal(z[:, :, f], latent[:, :, f])


def test_readout_averages_copies():
    frame = L.tile_to_frame(torch.ones(1, 6), (1, 4, 3))  # 12 values = 2 copies
    frame[0, 0, 0, 0] = 3.0  # first copy's first entry off by +2 -> mean off by +1
    assert L.read_from_frame(frame, 6)[0, 0].item() == pytest.approx(2.0)
    with pytest.raises(ValueError):
        L.read_from_frame(torch.zeros(1, 1, 2, 2), 6)


def test_value_readout_clamps():
    lay = L.LatentLayout(("c",), 1, 1, 1)
    z = torch.zeros(2, 1, lay.num_frames, 2, 2)
    z[0, :, lay.value] = 5.0
    z[1, :, lay.value] = -5.0
    assert L.read_value(z, lay).tolist() == [1.0, 0.0]


def test_pixel_sequence_order(aloha):
    imgs = {c: torch.full((1, 4, 4, 3), i + 1, dtype=torch.uint8) for i, c in enumerate(aloha.cameras)}
    vid = L.build_pixel_sequence(imgs, aloha)
    assert vid.shape == (1, 3, 41, 4, 4)
    per_frame = vid[0, 0, :, 0, 0].tolist()
    assert per_frame[0] == 0 and per_frame[1:5] == [0] * 4            # blank, proprio placeholder
    assert per_frame[5:9] == [1] * 4 and per_frame[9:13] == [2] * 4 and per_frame[13:17] == [3] * 4
    assert per_frame[17:25] == [0] * 8                                 # action, future proprio
    assert per_frame[25:37] == [1] * 4 + [2] * 4 + [3] * 4             # future cams = current
    assert per_frame[37:] == [0] * 4                                   # value
    with pytest.raises(KeyError):
        L.build_pixel_sequence({"cam_high": imgs["cam_high"]}, aloha)
