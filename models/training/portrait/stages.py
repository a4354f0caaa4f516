"""The portrait motion generator's training stages (`python -m models.training portrait-...`):

- portrait-data: speech + motion clips (motion_data.make_data; `--engine flite`: recorded speakers);
- portrait-teacher: flow matching of the motion DiT on session-shaped windows (a first window from the
  reference alone, or the previous frames as clean, slightly noised context), audio dropped 15% of
  the time for classifier-free guidance;
- portrait-student: the few-step student (trajectory distillation of the teacher's audio-guided
  multi-step solves, guidance distilled in); half of its continuation windows get a context the
  student generated itself (the windows before), as the stream will; windows without audio (the
  session's idle path) learn the teacher's answer to silence;
- portrait-export: the DiT + the codec's motion statistics into one weights file;
- portrait-eval: held-out voices through the product's window loop (evaluate.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from models.checkpoints import save_modules
from models.profile_reader import read_profile
from models.profile_config import ProfileConfig
from models.sampler import GuidancePlan, flow_sigmas, sample
from models.training.dit_stages import (build_dit, sample_sigmas, student_schedule, teacher_and_student,
                                        teacher_solve)
from models.training.loop import autocast, finished_info, optimise, stage_steps
from models.training.portrait.motion_data import MotionWindows, make_data, motion_stats
from models.window_input import WindowInput, denoiser

STAGES = ("portrait-data", "portrait-teacher", "portrait-student", "portrait-export", "portrait-eval")
# the mouth is all of lip sync: its 7 channels count 3 times in the losses
CHANNEL_WEIGHT = torch.tensor([3.0] * 7 + [1.0] * 8)[None, :, None, None, None]
SILENCE = -2.0   # the mel encoder's token for digital silence
# the student's extra pull toward the data's shut mouth on frames whose targets are silent (the
# teacher's solve leaves the lips a little apart there; the product must close them)
CLOSED_WEIGHT = 3.0
MOUTH = 7   # the first 7 channels (models.portrait.motion.CHANNELS)


def weighted_mean(error: torch.Tensor) -> torch.Tensor:
    return (error * CHANNEL_WEIGHT).mean() / CHANNEL_WEIGHT.mean()


def null_context(dit, cfg: ProfileConfig):
    return dit.prepare_context(torch.zeros(1, 1, cfg.dit.text_dim))   # no text encoder


def train_teacher(out: Path, cfg: ProfileConfig, steps: int, batch: int, lr: float, bf16: bool) -> None:
    windows = MotionWindows(out, cfg)
    dit = build_dit(cfg)
    opt = torch.optim.AdamW(dit.parameters(), lr=lr, weight_decay=0.01)
    for step, rng, losses in stage_steps(out / "teacher.pt", dit, opt, lr, steps, seed=10_000, desc="portrait teacher"):
        context = windows.context if rng.random() < 0.8 else 0
        latents, audio, _, _ = windows.batch(rng, batch, context)
        known = 1 + context
        if context:   # slightly noised context, so the model forgives its own errors
            latents[:, :, 1:known] += torch.rand(batch, 1, 1, 1, 1) * 0.15 * torch.randn_like(latents[:, :, 1:known])
        drop = torch.from_numpy(rng.random(batch) < 0.15).float()[:, None, None, None]
        audio = audio * (1 - drop)
        target = latents[:, :, known:]
        sigma = sample_sigmas(rng, batch, cfg.sampler.shift)
        s = sigma[:, None, None, None, None]
        noise = torch.randn_like(target)
        window = WindowInput.clean_tokens(latents[:, :, :known], target.shape[2])
        with autocast(bf16):
            v = window.integrated(dit(window.hidden((1 - s) * target + s * noise), window.timesteps(sigma),
                                      null_context(dit, cfg), audio)).float()
        losses.append(optimise(opt, weighted_mean((v - (noise - target)).pow(2)), dit.parameters()))


@torch.no_grad()
def student_window(student, cfg: ProfileConfig, known: torch.Tensor, audio: torch.Tensor, steps: int,
                   generator: torch.Generator) -> torch.Tensor:
    """The student's new latents after `known`, sampled as the session samples (no guidance)."""
    n = cfg.window.new_latents
    noise = torch.randn((len(known), known.shape[1], n, 1, 1), generator=generator)
    window = WindowInput.clean_tokens(known, n)
    ctx = null_context(student, cfg)
    return sample(denoiser(student, window, audio, lambda row: ctx), noise,
                  flow_sigmas(steps, cfg.sampler.shift), GuidancePlan())


def generated_context(student, cfg: ProfileConfig, windows: MotionWindows, clips, starts, steps: int,
                      generator: torch.Generator, bf16: bool) -> torch.Tensor:
    """The c frames before `starts` as the stream makes them: c / n student windows in a row, the
    first after true frames, each later one after the frames generated so far."""
    c, n = windows.context, windows.new
    made = None
    student.eval()
    for first in range(-c, 0, n):
        prev, prev_audio, _, _ = windows.window(clips, starts + first, c)
        if made is not None:
            prev[:, :, 1 + c - made.shape[2]:1 + c] = made
        with autocast(bf16):
            new = student_window(student, cfg, prev[:, :, :1 + c], prev_audio, steps, generator).float()
        made = new if made is None else torch.cat([made, new], 2)
    student.train()
    return made


def train_student(out: Path, cfg: ProfileConfig, steps: int, batch: int, lr: float, student_steps: int,
                  teacher_steps: int, audio_cfg: float, bf16: bool, truth_weight: float = 0.0) -> None:
    """Besides the teacher's solve, the student's mouth is pulled toward the data's own mouth: by
    `truth_weight` on every frame, and by `CLOSED_WEIGHT` more where the data's mouth is shut."""
    windows = MotionWindows(out, cfg)
    teacher, student, opt = teacher_and_student(out, cfg, lr)
    shift, c, n = cfg.sampler.shift, windows.context, windows.new
    student_sigmas = student_schedule(teacher_steps, student_steps, shift)
    extra = {"student_steps": student_steps, "teacher_steps": teacher_steps, "audio_cfg": audio_cfg,
             "truth_weight": truth_weight}
    for step, rng, losses in stage_steps(out / "student.pt", student, opt, lr, steps, seed=20_000,
                                         desc="portrait student", save_every=50, extra=extra):
        generated = c % n == 0 and rng.random() < 0.5   # the context is the student's own frames
        context = c if generated or rng.random() < 0.8 else 0
        latents, audio, clips, starts = windows.batch(rng, batch, context, lead=c if generated else 0)
        known = 1 + context
        if generated:
            latents[:, :, 1:known] = generated_context(student, cfg, windows, clips, starts, student_steps,
                                                       torch.Generator().manual_seed(step), bf16)
        drop = torch.from_numpy(rng.random(batch) < 0.15)
        # the idle path (null audio) must do what the teacher does on silence: shut the mouth
        teacher_audio = torch.where(drop[:, None, None, None], torch.full_like(audio, SILENCE), audio)
        teacher_audio[:, 0] = 0
        audio = audio * (~drop).float()[:, None, None, None]
        noise = torch.randn_like(latents[:, :, known:])
        window = WindowInput.clean_tokens(latents[:, :, :known], n)
        with torch.no_grad(), autocast(bf16):
            ctx_t = null_context(teacher, cfg).repeat(batch)
        trajectory = teacher_solve(teacher, window, teacher_audio, noise, teacher_steps, audio_cfg, shift, ctx_t, bf16)
        x = torch.cat([trajectory[min(trajectory, key=lambda k: abs(k - s))] for s in student_sigmas])
        sigma = torch.tensor(student_sigmas).repeat_interleave(batch)
        repeat = (student_steps, 1, 1, 1, 1)
        window = WindowInput.clean_tokens(latents[:, :, :known].repeat(repeat), n)
        with autocast(bf16):
            v = window.integrated(student(window.hidden(x), window.timesteps(sigma), null_context(student, cfg),
                                          audio.repeat(student_steps, 1, 1, 1))).float()
        x0 = x - sigma[:, None, None, None, None] * v
        loss = weighted_mean((x0 - trajectory[0.0].repeat(repeat)).pow(2))
        truth = latents[:, :MOUTH, known:]
        shut = (truth - windows.reference[:MOUTH, None, None, None]).abs().amax(1, keepdim=True) < 1e-3
        pull = (truth_weight + CLOSED_WEIGHT * shut.float()) * (~drop).float()[:, None, None, None, None]
        loss = loss + ((x0[:, :MOUTH] - truth.repeat(repeat)).pow(2) * pull.repeat(repeat)).mean()
        losses.append(optimise(opt, loss, student.parameters()))


class MotionStats(nn.Module):
    """The codec's part of the weights file: the per-channel motion statistics (float32)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("motion_mean", mean.float())
        self.register_buffer("motion_std", std.float())


def export(out: Path, cfg: ProfileConfig, target: Path, which: str) -> None:
    dit = build_dit(cfg)
    info = finished_info(out / f"{which}.pt", dit)
    mean, std = motion_stats(out)
    # the DiT in float16 (half the file), the statistics float32 (the codec's buffers)
    save_modules(target, {"dit": dit.half(), "codec": MotionStats(mean, std)}, metadata={"dit": which, **info})
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) from the {which}: {info}")


def run(args: argparse.Namespace) -> None:
    out = args.out or Path("runs") / "portrait"
    cfg = read_profile(args.profile or "portrait-random")
    bf16 = args.precision == "bf16"
    stage = args.stage
    if stage == "portrait-data":
        make_data(out, cfg, args.clips, args.seconds, args.seed, args.engine)
    elif stage == "portrait-teacher":
        train_teacher(out, cfg, args.steps, args.batch, args.lr, bf16)
    elif stage == "portrait-student":
        train_student(out, cfg, args.steps, args.batch, args.lr, args.student_steps, args.teacher_steps,
                      args.audio_cfg, bf16, args.truth_weight)
    elif stage == "portrait-export":
        export(out, cfg, args.target or out / "portrait.safetensors", args.which)
    else:
        from models.training.portrait.evaluate import main as evaluate
        evaluate(out, cfg, args)
