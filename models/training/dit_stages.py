"""Stage 2, the teacher (flow matching on a soup of window tasks), and stage 3, its few-step student
(trajectory distillation with the teacher's audio guidance distilled in)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..dit import AudioWanTransformer
from ..profile_config import ProfileConfig
from ..sampler import Branch, GuidancePhase, GuidancePlan, GuidanceTerm, flow_sigmas, sample, shift_sigmas
from ..window_input import WindowInput, denoiser
from .data import Windows
from .loop import autocast, optimise, resume, stage_steps
from .losses import mouth_region_mask, mouth_weighted_mean


def build_dit(cfg: ProfileConfig) -> AudioWanTransformer:
    return AudioWanTransformer(**cfg.dit.kwargs())


def sample_sigmas(rng: np.random.Generator, n: int, shift: float) -> torch.Tensor:
    s = 1 / (1 + np.exp(-rng.normal(0, 1, n)))  # logit-normal, then Wan's shift
    return torch.tensor(shift_sigmas(s, shift), dtype=torch.float32)


def train_teacher(out: Path, steps: int, batch: int, lr: float, cfg: ProfileConfig, bf16: bool = True) -> None:
    windows = Windows(out, cfg, bf16)
    dit = build_dit(cfg)
    opt = torch.optim.AdamW(dit.parameters(), lr=lr, weight_decay=0.01)
    for step, rng, losses in stage_steps(out / "teacher.pt", dit, opt, lr, steps, seed=10_000, desc="teacher"):
        # Soup of tasks, hardest first: early on more reference-only windows and lip-sync on masked
        # video; later mostly continuation, the task the stream runs.
        progress = step / max(steps, 1)
        task = rng.choice(["reference", "continuation", "lipsync"],
                          p=[0.5 - 0.3 * progress, 0.3 + 0.4 * progress, 0.2 - 0.1 * progress])
        latents, audio, n_known = windows.batch(rng, batch, continuation=task != "reference")
        if n_known > 1:  # slightly noised context, so the model forgives its own errors
            ctx_noise = torch.rand(batch, 1, 1, 1, 1) * 0.1
            latents[:, :, 1:n_known] += ctx_noise * torch.randn_like(latents[:, :, 1:n_known])
        drop = torch.from_numpy(rng.random(batch) < 0.15).float()[:, None, None, None]
        audio = audio * (1 - drop)  # null audio for classifier-free guidance and the idle path
        target = latents[:, :, n_known:]
        sigma = sample_sigmas(rng, batch, cfg.sampler.shift)
        s = sigma[:, None, None, None, None]
        noise = torch.randn_like(target)
        noisy = (1 - s) * target + s * noise
        if task == "lipsync":  # the new frames are given except the mouth region
            window = WindowInput.clean_tokens(latents[:, :, :n_known], target.shape[2], target,
                                              mouth_region_mask(batch, *target.shape[-2:]))
        else:
            window = WindowInput.clean_tokens(latents[:, :, :n_known], target.shape[2])
        with autocast(bf16):
            ctx = dit.prepare_context(torch.zeros(1, 1, cfg.dit.text_dim))  # tiny has no text encoder
            v = window.integrated(dit(window.hidden(noisy), window.timesteps(sigma), ctx, audio)).float()
        loss = mouth_weighted_mean((v - (noise - target)).pow(2), 4.0)
        losses.append(optimise(opt, loss, dit.parameters()))


def _float_forward(dit: AudioWanTransformer, bf16: bool):
    def forward(*args, **kwargs) -> torch.Tensor:
        with autocast(bf16):
            return dit(*args, **kwargs).float()
    return forward


@torch.no_grad()
def teacher_solve(teacher: AudioWanTransformer, window: WindowInput, audio: torch.Tensor, noise: torch.Tensor,
                  steps: int, audio_cfg: float, shift: float, ctx, bf16: bool) -> dict[float, torch.Tensor]:
    """The teacher's many-step, audio-guided ODE solution from `noise`, by the product's sampler;
    returns the trajectory {sigma: state}. `ctx`: the cross context of one batch."""
    trajectory = {1.0: noise}
    plan = GuidancePlan((GuidancePhase(min_sigma=0.0, terms=(GuidanceTerm(Branch.AUDIO, audio_cfg),)),))
    sample(denoiser(_float_forward(teacher, bf16), window, audio, lambda row: ctx), noise,
           flow_sigmas(steps, shift), plan, on_step=lambda sigma, x: trajectory.__setitem__(round(sigma, 6), x))
    return trajectory


def teacher_and_student(out: Path, cfg: ProfileConfig, lr: float):
    """The trained teacher (frozen), a student starting as its copy, and the student's optimiser."""
    teacher = build_dit(cfg)
    resume(out / "teacher.pt", teacher, None)
    teacher.eval().requires_grad_(False)
    student = build_dit(cfg)
    student.load_state_dict(teacher.state_dict())
    return teacher, student, torch.optim.AdamW(student.parameters(), lr=lr)


def student_schedule(teacher_steps: int, student_steps: int, shift: float) -> list[float]:
    """The student's own sigmas, aligned with the teacher's grid so the teacher's states are on it."""
    grid = flow_sigmas(teacher_steps, shift).tolist()
    return [grid[round(i * teacher_steps / student_steps)] for i in range(student_steps)]


def train_distill(out: Path, steps: int, batch: int, lr: float, cfg: ProfileConfig, student_steps: int,
                  teacher_steps: int, audio_cfg: float, bf16: bool = True) -> None:
    """Trajectory distillation: the student, run with `student_steps` Euler steps, must land where
    the teacher's `teacher_steps`-step guided ODE lands, from the same noise (guidance distilled in)."""
    windows = Windows(out, cfg, bf16)
    teacher, student, opt = teacher_and_student(out, cfg, lr)
    shift = cfg.sampler.shift
    student_sigmas = student_schedule(teacher_steps, student_steps, shift)
    with torch.no_grad(), autocast(bf16):
        ctx_t = teacher.prepare_context(torch.zeros(1, 1, cfg.dit.text_dim))
    extra = {"student_steps": student_steps, "teacher_steps": teacher_steps, "audio_cfg": audio_cfg}
    for step, rng, losses in stage_steps(out / "student.pt", student, opt, lr, steps, seed=20_000, desc="distill",
                                         save_every=50, extra=extra):
        latents, audio, n_known = windows.batch(rng, batch, continuation=rng.random() < 0.7)
        if n_known > 1:
            latents[:, :, 1:n_known] += 0.05 * torch.rand(batch, 1, 1, 1, 1) * torch.randn_like(latents[:, :, 1:n_known])
        drop = torch.from_numpy(rng.random(batch) < 0.15).float()[:, None, None, None]
        audio = audio * (1 - drop)  # the idle path runs the student on null audio
        noise = torch.randn_like(latents[:, :, n_known:])
        window = WindowInput.clean_tokens(latents[:, :, :n_known], noise.shape[2])
        trajectory = teacher_solve(teacher, window, audio, noise, teacher_steps, audio_cfg, shift,
                                   ctx_t.repeat(batch), bf16)
        # every position of the student's schedule at once: the teacher's solve is the costly part
        x = torch.cat([trajectory[min(trajectory, key=lambda k: abs(k - s))] for s in student_sigmas])
        sigma = torch.tensor(student_sigmas).repeat_interleave(batch)
        repeat = (student_steps,) + (1,) * (latents.ndim - 1)
        window = WindowInput.clean_tokens(latents[:, :, :n_known].repeat(repeat), noise.shape[2])
        with autocast(bf16):
            v = window.integrated(student(window.hidden(x), window.timesteps(sigma), student.prepare_context(
                torch.zeros(1, 1, cfg.dit.text_dim)), audio.repeat(repeat[:-1]))).float()
        x0_student = x - sigma[:, None, None, None, None] * v
        loss = mouth_weighted_mean((x0_student - trajectory[0.0].repeat(repeat)).pow(2), 4.0)
        losses.append(optimise(opt, loss, student.parameters()))
