"""AudioWanTransformer's inputs made once and reused (the cross context per session, the step
conditions per step kind, the audio keys/values per window) and the arithmetic its forward shares
between blocks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class CrossContext:
    """Keys/values of the static cross-attention inputs (text and image), per block, per session.

    Text and reference image do not change during a session, so their projections are computed once.
    """

    text_kv: list[tuple[torch.Tensor, torch.Tensor]]
    image_kv: list[tuple[torch.Tensor, torch.Tensor]] | None

    def repeat(self, n: int) -> "CrossContext":
        rep = lambda kv: (kv[0].repeat(n, 1, 1, 1), kv[1].repeat(n, 1, 1, 1))  # noqa: E731
        return CrossContext(
            [rep(kv) for kv in self.text_kv],
            None if self.image_kv is None else [rep(kv) for kv in self.image_kv],
        )

    @staticmethod
    def cat(contexts: list["CrossContext"]) -> "CrossContext":
        def cat_kv(kvs):
            return (torch.cat([k for k, _ in kvs]), torch.cat([v for _, v in kvs]))

        text = [cat_kv(layer) for layer in zip(*[c.text_kv for c in contexts])]
        image = None
        if contexts[0].image_kv is not None:
            image = [cat_kv(layer) for layer in zip(*[c.image_kv for c in contexts])]
        return CrossContext(text, image)


@dataclass
class StepConditions:
    """What a forward derives from its timesteps and the hidden states' shape (`step_conditions`)."""

    batch: int
    frames: int  # latent frames (after patching)
    blocks: list[tuple[torch.Tensor, ...]]  # per block: shift, 1 + scale, gate (attention), the same (FFN); (B, T, D)
    out_shift: torch.Tensor  # the output head's (B, T, D)
    out_scale: torch.Tensor  # 1 + its scale
    audio_w: torch.Tensor | None  # (B, T, 1, 1) phase weight of the audio output, None: 1
    text_w: torch.Tensor | None  # the same for the text output
    rotary: tuple[torch.Tensor, torch.Tensor]  # RoPE's (cos, cos) and (-sin, sin) per pair of channels (`_rotate`)


@dataclass
class AudioContext:
    """A window's audio projected into keys/values per block, with its face mask (`audio_context`)."""

    batch: int
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block, (B*T, K, heads, head_dim)
    mask: torch.Tensor | None  # (B or 1, 1, tokens per frame, 1)

    @staticmethod
    def cat(contexts: list["AudioContext"]) -> "AudioContext":
        """Batches one after the other (a guided batch's rows); a batch-1 mask shared by all stays one."""
        if len(contexts) == 1:
            return contexts[0]
        kv = [(torch.cat([k for k, _ in layer]), torch.cat([v for _, v in layer]))
              for layer in zip(*[c.kv for c in contexts])]
        mask = contexts[0].mask
        if mask is not None and len(mask) > 1:
            mask = torch.cat([c.mask for c in contexts])
        return AudioContext(sum(c.batch for c in contexts), kv, mask)


def _rotate(x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """RoPE on (..., L, heads, d) with diffusers' Wan arithmetic (each pair (x1, x2) becomes
    (x1 cos - x2 sin, x1 sin + x2 cos), in the dtype of the frequencies), in fewer calls: `rotary`
    is (cos, cos) and (-sin, sin) per pair."""
    cos, sin = rotary
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return (x * cos + swapped * sin).type_as(x)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # (B, L, heads, d) layout in and out
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _per_frame(x: torch.Tensor, frames: int, fn) -> torch.Tensor:
    """Apply fn to x (B, L, D) viewed as (B, frames, L/frames, D); returns (B, L, D)."""
    return fn(x.unflatten(1, (frames, -1))).flatten(1, 2)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale_plus_one: torch.Tensor) -> torch.Tensor:
    # x: (B, T, N, D); shift, 1 + scale: (B, T, D)
    return x * scale_plus_one[:, :, None] + shift[:, :, None]


def phase_weight(sigma: torch.Tensor, early: float, late: float, boundary: float, width: float) -> torch.Tensor:
    """Weight that moves from `late` (low noise) to `early` (high noise) around sigma = boundary."""
    if early == late:
        return torch.full_like(sigma, early)
    s = torch.sigmoid((sigma - boundary) / max(width, 1e-4))
    return late + (early - late) * s
