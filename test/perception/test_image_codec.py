from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.perception.image_codec import ImageFormatError, fill_image, image_to_rgb, resize_nearest
from cosmos_policy_ros.perception.stream_stats import StreamStats


def _msg(arr, encoding, pad=0):
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    rows = arr.reshape(h, w * c)
    rows = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)
    return SimpleNamespace(height=h, width=w, encoding=encoding, step=w * c + pad, is_bigendian=0,
                           data=rows.tobytes())


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_decode_rgb_bgr_rgba_mono_with_row_padding(rgb, pad):
    assert np.array_equal(image_to_rgb(_msg(rgb, "rgb8", pad)), rgb)
    assert np.array_equal(image_to_rgb(_msg(rgb[..., ::-1].copy(), "bgr8", pad)), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(_msg(rgba, "rgba8", pad)), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(image_to_rgb(_msg(bgra, "bgra8", pad)), rgb)
    grey = rgb[..., 0].copy()
    assert np.array_equal(image_to_rgb(_msg(grey, "mono8", pad)), np.repeat(grey[..., None], 3, axis=2))


def test_encode_round_trip(rgb):
    for enc in ("rgb8", "bgr8"):
        msg = fill_image(SimpleNamespace(), rgb, enc)
        assert msg.step == 21 and msg.encoding == enc
        assert np.array_equal(image_to_rgb(msg), rgb)


def test_bad_images_raise_one_clear_error(rgb):
    with pytest.raises(ImageFormatError, match="unsupported image encoding '16UC1'"):
        image_to_rgb(_msg(rgb, "16UC1"))
    short = _msg(rgb, "rgb8")
    short.data = short.data[:-10]
    with pytest.raises(ImageFormatError, match="data has 95 bytes, expected 105"):
        image_to_rgb(short)
    with pytest.raises(ImageFormatError, match="step 20 is smaller"):
        m = _msg(rgb, "rgb8")
        m.step = 20
        image_to_rgb(m)
    with pytest.raises(ImageFormatError, match="expected HxWx3 uint8"):
        fill_image(SimpleNamespace(), rgb.astype(np.float32))


def test_resize_nearest(rgb):
    out = resize_nearest(rgb, 10, 14)
    assert out.shape == (10, 14, 3)
    assert np.array_equal(out[::2, ::2], rgb)


def test_stream_stats_rate_age_and_gap():
    s = StreamStats("cam", window_s=1.0)
    for i in range(31):
        s.tick(10.0 + i / 30)
    r = s.report(11.0)
    assert r.count == 31 and abs(r.rate_hz - 30.0) < 0.5 and abs(r.age_s) < 1e-9
    r = s.report(12.5)
    assert r.rate_hz == 0.0 and abs(r.age_s - 1.5) < 1e-9
    s.tick(13.0)
    s.tick(13.4)
    assert abs(s.report(13.4).max_gap_s - 0.4) < 1e-9
