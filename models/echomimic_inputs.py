"""DiT inputs laid out as the official EchoMimicV3 (preview) pipeline lays them out.

Face mask (`infer_preview.py` get_ip_mask): the audio attention output counts only on the tokens of
the face box, on the H/16 x W/16 token grid (VAE 8x, patch 2x). The box corners are floored to
the grid: a token row y is inside when floor(y1 / 16) <= y < floor(y2 / 16), likewise x.
"""

from __future__ import annotations

import torch


def face_token_mask(box: tuple[float, float, float, float], height: int, width: int, cell: int = 16) -> torch.Tensor:
    """(height // cell * width // cell,) float mask, 1 inside the face box (x1, y1, x2, y2 in pixels of
    the image the DiT generates), 0 elsewhere, row-major over the token grid as the DiT flattens it."""
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"face box {box} is empty")
    rows, cols = height // cell, width // cell
    y = torch.arange(rows)[:, None]
    x = torch.arange(cols)[None, :]
    inside = (y >= y1 // cell) & (y < y2 // cell) & (x >= x1 // cell) & (x < x2 // cell)
    return inside.reshape(-1).float()
