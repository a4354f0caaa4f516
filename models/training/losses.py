"""Training losses on frames and latents, weighted towards the mouth."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mouth_region_mask(b: int, h: int, w: int) -> torch.Tensor:
    """1 outside a box around where the procedural faces keep their mouth, 0 inside it."""
    m = torch.ones(b, 1, 1, h, w)
    m[..., int(h * 0.55):int(h * 0.9), int(w * 0.25):int(w * 0.75)] = 0
    return m


def mouth_weighted_mean(error: torch.Tensor, mouth_weight: float) -> torch.Tensor:
    """Mean of a per-pixel error with the mouth box weighted up: the mouth is a small part of the frame
    but all of lip sync, and a plain mean is mostly spent on the (easy) still parts that the reference
    image already gives."""
    weight = 1 + (mouth_weight - 1) * (1 - mouth_region_mask(1, *error.shape[-2:]))
    return (error * weight).mean() / weight.mean()


def _grad(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([(x[..., 1:, :] - x[..., :-1, :]).flatten(-2), (x[..., 1:] - x[..., :-1]).flatten(-2)], -1)


def reconstruction_loss(recon: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    return mouth_weighted_mean((recon - frames).abs(), 8.0) + 0.5 * F.l1_loss(_grad(recon), _grad(frames))
