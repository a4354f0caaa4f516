"""A frame-index code painted into the top rows of a frame, readable after lossy video coding.
Used by tests and the latency benchmark to tell, at the receiver, which frame arrived."""

from __future__ import annotations

import numpy as np

BITS = 16
ROWS = 2  # blocks are square; the code uses ROWS block rows (the index, then its complement)


def _block(width: int) -> int:
    return max(width // BITS, 2)


def stamp_index(image: np.ndarray, index: int) -> np.ndarray:
    """A copy of image with index (mod 2**16) coded as black/white blocks in the top rows."""
    out = image.copy()
    size = _block(image.shape[1])
    value = index % (1 << BITS)
    for bit in range(BITS):
        on = (value >> bit) & 1
        x = bit * size
        out[:size, x:x + size] = 255 if on else 0
        out[size:2 * size, x:x + size] = 0 if on else 255
    return out


def read_index(image: np.ndarray) -> int | None:
    """The index stamped into a decoded frame (RGB or grey), or None if the code does not check."""
    grey = image.mean(axis=2) if image.ndim == 3 else image
    size = _block(image.shape[1])
    half = max(size // 4, 1)
    value = 0
    for bit in range(BITS):
        cx, cy = bit * size + size // 2, size // 2
        top = grey[cy - half:cy + half, cx - half:cx + half].mean()
        bottom = grey[size + cy - half:size + cy + half, cx - half:cx + half].mean()
        if abs(top - bottom) < 64:
            return None
        value |= int(top > bottom) << bit
    return value
