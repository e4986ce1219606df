"""Read-back smoothing of the action chunk (sampler.action_smoothing)."""
from __future__ import annotations

import numpy as np
import pytest

from cosmos_policy_ros.inference.chunk_smoothing import smooth_chunk
from cosmos_policy_ros.model.config import SamplerConfig


def test_window_one_returns_the_chunk_and_a_ramp_keeps_its_interior():
    rng = np.random.default_rng(0)
    chunk = rng.normal(size=(2, 50, 14)).astype(np.float32)
    assert smooth_chunk(chunk, 1) is chunk
    ramp = np.linspace(0.0, 1.0, 50)[:, None] * np.arange(1, 15)[None]   # a smooth motion: untouched inside
    out = smooth_chunk(ramp, 9)
    assert out.shape == ramp.shape
    np.testing.assert_allclose(out[4:-4], ramp[4:-4], atol=1e-12)
    # the ends average with their own first/last action: pulled toward it, never past the chunk's range
    assert np.all(out[0] >= ramp[0]) and np.all(out[-1] <= ramp[-1])


def test_per_step_noise_shrinks_by_about_the_window_and_each_joint_is_its_own():
    rng = np.random.default_rng(1)
    noise = rng.normal(scale=0.03, size=(4000, 14))
    out = smooth_chunk(noise, 9)
    assert 0.25 < out[20:-20].std() / noise.std() < 0.4          # 1/sqrt(9) = 0.33
    second = np.diff(out, 2, axis=0).std() / np.diff(noise, 2, axis=0).std()
    assert second < 0.1                                          # the zig-zag the step cap was clipping
    one_joint = np.zeros((30, 14))
    one_joint[15, 3] = 9.0
    s = smooth_chunk(one_joint, 3)
    assert np.count_nonzero(s[:, [0, 1, 2, 4]]) == 0 and np.isclose(s[:, 3].sum(), 9.0)


@pytest.mark.parametrize("window", [0, 2, -3])
def test_an_even_or_empty_window_is_refused(window):
    with pytest.raises(ValueError, match="action_smoothing"):
        smooth_chunk(np.zeros((5, 2)), window)
    with pytest.raises(ValueError, match="action_smoothing"):
        SamplerConfig(action_smoothing=window).validate()
