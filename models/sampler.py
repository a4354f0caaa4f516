"""Few-step flow-matching sampler (Euler, shifted sigmas) with a phase-aware guidance plan.

Flow matching convention (Wan): x_sigma = (1 - sigma) * x0 + sigma * noise, the model predicts the
velocity v = noise - x0, and timestep = 1000 * sigma.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

import torch


class Branch(StrEnum):
    """A row of the guided batch: the fully conditioned one, or one without a condition. The names
    are the guidance keys of a profile's [sampler] table, and the denoiser builds each row from them."""

    COND = "cond"  # every condition: the prompt and the audio
    AUDIO = "audio"  # null audio (zero features): classifier-free audio guidance
    TEXT = "text"  # the empty prompt: classifier-free text guidance
    NEGATIVE = "negative"  # the negative prompt instead of the prompt: negative guidance


# The conditions a guidance term can drop (every branch but COND).
GUIDANCE_CONDITIONS = (Branch.AUDIO, Branch.TEXT, Branch.NEGATIVE)


@dataclass(frozen=True)
class GuidanceTerm:
    condition: Branch
    scale: float

    def __post_init__(self):
        if self.condition not in GUIDANCE_CONDITIONS:
            raise ValueError(f"unknown guidance condition {self.condition!r}; "
                             f"use one of {', '.join(GUIDANCE_CONDITIONS)}")
        object.__setattr__(self, "condition", Branch(self.condition))


@dataclass(frozen=True)
class GuidancePhase:
    """Guidance used while sigma >= min_sigma (phases are checked from the first)."""

    min_sigma: float
    terms: tuple[GuidanceTerm, ...] = ()


@dataclass(frozen=True)
class GuidancePlan:
    phases: tuple[GuidancePhase, ...] = ()

    def terms_at(self, sigma: float) -> tuple[GuidanceTerm, ...]:
        for phase in self.phases:
            if sigma >= phase.min_sigma:
                return tuple(t for t in phase.terms if t.scale != 1.0)
        return ()

    def without(self, *conditions: str) -> "GuidancePlan":
        return GuidancePlan(tuple(
            GuidancePhase(p.min_sigma, tuple(t for t in p.terms if t.condition not in conditions))
            for p in self.phases
        ))


def shift_sigmas(s, shift: float):
    """Wan's timestep shift: sigmas in [0, 1] (a tensor or an array) moved towards 1 for shift > 1."""
    return shift * s / (1 + (shift - 1) * s)


def flow_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """steps + 1 decreasing sigmas from 1 to 0, warped by `shift` as Wan's schedulers do."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()


# denoise(x, sigma, branches) -> one velocity per branch; Branch.COND is always asked for first.
Denoiser = Callable[[torch.Tensor, float, tuple[str, ...]], list[torch.Tensor]]


def guided_velocity(denoise: Denoiser, x: torch.Tensor, sigma: float, plan: GuidancePlan) -> torch.Tensor:
    terms = plan.terms_at(sigma)
    velocities = [v.float() for v in denoise(x, sigma, (Branch.COND,) + tuple(t.condition for t in terms))]
    v_cond = velocities[0]
    v = v_cond
    for term, v_without in zip(terms, velocities[1:]):
        v = v + (term.scale - 1.0) * (v_cond - v_without)
    return v


def sample(denoise: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, plan: GuidancePlan,
           on_step: Callable[[float, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Euler integration of the flow from sigmas[0] to sigmas[-1]; returns the final latents.
    `on_step(sigma, x)` sees each state reached (training's distillation keeps the trajectory).

    The state, the guidance arithmetic and the sigmas stay float32 whatever the network's dtype (as
    diffusers' schedulers do): the denoiser casts `x` to its own dtype and its velocities come back
    float32, so bf16 rounding enters only through the network, not the integration."""
    sigmas = sigmas.float()
    x = noise.float() * sigmas[0]
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        v = guided_velocity(denoise, x, sigma, plan)
        x = x + (sigma_next - sigma) * v
        if on_step is not None:
            on_step(sigma_next, x)
    return x


def forward_count(sigmas: torch.Tensor, plan: GuidancePlan) -> int:
    """Model forwards (batch rows) one sampling run costs."""
    return sum(1 + len(plan.terms_at(s)) for s in sigmas[:-1].tolist())
