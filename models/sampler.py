"""Flow-matching sampler (Euler, shifted sigmas) with a phase-aware guidance plan.

Flow matching convention (Wan): x_sigma = (1 - sigma) * x0 + sigma * noise, the model predicts the
velocity v = noise - x0, and timestep = 1000 * sigma.

The official EchoMimicV3 (preview) sampler is one such plan (`src/pipeline_wan_fun_inpaint_audio.py`):
25 Euler steps on diffusers' FlowMatchEulerDiscreteScheduler sigmas with shift 5, and three rows
[negative prompt + null audio (u), prompt + null audio (d), prompt + audio (c)] combined as
u + gs (d - u) + ags (c - d), gs = 4 and ags = 2.9 each on its cosine-dynamic schedule. That is a
nested plan (each row drops one more condition) with terms audio 2.9 then negative 4, "cosine".
"""

from __future__ import annotations

import math
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


SCALE_SCHEDULES = ("constant", "cosine")


def cosine_scale(scale: float, step: int, steps: int) -> float:
    """The official dynamic guidance (use_dynamic_cfg / use_dynamic_acfg): `scale` at the first step,
    falling towards scale / 2 at the last: s/2 + s/2 * (1 - cos(pi * ((steps - step) / steps) ** 5)) / 2."""
    return scale / 2 + scale / 2 * (1 - math.cos(math.pi * ((steps - step) / steps) ** 5.0)) / 2


@dataclass(frozen=True)
class GuidancePlan:
    """Guidance phases. Plain plans compare each term's row with the conditioned row:
    v = c + sum (s - 1)(c - row without the term). Nested plans (the official) drop conditions one
    after the other: row k lacks the first k terms' conditions, v = c + sum (s_k - 1)(row k-1 - row k).
    `schedule` "cosine" scales every term by the official dynamic schedule over the steps."""

    phases: tuple[GuidancePhase, ...] = ()
    nested: bool = False
    schedule: str = "constant"

    def __post_init__(self):
        if self.schedule not in SCALE_SCHEDULES:
            raise ValueError(f"unknown guidance schedule {self.schedule!r}; use one of {SCALE_SCHEDULES}")

    def terms_at(self, sigma: float) -> tuple[GuidanceTerm, ...]:
        for phase in self.phases:
            if sigma >= phase.min_sigma:
                terms = phase.terms
                if not self.nested:  # a scale-1 term adds nothing; in a nested plan its row feeds the next
                    return tuple(t for t in terms if t.scale != 1.0)
                while terms and terms[-1].scale == 1.0:
                    terms = terms[:-1]
                return terms
        return ()

    def scale(self, term: GuidanceTerm, step: int, steps: int) -> float:
        return cosine_scale(term.scale, step, steps) if self.schedule == "cosine" else term.scale

    def rows_at(self, sigma: float) -> tuple[str, ...]:
        """The variants the denoiser is asked for at sigma, "cond" first (see `dropped`)."""
        conditions = [t.condition for t in self.terms_at(sigma)]
        if self.nested:
            return (Branch.COND,) + tuple("+".join(conditions[:k + 1]) for k in range(len(conditions)))
        return (Branch.COND,) + tuple(conditions)

    def without(self, *conditions: str) -> "GuidancePlan":
        return GuidancePlan(tuple(
            GuidancePhase(p.min_sigma, tuple(t for t in p.terms if t.condition not in conditions))
            for p in self.phases
        ), self.nested, self.schedule)


def dropped(variant: str) -> frozenset[str]:
    """The conditions a denoiser variant drops: "cond" none, "audio+negative" both."""
    return frozenset() if variant == "cond" else frozenset(variant.split("+"))


SIGMA_SCHEDULES = ("linear", "flow-match-euler")


def shift_sigmas(s, shift: float):
    """Wan's timestep shift: sigmas in [0, 1] (a tensor or an array) moved towards 1 for shift > 1."""
    return shift * s / (1 + (shift - 1) * s)


def flow_sigmas(steps: int, shift: float = 1.0, schedule: str = "linear") -> torch.Tensor:
    """steps + 1 decreasing sigmas from 1 to 0, warped by `shift` as Wan's schedulers do.

    "linear": linspace(1, 0) shifted. "flow-match-euler": the official sampler's (diffusers'
    FlowMatchEulerDiscreteScheduler, 1000 training steps, no dynamic shifting): linspace from 1 to the
    shifted 1/1000, shifted again, then a final 0.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if schedule == "linear":
        return shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift).float()
    if schedule == "flow-match-euler":
        sigma_min = float(shift_sigmas(torch.tensor(1 / 1000, dtype=torch.float64), shift))
        s = shift_sigmas(torch.linspace(1.0, sigma_min, steps, dtype=torch.float64), shift)
        return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()
    raise ValueError(f"unknown sigma schedule {schedule!r}; use one of {SIGMA_SCHEDULES}")


# denoise(x, sigma, branches) -> one velocity per branch; Branch.COND is always asked for first.
Denoiser = Callable[[torch.Tensor, float, tuple[str, ...]], list[torch.Tensor]]


def guided_velocity(denoise: Denoiser, x: torch.Tensor, sigma: float, plan: GuidancePlan,
                    step: int = 0, steps: int = 1) -> torch.Tensor:
    terms = plan.terms_at(sigma)
    velocities = [v.float() for v in denoise(x, sigma, plan.rows_at(sigma))]
    v = velocities[0]
    for k, term in enumerate(terms):
        base = velocities[k] if plan.nested else velocities[0]
        v = v + (plan.scale(term, step, steps) - 1.0) * (base - velocities[k + 1])
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
    steps = len(sigmas) - 1
    for step, (sigma, sigma_next) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist())):
        v = guided_velocity(denoise, x, sigma, plan, step, steps)
        x = x + (sigma_next - sigma) * v
        if on_step is not None:
            on_step(sigma_next, x)
    return x


def forward_count(sigmas: torch.Tensor, plan: GuidancePlan) -> int:
    """Model forwards (batch rows) one sampling run costs."""
    return sum(len(plan.rows_at(s)) for s in sigmas[:-1].tolist())
