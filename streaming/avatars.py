"""Avatar images: server-side ones by id, and uploads checked against size and dimension limits."""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from avatar.errors import AvatarError, ImageError, ImageTooLarge
from avatar.image import open_image

from .protocol import ProtocolError


def image_refused(exc: AvatarError) -> ProtocolError:
    """An image the engine refused, as the caller's error: `image_too_large` or `bad_image`, with the
    face model's reason (no_face, profile, tiny_face, ...) for a photo without a usable face."""
    code = "image_too_large" if isinstance(exc, ImageTooLarge) else "bad_image"
    return ProtocolError(code, str(exc), getattr(exc, "reason", None))


ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _drawn(size: int = 256) -> np.ndarray:
    from avatar.samples import drawn_face

    return drawn_face(size)


def _photo() -> np.ndarray:
    from avatar.samples import sample_photo

    return sample_photo()


class AvatarLibrary:
    """Built-in avatars plus the images found in an optional directory (file stem = id). `first` is the
    one listed first, which the demo page picks and a call without a chosen face gets: a real photo
    for a profile that animates photos, the drawn face for the others."""

    def __init__(self, directory: Path | None = None, first: str = "drawn"):
        self._builtin = {"drawn": _drawn, "astronaut": _photo}
        self.first = first
        self._files: dict[str, Path] = {}
        if directory is not None:
            if not Path(directory).is_dir():
                raise FileNotFoundError(f"avatars directory not found: {directory}")
            for path in sorted(Path(directory).iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES and ID_PATTERN.match(path.stem):
                    self._files[path.stem] = path

    def ids(self) -> list[str]:
        others = list(self._builtin) + [i for i in self._files if i not in self._builtin]
        return [self.first] + [i for i in others if i != self.first]

    def image(self, avatar_id: str):
        """An image source the engine accepts (array or path); ProtocolError for an unknown id."""
        if not isinstance(avatar_id, str) or not ID_PATTERN.match(avatar_id):
            raise ProtocolError("bad_avatar", "an avatar id is 1-64 letters, digits, '_' or '-'")
        if avatar_id in self._builtin:
            return self._builtin[avatar_id]()
        if avatar_id in self._files:
            return self._files[avatar_id]
        raise ProtocolError("bad_avatar", f"unknown avatar {avatar_id!r}; known: {', '.join(self.ids())}")

    def png(self, avatar_id: str, size: int = 160) -> bytes:
        """A small PNG preview for the demo page's picker."""
        source = self.image(avatar_id)
        img = Image.fromarray(source) if isinstance(source, np.ndarray) else Image.open(source).convert("RGB")
        img.thumbnail((size, size))
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()


def decode_upload(data: str, max_bytes: int, max_side: int) -> bytes:
    """A base64 image (optionally a data: URL) -> its bytes, refused before decoding if too big."""
    if not isinstance(data, str) or not data:
        raise ProtocolError("bad_image", "image must be a base64 string or a data: URL")
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.endswith(";base64"):
            raise ProtocolError("bad_image", "a data: URL image must be base64-encoded")
    if len(data) * 3 // 4 > max_bytes + 3:
        raise ProtocolError("image_too_large", f"image is larger than {max_bytes // 1024} KiB")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad_image", "image is not valid base64") from None
    if len(raw) > max_bytes:
        raise ProtocolError("image_too_large", f"image is larger than {max_bytes // 1024} KiB")
    try:
        width, height = open_image(raw).size  # header only
    except ImageError as exc:
        raise image_refused(exc) from None
    if width > max_side or height > max_side:
        raise ProtocolError("image_too_large",
                            f"image is {width}x{height}; at most {max_side}x{max_side} is accepted")
    return raw
