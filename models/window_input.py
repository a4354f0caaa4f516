"""The DiT's input for one window, written once for the session, every training stage and eval.

`AudioWanTransformer` takes Wan-Fun-InP's 36 channels per latent frame: 16 latent channels (what is
integrated), a 4-channel mask (1 = given) and 16 known-latent channels, with a timestep per latent
frame. A layout says how a window's given latents (the reference image and the previous window's
context) enter those channels. `clean_tokens`: they lead the sequence as clean tokens (timestep 0,
mask 1, their latents also in the known channels) and only the new latents after them are
integrated (models trained so). `inpaint`: every latent is integrated at the row's timestep and the
given ones enter only through the mask and known channels (Wan-Fun-InP and EchoMimicV3 as published).

`denoiser` turns a window into the sampler's `Denoiser`: one DiT forward for all guidance rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .dit import AudioContext, CrossContext
from .sampler import Denoiser, dropped

MASK_CHANNELS = 4


@dataclass(frozen=True)
class WindowInput:
    clean: torch.Tensor  # (B, C, c, h, w) latents leading the sequence at timestep 0
    condition: torch.Tensor  # (B, 4 + C, c + n, h, w) mask | known latents, over the whole window
    new: int  # n: the latents integrated after `clean`

    @classmethod
    def clean_tokens(cls, known: torch.Tensor, new: int, given: torch.Tensor | None = None,
                     given_mask: torch.Tensor | None = None) -> "WindowInput":
        """`known` (B, C, k, h, w) given latents, then `new` latents to generate. The new ones are
        unknown (mask 0, zero known channels), except, in the lip-sync training task, the `given`
        (B, C, n, h, w) latents where `given_mask` (B, 1, 1, h, w) is 1 (all but the mouth)."""
        b, ch, k, h, w = known.shape
        mask = torch.zeros((b, MASK_CHANNELS, k + new, h, w), device=known.device, dtype=known.dtype)
        mask[:, :, :k] = 1
        known_channels = torch.cat([known, known.new_zeros((b, ch, new, h, w))], dim=2)
        if given is not None:
            mask[:, :, k:] = given_mask
            known_channels[:, :, k:] = given * given_mask
        return cls(known, torch.cat([mask, known_channels], dim=1), new)

    @classmethod
    def inpaint(cls, known: torch.Tensor, fill: torch.Tensor) -> "WindowInput":
        """Wan-Fun-InP as the published weights were trained: every latent is integrated at the row's
        timestep; the `known` (B, C, k, h, w) given latents enter only through the mask (1) and the
        known channels; the latents to generate have mask 0 and `fill` (B, C, n, h, w) in the known
        channels (the VAE latents of mid-grey frames, as the official pipeline encodes them)."""
        b, _, k, h, w = known.shape
        mask = torch.zeros((b, MASK_CHANNELS, k + fill.shape[2], h, w), device=known.device, dtype=known.dtype)
        mask[:, :, :k] = 1
        condition = torch.cat([mask, torch.cat([known, fill.to(known.dtype)], dim=2)], dim=1)
        return cls(known[:, :, :0], condition, k + fill.shape[2])

    @property
    def frames(self) -> int:
        return self.clean.shape[2] + self.new

    def hidden(self, x: torch.Tensor, rows: int = 1) -> torch.Tensor:
        """(rows * B, 36, c + n, h, w): the latents being integrated, `x` (B, C, n, h, w; cast to the
        window's dtype), after the clean ones, then the condition; the batch repeated for `rows`."""
        hidden = torch.cat([torch.cat([self.clean, x.to(self.clean.dtype)], dim=2), self.condition], dim=1)
        if rows == 1:
            return hidden
        if len(hidden) == 1:
            return hidden.expand(rows, -1, -1, -1, -1)
        return hidden.repeat(rows, 1, 1, 1, 1)

    def timesteps(self, sigma: float | torch.Tensor, rows: int = 1) -> torch.Tensor:
        """(rows * B, c + n) float32: 0 on the clean latents, 1000 sigma on the integrated ones;
        `sigma` one for all or one per batch row, (B,)."""
        b = len(self.clean)
        t = torch.zeros((rows * b, self.frames), device=self.clean.device)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=self.clean.device).reshape(-1, 1)
        t[:, self.clean.shape[2]:] = (sigma * 1000.0).expand(b, 1).repeat(rows, 1)
        return t

    def integrated(self, out: torch.Tensor) -> torch.Tensor:
        """The DiT output's integrated latents (its velocity for `x`)."""
        return out[:, :, self.clean.shape[2]:]


# A guidance row drops conditions (models.sampler.dropped); "cond" drops none. A row without the
# audio gets null audio (zeros, in the same slots); the text rows differ only in their cross context.
def denoiser(dit: Callable[..., torch.Tensor], window: WindowInput, audio: torch.Tensor,
             context_for: Callable[[str], CrossContext], audio_mask: torch.Tensor | None = None,
             audio_slots: torch.Tensor | None = None, steps_memo: dict | None = None) -> Denoiser:
    """`dit(hidden, timestep, context, audio, audio_mask=, audio_slots=)` -> velocity, run once per step
    for all guidance rows; `audio` (B, c + n, K, D) the window's audio tokens; `context_for(row)` the
    cross context of a row; `audio_mask`, `audio_slots`: AudioWanTransformer's, the same for every row.

    With the DiT itself (not a wrapper), what the steps share is made once: each set of rows' cross
    context and audio keys/values for the window; kept in `steps_memo`, which a caller keeps from
    window to window (the same DiT and audio mask), the step conditions of each timestep layout and
    the null audio's keys/values."""
    b = len(window.clean)
    prepared = hasattr(dit, "step_conditions")
    memo = {} if steps_memo is None else steps_memo
    rows_inputs: dict[tuple[str, ...], tuple] = {}

    def row_audio(row: str, shape: torch.Size):
        null = "audio" in dropped(row)
        if not prepared:
            return torch.zeros_like(audio) if null else audio
        if not null or audio_slots is not None:  # null audio in slots: zeros where the slots say
            return dit.audio_context(torch.zeros_like(audio) if null else audio, shape, audio_slots, audio_mask)
        key = ("null audio", tuple(shape), tuple(audio.shape))  # the same every window
        if key not in memo:
            memo[key] = dit.audio_context(torch.zeros_like(audio), shape, None, audio_mask)
        return memo[key]

    def inputs(rows: tuple[str, ...], shape: torch.Size) -> tuple:
        if rows not in rows_inputs:
            one_row = torch.Size((b, *shape[1:]))
            audios = [row_audio(r, one_row) for r in rows]
            rows_inputs[rows] = (CrossContext.cat([context_for(r) for r in rows]),
                                 AudioContext.cat(audios) if prepared else torch.cat(audios))
        return rows_inputs[rows]

    def conditions(sigma: float, rows: int, shape: torch.Size):
        if not prepared:
            return window.timesteps(sigma, rows)
        key = (tuple(shape), window.clean.shape[2], sigma)  # what the timesteps are made of
        if key not in memo:
            memo[key] = dit.step_conditions(window.timesteps(sigma, rows), shape)
        return memo[key]

    def denoise(x: torch.Tensor, sigma: float, rows: tuple[str, ...]) -> list[torch.Tensor]:
        hidden = window.hidden(x, len(rows))
        context, rows_audio = inputs(rows, hidden.shape)
        v = window.integrated(dit(hidden, conditions(sigma, len(rows), hidden.shape), context,
                                  rows_audio, audio_mask=audio_mask, audio_slots=audio_slots))
        return [v[i * b:(i + 1) * b] for i in range(len(rows))]

    return denoise
