"""Reference image intake: decode safely, find the face, crop and resize to the profile's size."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError, ImageTooLarge

log = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000  # refused from the header, before decoding (image bombs)
MAX_BYTES = 30 * 1024 * 1024
# The formats accepted, found by their magic bytes (PIL's plugins for exactly these); every error
# message names them, and nothing else is opened.
FORMATS = ("PNG", "JPEG", "WEBP")
FORMATS_TEXT = "PNG, JPEG or WebP"


@dataclass
class Reference:
    image: np.ndarray  # HxWx3 uint8 RGB at the profile's resolution
    face_found: bool
    source_size: tuple[int, int]  # (width, height) of the input
    face_box: tuple[float, float, float, float] | None = None  # (x1, y1, x2, y2) in `image` pixels
    # A photo codec's fit of the whole photo (avatar/photo.py): its streams' decoder state; None otherwise.
    fit: object = None
    notes: tuple[str, ...] = ()  # fallbacks taken on the way (e.g. an RGBA photo composited over white)


def decode_image(source: str | Path | bytes | np.ndarray, max_pixels: int = MAX_PIXELS,
                 keep_alpha: bool = False) -> np.ndarray:
    """Any PIL-readable image (path or bytes) or an RGB uint8 array -> HxWx3 uint8 RGB (`keep_alpha`:
    HxWx4 RGBA when the image has an alpha channel, for a caller that composites it itself)."""
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] not in (3, 4):
            raise ImageError(f"an image array must be HxWx3 (or 4) uint8, got {source.dtype} {source.shape}")
        if source.shape[0] * source.shape[1] > max_pixels:
            raise ImageTooLarge(f"image is {source.shape[1]}x{source.shape[0]}; at most {max_pixels} pixels are accepted")
        return np.ascontiguousarray(source if keep_alpha else source[:, :, :3])
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"image file not found: {path}")
        if path.stat().st_size > MAX_BYTES:
            raise ImageTooLarge(f"image file {path} is larger than {MAX_BYTES // (1024 * 1024)} MB")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_BYTES:
            raise ImageTooLarge(f"image is larger than {MAX_BYTES // (1024 * 1024)} MB")
    else:
        raise ImageError(f"unsupported image source of type {type(source).__name__}")
    img = open_image(data)
    width, height = img.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height}; at most {max_pixels} pixels are accepted")
    if width < 16 or height < 16:
        raise ImageError(f"image is {width}x{height}; it must be at least 16x16")
    alpha = keep_alpha and (img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info)
    try:
        return np.asarray(img.convert("RGBA" if alpha else "RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"image could not be decoded: {exc}") from exc


def open_image(data: bytes) -> Image.Image:
    """An image's header (no pixels decoded yet), if it is one of FORMATS; ImageError otherwise."""
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image dimensions are too large; at most {MAX_PIXELS} pixels are accepted") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"not a supported image ({FORMATS_TEXT})") from exc


_cascade = None


def find_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest frontal face (x, y, w, h) by OpenCV's bundled Haar cascade, or None."""
    global _cascade
    if _cascade is None:
        _cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    scale = min(1.0, 640 / max(rgb.shape[:2]))
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    faces = _cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    return tuple(int(round(v / scale)) for v in (x, y, w, h))


def square_around(size: tuple[int, int], centre: tuple[float, float], side: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the square around centre, shrunk to fit inside an image of size (width, height)."""
    width, height = size
    side = int(min(side, width, height))
    x0 = int(round(min(max(centre[0] - side / 2, 0), width - side)))
    y0 = int(round(min(max(centre[1] - side / 2, 0), height - side)))
    return x0, y0, side


def prepare_reference(source, resolution: tuple[int, int]) -> Reference:
    """Decode, crop around the face (centre crop when none is found, and say so), resize."""
    rgb = decode_image(source)
    height, width = rgb.shape[:2]
    face = find_face(rgb)
    if face is None:
        log.info("no face found in the reference image; using a centre crop")
        x0, y0, side = square_around((width, height), (width / 2, height / 2), min(width, height))
    else:
        x, y, w, h = face
        # The face fills about half of the frame, a little above centre, as in portrait training data.
        x0, y0, side = square_around((width, height), (x + w / 2, y + h * 0.55), max(w, h) * 2.0)
    crop = rgb[y0:y0 + side, x0:x0 + side]
    out_h, out_w = resolution
    if out_h != out_w:
        raise ImageError("only square profile resolutions are supported")
    interp = cv2.INTER_AREA if crop.shape[0] > out_h else cv2.INTER_CUBIC
    resized = cv2.resize(crop, (out_w, out_h), interpolation=interp)
    box = None
    if face is not None:  # the face box in the resized crop's pixels, clipped to it
        s = out_w / side
        box = tuple(float(min(max(v, 0.0), out_w)) for v in
                    ((x - x0) * s, (y - y0) * s, (x + w - x0) * s, (y + h - y0) * s))
    return Reference(resized, face is not None, (width, height), box)
