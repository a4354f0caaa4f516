import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from avatar.errors import ImageError
from avatar.image import decode_image, prepare_reference


def png_header_claiming(width, height) -> bytes:
    """A PNG whose header claims huge dimensions (an image bomb), with almost no data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def encode(img: np.ndarray, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def test_refuses_bytes_that_are_not_an_image():
    with pytest.raises(ImageError, match="not a supported image"):
        decode_image(b"GIF? no, just text")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match=re.escape(f"image file not found: {tmp_path / 'nope.png'}")):
        decode_image(tmp_path / "nope.png")


def test_refuses_an_array_that_is_not_uint8():
    with pytest.raises(ImageError, match="uint8"):
        decode_image(np.zeros((8, 8, 3), np.float32))


def test_refuses_an_image_bomb_from_its_header():
    with pytest.raises(ImageError, match="at most"):
        decode_image(png_header_claiming(100_000, 100_000))


WIDE = np.zeros((300, 800, 3), np.uint8)
WIDE[:, 250:550] = 120


@pytest.mark.parametrize("source", [encode(WIDE), encode(WIDE, "JPEG"), WIDE,
                                    np.dstack([WIDE, np.full(WIDE.shape[:2], 255, np.uint8)])],
                         ids=["png", "jpeg", "rgb-array", "rgba-array"])
def test_any_size_and_format_becomes_the_profile_resolution(source):
    ref = prepare_reference(source, (128, 128))
    assert ref.image.shape == (128, 128, 3) and ref.image.dtype == np.uint8
    assert ref.source_size == (800, 300)


def test_no_face_falls_back_to_a_centre_crop_and_says_so():
    img = np.zeros((200, 400, 3), np.uint8)
    img[:, 100:300] = 200  # the centre square is bright, the sides dark
    ref = prepare_reference(img, (64, 64))
    assert not ref.face_found
    assert np.all(ref.image == 200)  # exactly the centre square
