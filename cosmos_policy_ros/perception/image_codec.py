"""sensor_msgs/Image and CompressedImage <-> numpy without cv_bridge (no usable cv_bridge exists for these wheels).

Works on any object with the Image fields (height, width, encoding, step, is_bigendian, data) or the
CompressedImage ones (format, data), so it is tested without ROS. Output is always HxWx3 RGB uint8, the
layout the model expects. Compressed frames (JPEG or PNG, as image_transport's compressed plugin publishes
them: format "rgb8; jpeg compressed bgr8") are decoded with Pillow; the colour order inside the JPEG is
the decoder's business, so Pillow's RGB is the image's RGB whatever the format string's target encoding says.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from cosmos_policy_ros.errors import CosmosError

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}


class ImageFormatError(CosmosError, ValueError):
    """The message cannot be read as an 8-bit colour or grey image."""


def image_to_rgb(msg) -> np.ndarray:
    """Decode an Image message into an HxWx3 uint8 RGB array (copy)."""
    enc = msg.encoding
    if enc not in _CHANNELS:
        raise ImageFormatError(f"unsupported image encoding {enc!r} (supported: {', '.join(_CHANNELS)})")
    c = _CHANNELS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageFormatError(f"empty image {w}x{h}")
    if step < w * c:
        raise ImageFormatError(f"step {step} is smaller than width*channels {w * c}")
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview, np.ndarray))
                        else msg.data, dtype=np.uint8)
    if buf.size < h * step:
        raise ImageFormatError(f"data has {buf.size} bytes, expected {h * step} ({h} rows x step {step})")
    rows = buf[: h * step].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc in ("bgr8", "bgra8"):
        rows = rows[..., 2::-1]
    elif c == 4:
        rows = rows[..., :3]
    elif c == 1:
        rows = np.repeat(rows, 3, axis=2)
    return np.ascontiguousarray(rows)


def fill_image(msg, rgb: np.ndarray, encoding: str = "rgb8"):
    """Fill an Image message from an HxWx3 uint8 RGB array; returns ``msg``."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageFormatError(f"expected HxWx3 uint8 RGB, got {arr.dtype} {arr.shape}")
    if encoding == "bgr8":
        arr = arr[..., ::-1]
    elif encoding != "rgb8":
        raise ImageFormatError(f"can only encode rgb8 or bgr8, not {encoding!r}")
    h, w, _ = arr.shape
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = h, w, encoding, 0, w * 3
    msg.data = np.ascontiguousarray(arr).tobytes()
    return msg


def resize_nearest(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Cheap resize for previews and tiny models (area-averaging lives with the model's preprocessing)."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    ys = (np.arange(height) * h / height).astype(int)
    xs = (np.arange(width) * w / width).astype(int)
    return rgb[ys][:, xs]


def _open_compressed(msg) -> Image.Image:
    data = msg.data
    try:
        return Image.open(io.BytesIO(bytes(data) if not isinstance(data, (bytes, bytearray)) else data))
    except (UnidentifiedImageError, OSError):
        raise ImageFormatError(f"compressed image ({msg.format or 'no format'}, {len(data)} bytes) is no JPEG or "
                               f"PNG that can be read") from None


def compressed_size(msg) -> tuple[int, int]:
    """(height, width) of a CompressedImage from its header only (nothing decoded yet)."""
    width, height = _open_compressed(msg).size
    return height, width


def compressed_to_rgb(msg) -> np.ndarray:
    """Decode a CompressedImage (JPEG/PNG, colour or grey) into an HxWx3 uint8 RGB array."""
    img = _open_compressed(msg)
    try:
        return np.array(img.convert("RGB"))
    except OSError as exc:   # truncated data
        raise ImageFormatError(f"compressed image ({msg.format or 'no format'}) cannot be decoded: {exc}") from None


def fill_compressed(msg, rgb: np.ndarray, quality: int = 95):
    """Fill a CompressedImage with the JPEG of an HxWx3 uint8 RGB array, as compressed_image_transport does
    (default jpeg_quality 95; format string as it writes it for an rgb8 source); returns ``msg``."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageFormatError(f"expected HxWx3 uint8 RGB, got {arr.dtype} {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    msg.format = "rgb8; jpeg compressed bgr8"
    msg.data = buf.getvalue()
    return msg
