"""Training of the embedded tiny model, resumable, stage by stage (the shipped weights' exact
commands, times and losses: models/weights/TINY_MODEL_CARD.md):

    python -m models.train_tiny data    --clips 500 --seconds 4
    python -m models.train_tiny codec   --steps 3000 --batch 4 --lr 1e-3
    python -m models.train_tiny teacher --steps 5000 --batch 8 --lr 5e-4
    python -m models.train_tiny decoder --steps 3000 --batch 4 --lr 3e-4
    python -m models.train_tiny distill --steps 600 --batch 4 --lr 1e-4 --teacher-steps 8
    python -m models.train_tiny export  --which student

Each stage keeps a checkpoint in --out and continues from it when run again. The same DiT class,
sampler, window layout and audio windowing as the engine are used, only smaller.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .audio_features import MelEncoder, SAMPLES_PER_FRAME, latent_audio_tokens
from .checkpoints import save_modules
from .dit import AudioWanTransformer, dit_kwargs
from .sampler import flow_sigmas
from .tiny_codec import FRAMES_PER_LATENT, TinyCodec

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def load_profile_config(name: str = "tiny-random") -> dict:
    import tomllib

    return tomllib.loads((ROOT / "avatar" / "profiles" / f"{name}.toml").read_text())


# ---- data ---------------------------------------------------------------------------------------
def make_dataset(out: Path, clips: int, seconds: float, size: int, seed: int) -> None:
    """Render procedural talking-face clips with espeak speech; frames uint8, audio float32 16 kHz."""
    from . import procedural, speech

    rng = np.random.default_rng(seed)
    frames_per_clip = int(seconds * 25) // FRAMES_PER_LATENT * FRAMES_PER_LATENT
    video = np.zeros((clips, frames_per_clip, size, size, 3), np.uint8)
    refs = np.zeros((clips, size, size, 3), np.uint8)
    audio = np.zeros((clips, frames_per_clip * SAMPLES_PER_FRAME), np.float32)
    for i in tqdm(range(clips), desc="clips"):
        identity = procedural.sample_identity(rng)
        pcm = speech.make_training_audio(rng, frames_per_clip * SAMPLES_PER_FRAME / 16000)
        pcm = pcm[: audio.shape[1]]
        audio[i, : len(pcm)] = pcm
        video[i] = procedural.render_clip(identity, audio[i], rng, size=size)[:frames_per_clip]
        refs[i] = procedural.render_reference(identity, size)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", video=video, refs=refs, audio=audio)


class Data:
    def __init__(self, out: Path, cfg: dict):
        d = np.load(out / "data.npz")
        self.video, self.refs, self.audio = d["video"], d["refs"], d["audio"]
        self.mel = MelEncoder(cfg["audio"]["n_mels"])

    @staticmethod
    def to_tensor(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).permute(*range(frames.ndim - 3), -1, -3, -2).float() / 127.5 - 1


def clip_audio_tokens(cfg: dict, encoder: MelEncoder, pcm: np.ndarray, first: int, count: int) -> torch.Tensor:
    """(count, K, D) audio tokens of a clip's latent frames [first, first + count), as the session
    cuts them (silence outside the clip)."""
    def read(s0, s1):
        out = np.zeros(s1 - s0, np.float32)
        a, b = max(s0, 0), min(s1, len(pcm))
        if b > a:
            out[a - s0:b - s0] = pcm[a:b]
        return out

    audio = cfg["audio"]
    return latent_audio_tokens(encoder, read, first, count, FRAMES_PER_LATENT, audio["behind_tokens"],
                               audio["ahead_tokens"])


def autocast(bf16: bool):
    """bf16 matrix work on the CPU (oneDNN; AMX where the CPU has it). On the dev machine's Xeon it
    makes a DiT step 1.7x and a channels-last codec step 5x faster than float32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


# ---- stage 1: the codec -------------------------------------------------------------------------
def _codec_batch(data: "Data", rng: np.random.Generator, batch: int, latents: int, cfg: dict):
    """`latents` x 4 consecutive frames from random clips, the frame shown before them (the reference
    image at a clip's start, as in a stream), the clips' reference images and the latents' audio tokens."""
    n_frames = latents * FRAMES_PER_LATENT
    clip = rng.integers(0, len(data.video), batch)
    first = rng.integers(0, data.video.shape[1] // FRAMES_PER_LATENT - latents, batch)
    frames = Data.to_tensor(np.stack([data.video[c, f * FRAMES_PER_LATENT:(f + latents) * FRAMES_PER_LATENT]
                                      for c, f in zip(clip, first)]))
    previous = Data.to_tensor(np.stack([data.video[c, f * FRAMES_PER_LATENT - 1] if f else data.refs[c]
                                        for c, f in zip(clip, first)]))
    audio = torch.stack([clip_audio_tokens(cfg, data.mel, data.audio[c], f, latents) for c, f in zip(clip, first)])
    return frames, previous, Data.to_tensor(data.refs[clip]), audio


def _decode_for_training(codec: TinyCodec, z: torch.Tensor, ref_latent: torch.Tensor, refs: torch.Tensor,
                         previous: torch.Tensor, audio: torch.Tensor, rng: np.random.Generator, bf16: bool) -> torch.Tensor:
    """Decode unit-scale latents as a stream would, with two perturbations. Noise at 5% of how much the
    latents vary between clips and frames: a decoder that tolerates the DiT's small latent errors, and
    an encoder that cannot hide its signal under the noise (with a fixed noise level it shrank to a
    constant, and the decoder learned to copy the reference image instead). And half the batch decodes
    without the reference image, so everything must also be in the latents; the mouth above all, which
    copying the (closed-mouth) reference never gets right."""
    z = z + 0.05 * (z - z.mean(0, keepdim=True)).detach().std() * torch.randn_like(z)
    blind = torch.from_numpy(rng.random(len(z)) < 0.5).float()[:, None, None, None]
    with autocast(bf16):
        state = codec.start_stream(ref_latent, refs * (1 - blind))._replace(last_frame=previous)
        return codec.decode(z, state, audio)[0].float()


def _reconstruction_loss(recon: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    return mouth_weighted_mean((recon - frames).abs(), 8.0) + 0.5 * F.l1_loss(_grad(recon), _grad(frames))


def train_codec(out: Path, steps: int, batch: int, lr: float, cfg: dict, bf16: bool = True) -> None:
    data = Data(out, cfg)
    codec = TinyCodec.from_config(cfg)
    opt = torch.optim.AdamW(codec.parameters(), lr=lr)
    start = _resume(out / "codec.pt", codec, opt)
    rng = np.random.default_rng(start)
    losses = []
    for step in tqdm(range(start, steps), desc="codec", initial=start, total=steps):
        _set_lr(opt, lr, step, steps)
        frames, previous, refs, audio = _codec_batch(data, rng, batch, 3, cfg)
        with autocast(bf16):
            z = codec.encode(frames).float()
            ref_latent = codec.encode_reference(refs).float()
        spread = z.detach().std()  # unit-scale latents
        # The decoder hears nothing in this stage: the latents alone must carry the mouth. It learns to
        # hear in the decoder stage, once the encoder is frozen.
        silence = torch.zeros_like(audio)
        recon = _decode_for_training(codec, z / spread, ref_latent / spread, refs, previous, silence, rng, bf16)
        losses.append(_optimise(opt, _reconstruction_loss(recon, frames), codec.parameters(), max_norm=None))
        with torch.no_grad():
            codec.latent_scale.mul_(spread ** 0.1)  # running estimate, in log space
        if (step + 1) % 100 == 0 or step + 1 == steps:
            _save(out / "codec.pt", codec, opt, step + 1, losses)
            losses = []
    with torch.no_grad():  # latents of unit scale for the DiT
        frames = Data.to_tensor(data.video[:16, :FRAMES_PER_LATENT * 4])
        codec.latent_scale.fill_(codec.encode(frames).std().item() * codec.latent_scale.item())
    _save(out / "codec.pt", codec, opt, steps, losses)


def train_decoder(out: Path, steps: int, batch: int, lr: float, cfg: dict, bf16: bool = True) -> None:
    """Stage 1b: the decoder alone on the frozen encoder's latents (the DiT's latents keep their
    meaning, so it may run before or after the teacher), now also matching the change between
    consecutive frames, and hearing each latent's audio tokens. Each latent decodes to 4 frames, and
    with a per-frame loss alone the independent errors of neighbouring latents showed as a jump at
    every 4th frame (mean change 1.7 levels there against 0.7 inside a latent, on held-out clips);
    and the latents hold little of the mouth's motion inside their 4 frames, which the audio gives."""
    data = Data(out, cfg)
    codec = TinyCodec.from_config(cfg)
    _resume(out / "codec.pt", codec, None)
    codec.encoder.requires_grad_(False)
    opt = torch.optim.AdamW(codec.decoder.parameters(), lr=lr)
    start = _resume(out / "decoder.pt", codec, opt)
    rng = np.random.default_rng(30_000 + start)
    losses = []
    for step in tqdm(range(start, steps), desc="decoder", initial=start, total=steps):
        _set_lr(opt, lr, step, steps)
        frames, previous, refs, audio = _codec_batch(data, rng, batch, 4, cfg)
        with torch.no_grad(), autocast(bf16):
            z, ref_latent = codec.encode(frames).float(), codec.encode_reference(refs).float()
        recon = _decode_for_training(codec, z, ref_latent, refs, previous, audio, rng, bf16)
        # change error = the difference of consecutive frames' errors; across a latent boundary it was
        # what made the jump, so those transitions count again on their own
        change_error = ((recon[:, 1:] - recon[:, :-1]) - (frames[:, 1:] - frames[:, :-1])).abs()
        at_boundary = change_error[:, FRAMES_PER_LATENT - 1::FRAMES_PER_LATENT]
        loss = (_reconstruction_loss(recon, frames) + 2.0 * mouth_weighted_mean(change_error, 8.0)
                + 4.0 * mouth_weighted_mean(at_boundary, 8.0))
        losses.append(_optimise(opt, loss, codec.decoder.parameters(), max_norm=None))
        if (step + 1) % 100 == 0 or step + 1 == steps:
            _save(out / "decoder.pt", codec, opt, step + 1, losses)
            losses = []


def _trained_codec(out: Path, cfg: dict) -> TinyCodec:
    """The codec with the fine-tuned decoder where that stage ran."""
    codec = TinyCodec.from_config(cfg)
    _resume(out / "decoder.pt" if (out / "decoder.pt").is_file() else out / "codec.pt", codec, None)
    return codec


def _set_lr(opt: torch.optim.Optimizer, peak: float, step: int, steps: int, warmup: int = 50) -> None:
    """Linear warm-up, then cosine decay to a tenth of the peak: a function of the step alone, so a
    resumed run continues the same schedule."""
    if step < warmup:
        lr = peak * (step + 1) / warmup
    else:
        lr = peak * (0.1 + 0.45 * (1 + np.cos(np.pi * (step - warmup) / max(steps - warmup, 1))))
    for group in opt.param_groups:
        group["lr"] = lr


def _optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, params, max_norm: float | None = 1.0) -> float:
    opt.zero_grad()
    loss.backward()
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
    return loss.item()


def _grad(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([(x[..., 1:, :] - x[..., :-1, :]).flatten(-2), (x[..., 1:] - x[..., :-1]).flatten(-2)], -1)


# ---- windows for the DiT ------------------------------------------------------------------------
class Windows:
    """Encodes every clip once with the frozen codec and cuts training windows like the session."""

    def __init__(self, out: Path, cfg: dict, bf16: bool = True):
        data = Data(out, cfg)
        self.cfg = cfg
        self.codec = TinyCodec.from_config(cfg)
        codec_step = _resume(out / "codec.pt", self.codec, None)
        self.codec.eval().requires_grad_(False)
        cache = out / f"latents-codec{codec_step}.pt"  # re-encoded whenever the codec trains on
        if cache.is_file():
            self.latents, self.ref_latents = torch.load(cache)
        else:
            with torch.no_grad(), autocast(bf16):
                self.latents = torch.cat([self.codec.encode(Data.to_tensor(data.video[i:i + 8]))
                                          for i in tqdm(range(0, len(data.video), 8), desc="encode")])
                self.ref_latents = torch.cat([self.codec.encode_reference(Data.to_tensor(data.refs[i:i + 32]))
                                              for i in range(0, len(data.refs), 32)])
            self.latents, self.ref_latents = self.latents.float(), self.ref_latents.float()
            torch.save((self.latents, self.ref_latents), cache)
        self.audio = data.audio
        self.encoder = data.mel
        self.new = cfg["window"]["new_latents"]
        self.context = cfg["window"]["context_latents"]

    def audio_tokens(self, clip: int, first: int, count: int) -> torch.Tensor:
        return clip_audio_tokens(self.cfg, self.encoder, self.audio[clip], first, count)

    def batch(self, rng: np.random.Generator, size: int, continuation: bool):
        """Reference + (context) + new latents, their audio tokens, and the known-frame count."""
        c = self.context if continuation else 0
        total_latents = self.latents.shape[2]
        clips = rng.integers(0, len(self.latents), size)
        # a first window (c = 0) may start anywhere too: the reference is the anchor
        starts = rng.integers(c, total_latents - self.new + 1, size)
        x = torch.stack([self.latents[k, :, s - c:s + self.new] for k, s in zip(clips, starts)])
        ref = self.ref_latents[clips]
        audio = torch.stack([torch.cat([torch.zeros_like(self.audio_tokens(k, 0, 1)),
                                        self.audio_tokens(k, s - c, c + self.new)]) for k, s in zip(clips, starts)])
        return torch.cat([ref, x], dim=2), audio, 1 + c


def dit_inputs(latents: torch.Tensor, noisy_new: torch.Tensor, n_known: int, mouth_mask: torch.Tensor | None = None):
    """The 36-channel input: [known latents with the new ones noisy | mask(4) | known latents]."""
    b, ch, t, h, w = latents.shape
    mask = torch.zeros(b, 4, t, h, w)
    mask[:, :, :n_known] = 1
    known = torch.zeros_like(latents)
    known[:, :, :n_known] = latents[:, :, :n_known]
    if mouth_mask is not None:  # lip-sync task: the new frames are given except the mouth region
        mask[:, :, n_known:] = mouth_mask
        known[:, :, n_known:] = latents[:, :, n_known:] * mouth_mask
    x = torch.cat([latents[:, :, :n_known], noisy_new], dim=2)
    return torch.cat([x, mask, known], dim=1)


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


def build_dit(cfg: dict) -> AudioWanTransformer:
    return AudioWanTransformer(**dit_kwargs(cfg["dit"]))


def sample_sigmas(rng: np.random.Generator, n: int, shift: float) -> torch.Tensor:
    s = 1 / (1 + np.exp(-rng.normal(0, 1, n)))  # logit-normal, then Wan's shift
    return torch.tensor(shift * s / (1 + (shift - 1) * s), dtype=torch.float32)


# ---- stage 2: the teacher -----------------------------------------------------------------------
def train_teacher(out: Path, steps: int, batch: int, lr: float, cfg: dict, bf16: bool = True) -> None:
    windows = Windows(out, cfg, bf16)
    dit = build_dit(cfg)
    opt = torch.optim.AdamW(dit.parameters(), lr=lr, weight_decay=0.01)
    start = _resume(out / "teacher.pt", dit, opt)
    rng = np.random.default_rng(10_000 + start)
    losses = []
    for step in tqdm(range(start, steps), desc="teacher", initial=start, total=steps):
        _set_lr(opt, lr, step, steps)
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
        sigma = sample_sigmas(rng, batch, float(cfg["sampler"]["shift"]))
        s = sigma[:, None, None, None, None]
        noise = torch.randn_like(target)
        noisy = (1 - s) * target + s * noise
        mouth = mouth_region_mask(batch, *target.shape[-2:]) if task == "lipsync" else None
        hidden = dit_inputs(latents, noisy, n_known, mouth)
        timestep = torch.zeros(batch, latents.shape[2])
        timestep[:, n_known:] = sigma[:, None] * 1000
        with autocast(bf16):
            ctx = dit.prepare_context(torch.zeros(1, 1, cfg["dit"]["text_dim"]))  # tiny has no text encoder
            v = dit(hidden, timestep, ctx, audio)[:, :, n_known:].float()
        loss = mouth_weighted_mean((v - (noise - target)).pow(2), 4.0)
        losses.append(_optimise(opt, loss, dit.parameters()))
        if (step + 1) % 100 == 0 or step + 1 == steps:
            _save(out / "teacher.pt", dit, opt, step + 1, losses)
            losses = []


# ---- stage 3: few-step distillation -------------------------------------------------------------
@torch.no_grad()
def teacher_solve(teacher, latents, audio, n_known, noise, steps, audio_cfg, shift, ctx, bf16: bool):
    """The teacher's many-step, audio-guided ODE solution from `noise`; returns the trajectory."""
    sigmas = flow_sigmas(steps, shift)
    x = noise
    trajectory = {1.0: x}
    b = latents.shape[0]
    timestep = torch.zeros(2 * b, latents.shape[2])
    for sigma, nxt in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        hidden = dit_inputs(latents, x, n_known).repeat(2, 1, 1, 1, 1)
        timestep[:, n_known:] = sigma * 1000
        with autocast(bf16):
            v = teacher(hidden, timestep, ctx, torch.cat([audio, torch.zeros_like(audio)]))[:, :, n_known:].float()
        v_cond, v_null = v[:b], v[b:]
        x = x + (nxt - sigma) * (v_null + audio_cfg * (v_cond - v_null))
        trajectory[round(nxt, 6)] = x
    return trajectory


def train_distill(out: Path, steps: int, batch: int, lr: float, cfg: dict, student_steps: int,
                  teacher_steps: int, audio_cfg: float, bf16: bool = True) -> None:
    """Trajectory distillation: the student, run with `student_steps` Euler steps, must land where
    the teacher's `teacher_steps`-step guided ODE lands, from the same noise (guidance distilled in).
    Chosen over consistency or DMD training because it needs no extra networks and converges in a
    few hundred CPU steps on data this regular."""
    windows = Windows(out, cfg, bf16)
    teacher = build_dit(cfg)
    _resume(out / "teacher.pt", teacher, None)
    teacher.eval().requires_grad_(False)
    student = build_dit(cfg)
    student.load_state_dict(teacher.state_dict())
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    start = _resume(out / "student.pt", student, opt)
    rng = np.random.default_rng(20_000 + start)
    shift = float(cfg["sampler"]["shift"])
    # the student's own schedule, aligned with the teacher's grid so the teacher's states are on it
    grid = flow_sigmas(teacher_steps, shift).tolist()
    student_sigmas = [grid[round(i * teacher_steps / student_steps)] for i in range(student_steps)]
    with torch.no_grad(), autocast(bf16):
        ctx_t = teacher.prepare_context(torch.zeros(1, 1, cfg["dit"]["text_dim"]))
    losses = []
    for step in tqdm(range(start, steps), desc="distill", initial=start, total=steps):
        _set_lr(opt, lr, step, steps)
        latents, audio, n_known = windows.batch(rng, batch, continuation=rng.random() < 0.7)
        if n_known > 1:
            latents[:, :, 1:n_known] += 0.05 * torch.rand(batch, 1, 1, 1, 1) * torch.randn_like(latents[:, :, 1:n_known])
        drop = torch.from_numpy(rng.random(batch) < 0.15).float()[:, None, None, None]
        audio = audio * (1 - drop)  # the idle path runs the student on null audio
        noise = torch.randn_like(latents[:, :, n_known:])
        trajectory = teacher_solve(teacher, latents, audio, n_known, noise, teacher_steps, audio_cfg, shift,
                                   ctx_t.repeat(2 * batch), bf16)
        # every position of the student's schedule at once: the teacher's solve is the costly part
        x = torch.cat([trajectory[min(trajectory, key=lambda k: abs(k - s))] for s in student_sigmas])
        sigma = torch.tensor(student_sigmas).repeat_interleave(batch)
        timestep = torch.zeros(len(x), latents.shape[2])
        timestep[:, n_known:] = sigma[:, None] * 1000
        repeat = (student_steps,) + (1,) * (latents.ndim - 1)
        with autocast(bf16):
            v = student(dit_inputs(latents.repeat(repeat), x, n_known), timestep, student.prepare_context(
                torch.zeros(1, 1, cfg["dit"]["text_dim"])), audio.repeat(repeat[:-1]))[:, :, n_known:].float()
        x0_student = x - sigma[:, None, None, None, None] * v
        loss = mouth_weighted_mean((x0_student - trajectory[0.0].repeat(repeat)).pow(2), 4.0)
        losses.append(_optimise(opt, loss, student.parameters()))
        if (step + 1) % 50 == 0 or step + 1 == steps:
            _save(out / "student.pt", student, opt, step + 1, losses,
                  extra={"student_steps": student_steps, "teacher_steps": teacher_steps, "audio_cfg": audio_cfg})
            losses = []


# ---- export -------------------------------------------------------------------------------------
def export(out: Path, cfg: dict, target: Path, which: str) -> None:
    codec = _trained_codec(out, cfg)
    dit = build_dit(cfg)
    info = _resume(out / f"{which}.pt", dit, None, return_info=True)
    save_modules(target, {"dit": dit, "codec": codec}, metadata={"dit": which, **info}, dtype=torch.float16)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) from the {which}: {info}")


# ---- checkpoints --------------------------------------------------------------------------------
def _save(path: Path, module, opt, step: int, losses: list[float], extra: dict | None = None) -> None:
    log_path = path.with_suffix(".log.jsonl")
    if losses:
        with open(log_path, "a") as f:
            f.write(json.dumps({"step": step, "loss": float(np.mean(losses)), "time": time.time()}) + "\n")
    state = {"model": module.state_dict(), "step": step, "extra": extra or {}}
    if opt is not None:
        state["opt"] = opt.state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(path: Path, module, opt, return_info: bool = False):
    if not path.is_file():
        if return_info:
            raise FileNotFoundError(f"{path} does not exist: run that stage first")
        return 0
    state = torch.load(path, weights_only=False)
    module.load_state_dict(state["model"])
    if opt is not None and "opt" in state:
        opt.load_state_dict(state["opt"])
    if return_info:
        losses = [json.loads(l)["loss"] for l in open(path.with_suffix(".log.jsonl"))] if path.with_suffix(".log.jsonl").is_file() else []
        return {"steps": state["step"], "final_loss": losses[-1] if losses else None, **state.get("extra", {})}
    return state["step"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m models.train_tiny", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["data", "codec", "decoder", "teacher", "distill", "export"])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "tiny")
    p.add_argument("--profile", default="tiny-random", help="profile whose shapes are trained")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--student-steps", type=int, default=2)
    p.add_argument("--teacher-steps", type=int, default=16)
    p.add_argument("--audio-cfg", type=float, default=2.0)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="bf16: autocast matrix work to bfloat16 (fast on CPUs with AVX-512 BF16 / AMX)")
    p.add_argument("--which", choices=["teacher", "student"], default="student")
    p.add_argument("--target", type=Path, default=ROOT / "models" / "weights" / "tiny.safetensors")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.manual_seed(args.seed)
    cfg = load_profile_config(args.profile)
    size = cfg["resolution"][0]
    if args.stage == "data":
        make_dataset(args.out, args.clips, args.seconds, size, args.seed)
    elif args.stage == "codec":
        train_codec(args.out, args.steps, args.batch, args.lr, cfg, args.precision == "bf16")
    elif args.stage == "decoder":
        train_decoder(args.out, args.steps, args.batch, args.lr, cfg, args.precision == "bf16")
    elif args.stage == "teacher":
        train_teacher(args.out, args.steps, args.batch, args.lr, cfg, args.precision == "bf16")
    elif args.stage == "distill":
        train_distill(args.out, args.steps, args.batch, args.lr, cfg, args.student_steps, args.teacher_steps,
                      args.audio_cfg, args.precision == "bf16")
    else:
        export(args.out, cfg, args.target, args.which)


if __name__ == "__main__":
    main()
