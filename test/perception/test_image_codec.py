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


def _compressed(data: bytes, fmt: str = "rgb8; jpeg compressed bgr8"):
    return SimpleNamespace(format=fmt, data=data)


def test_jpeg_round_trip_within_the_jpeg_error_and_size_read_from_the_header():
    from cosmos_policy_ros.perception.image_codec import compressed_size, compressed_to_rgb, fill_compressed

    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 3, y * 4, 255 - x * 2], axis=-1).astype(np.uint8)
    msg = fill_compressed(SimpleNamespace(format="", data=b""), smooth, quality=95)
    assert msg.format == "rgb8; jpeg compressed bgr8" and len(msg.data) < smooth.nbytes / 3
    assert compressed_size(msg) == (48, 64)
    back = compressed_to_rgb(msg)
    assert back.shape == (48, 64, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - smooth).mean() < 2.0   # red stays red: the colour order is the image's


def test_grey_and_png_compressed_frames_decode_to_rgb():
    import io

    from PIL import Image

    from cosmos_policy_ros.perception.image_codec import compressed_to_rgb

    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    out = compressed_to_rgb(_compressed(buf.getvalue(), "mono8; png compressed mono8"))
    assert out.shape == (4, 6, 3) and (out[..., 0] == grey).all() and (out[..., 2] == grey).all()


def test_unreadable_compressed_data_is_one_clear_error():
    from cosmos_policy_ros.perception.image_codec import compressed_size, compressed_to_rgb, fill_compressed

    with pytest.raises(ImageFormatError, match="no JPEG or PNG"):
        compressed_size(_compressed(b"not an image"))
    whole = fill_compressed(SimpleNamespace(format="", data=b""), np.zeros((32, 32, 3), np.uint8)).data
    with pytest.raises(ImageFormatError, match="cannot be decoded|no JPEG"):
        compressed_to_rgb(_compressed(whole[: len(whole) // 2]))
