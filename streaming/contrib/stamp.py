"""A frame-index code painted into the top of a frame, readable after lossy video coding.
Used by tests and the latency benchmark to tell, at the receiver, which frame arrived.

16 bits in two rows of 8 blocks (a block is an eighth of the width), each row followed by its
complement, so a bit reads as "top brighter than bottom" whatever the codec did to the levels."""

from __future__ import annotations

import numpy as np

BITS = 16
PER_ROW = 8


def _block(width: int) -> int:
    return max(width // PER_ROW, 4)


def stamp_index(image: np.ndarray, index: int) -> np.ndarray:
    """A copy of image with index (mod 2**16) coded as black/white blocks in its top rows."""
    out = image.copy()
    size = _block(image.shape[1])
    value = index % (1 << BITS)
    for bit in range(BITS):
        row, col = divmod(bit, PER_ROW)
        on = (value >> bit) & 1
        y, x = 2 * row * size, col * size
        out[y:y + size, x:x + size] = 255 if on else 0
        out[y + size:y + 2 * size, x:x + size] = 0 if on else 255
    return out


def read_index(image: np.ndarray) -> int | None:
    """The index stamped into a decoded frame (RGB or grey), or None if the code does not check."""
    grey = image.mean(axis=2) if image.ndim == 3 else image
    size = _block(image.shape[1])
    lo, hi = size // 4, size - size // 4  # the middle of each block, away from blurred edges
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, PER_ROW)
        y, x = 2 * row * size, col * size
        top = grey[y + lo:y + hi, x + lo:x + hi].mean()
        bottom = grey[y + size + lo:y + size + hi, x + lo:x + hi].mean()
        if abs(top - bottom) < 64:
            return None
        value |= int(top > bottom) << bit
    return value
