"""DiT inputs laid out as the official EchoMimicV3 (preview) pipeline lays them out.

Face mask (`infer_preview.py` get_ip_mask): the audio attention output counts only on the tokens of
the face box, on the H/16 x W/16 token grid (VAE 8x, patch 2x). The box corners are floored to
the grid: a token row y is inside when floor(y1 / 16) <= y < floor(y2 / 16), likewise x.
"""

from __future__ import annotations

import torch

from .audio_features import latent_audio_tokens


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


def official_audio_window(encoder, read, first_latent: int, count: int, frames_per_latent: int,
                          behind: int, ahead: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio of a DiT sequence [reference | latents first .. first + count - 1] as the official lays out
    a chunk whose frame 0 is the reference (`split_audio_sequence` + `split_tensor_with_padding`).

    Returns (1 + count, K, D) features and (1 + count, K) slots, K = behind + own tokens + ahead.
    The chunk's audio is the reference's frame (the video frame just before `first_latent`) through
    the last latent's frames; a slot outside it, or before the stream's first sample, is a zero slot
    (its token is an exact zero after the projection): the reference gets its own frame's and the
    next two frames' tokens and 11 zero slots, the first latent 3 zero slots, the last latent's 4
    look-ahead slots are zero (no audio past the window is needed), as at every official chunk end.
    """
    tpf = encoder.tokens_per_frame
    per_latent = frames_per_latent * tpf
    k = behind + per_latent + ahead
    c0 = first_latent * per_latent - tpf  # the reference's own frame
    c1 = (first_latent + count) * per_latent
    starts = [c0 + tpf + ahead - k] + [(first_latent + i) * per_latent - behind for i in range(count)]
    j0 = max(c0, 0)
    s0, s1 = encoder.token_span(j0, c1)
    tokens = encoder.encode(read(s0, s1), c1 - j0)  # (c1 - j0, D)
    index = torch.tensor(starts)[:, None] + torch.arange(k)[None]  # (1 + count, K) token numbers
    slots = (index >= j0) & (index < c1)
    features = tokens[(index - j0).clamp(0, c1 - j0 - 1)] * slots[..., None]
    return features, slots


def window_audio(encoder, read, first_latent: int, count: int, frames_per_latent: int, behind: int, ahead: int,
                 official: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Audio of a DiT sequence [reference | latents first .. first + count - 1]: (1 + count, K, D)
    features and, with `official` slots, (1 + count, K) slots (`official_audio_window`); otherwise
    every latent's own window of features and the null token (zeros) for the reference, no slots."""
    if official:
        return official_audio_window(encoder, read, first_latent, count, frames_per_latent, behind, ahead)
    tokens = latent_audio_tokens(encoder, read, first_latent, count, frames_per_latent, behind, ahead)
    return torch.cat([torch.zeros_like(tokens[:1]), tokens]), None
