"""The `portrait-data` stage and the motion DiT's training windows, cut as the session cuts them.

The data is made in chunks (`data-000.npz`, ...; a rerun makes only the missing ones): each clip is a
training example (`dataset.training_example`: a training voice at a random rate and pitch, pauses,
the speech targets), mostly passed through a random microphone chain (`augment`), cut to
`seconds`. A clip keeps its motion (T, 15) and the audio encoder's token stream of its (augmented)
audio; `stats.npz` holds the per-channel motion mean and std that normalise the latents (the
codec's `motion_mean`, `motion_std`).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.audio_features import FPS, SAMPLES_PER_FRAME, MelEncoder
from models.profile_config import ProfileConfig
from models.training.data import clip_reader
from models.training.portrait.augment import augment, stretch
from models.training.portrait.dataset import training_example

CHUNK = 100
STD_FLOOR = 1e-3   # a channel the targets never move (head_y) stays 0 rather than divide by ~0


def encoder_for(cfg: ProfileConfig) -> MelEncoder:
    return MelEncoder(cfg.audio.n_mels)


def token_stream(cfg: ProfileConfig, encoder: MelEncoder, pcm: np.ndarray, frames: int) -> torch.Tensor:
    """(2 frames + behind + ahead, D) tokens: latent frame i (one per video frame) attends to rows
    [2 i, 2 i + behind + 2 + ahead), the same tokens `latent_audio_tokens` gives the session
    (silence outside the clip)."""
    tpf = encoder.tokens_per_frame
    j0, j1 = -cfg.audio.behind_tokens, tpf * frames + cfg.audio.ahead_tokens
    return encoder.encode(clip_reader(pcm)(*encoder.token_span(j0, j1)), j1 - j0)


def make_clip(rng: np.random.Generator, seconds: float, augment_p: float = 0.8,
              engine: str = "espeak") -> tuple[np.ndarray, np.ndarray]:
    """(audio 16 kHz, motion (frames, 15)) of exactly `seconds`."""
    frames = int(round(seconds * FPS))
    example = training_example(rng, seconds * 1.15, engine)
    audio, motion = example.audio, example.motion
    if rng.random() < 0.5:   # speed and pitch beyond espeak's own
        audio, motion = stretch(audio, motion, rng.uniform(0.9, 1.1))
    if rng.random() < augment_p:
        audio = augment(audio, rng)
    out = np.zeros(frames * SAMPLES_PER_FRAME, np.float32)
    out[: min(len(out), len(audio))] = audio[: len(out)]
    if len(motion) < frames:
        motion = np.concatenate([motion, np.repeat(motion[-1:] * 0, frames - len(motion), 0)])
    return out, motion[:frames].astype(np.float32)


def make_data(out: Path, cfg: ProfileConfig, clips: int, seconds: float, seed: int, engine: str = "espeak") -> None:
    """`clips` clips of `engine`'s voices in chunks (espeak: data-NNN.npz, flite: flite-NNN.npz)."""
    out.mkdir(parents=True, exist_ok=True)
    prefix, seed = ("data", [seed]) if engine == "espeak" else (engine, [seed, 1])
    encoder = encoder_for(cfg)
    frames = int(round(seconds * FPS))
    for chunk in range(math.ceil(clips / CHUNK)):
        path = out / f"{prefix}-{chunk:03d}.npz"
        if path.is_file():
            continue
        rng = np.random.default_rng([*seed, chunk])
        tokens, motions = [], []
        for _ in tqdm(range(min(CHUNK, clips - chunk * CHUNK)), desc=f"portrait data chunk {chunk}",
                      disable=None):
            audio, motion = make_clip(rng, seconds, engine=engine)
            tokens.append(token_stream(cfg, encoder, audio, frames).numpy().astype(np.float16))
            motions.append(motion)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, tokens=np.stack(tokens), motion=np.stack(motions))
        tmp.replace(path)
        print(f"portrait data: wrote {path}", flush=True)
    motion = load_chunks(out)[1]
    if not (out / "stats.npz").is_file():   # the first data stage's statistics stay (training may have begun)
        flat = motion.reshape(-1, motion.shape[-1])
        np.savez(out / "stats.npz", mean=flat.mean(0), std=np.maximum(flat.std(0), STD_FLOOR))
    print(f"{len(motion)} clips of {seconds} s in {out}")


def load_chunks(out: Path) -> tuple[np.ndarray, np.ndarray]:
    paths = sorted(out.glob("data-[0-9][0-9][0-9].npz")) + sorted(out.glob("flite-[0-9][0-9][0-9].npz"))
    if not paths:
        raise FileNotFoundError(f"no data in {out}: run the portrait-data stage first")
    parts = [np.load(p) for p in paths]
    return np.concatenate([p["tokens"] for p in parts]), np.concatenate([p["motion"] for p in parts])


def motion_stats(out: Path) -> tuple[torch.Tensor, torch.Tensor]:
    stats = np.load(out / "stats.npz")
    return torch.from_numpy(stats["mean"]).float(), torch.from_numpy(stats["std"]).float()


class MotionWindows:
    """Training windows [reference | c context frames | n new frames] of normalised motion with
    their audio tokens (the reference's slot null), as the session lays a window out."""

    def __init__(self, out: Path, cfg: ProfileConfig):
        tokens, motion = load_chunks(out)
        self.mean, self.std = motion_stats(out)
        self.tokens = torch.from_numpy(tokens.astype(np.float32))
        self.latents = (torch.from_numpy(motion) - self.mean) / self.std   # (N, T, 15)
        self.reference = -self.mean / self.std   # the all-zero motion
        self.new, self.context = cfg.window.new_latents, cfg.window.context_latents
        self.span = cfg.audio.behind_tokens + 2 + cfg.audio.ahead_tokens

    def audio(self, clips: np.ndarray, first: np.ndarray, count: int) -> torch.Tensor:
        """(B, count, K, D) tokens of latent frames [first, first + count) of each clip."""
        rows = 2 * (first[:, None, None] + np.arange(count)[None, :, None]) + np.arange(self.span)[None, None]
        return self.tokens[clips[:, None, None], rows]

    def batch(self, rng: np.random.Generator, size: int, context: int, lead: int = 0):
        """Latents (B, 15, 1 + context + n, 1, 1), audio (B, 1 + context + n, K, D), their starts
        and clips. `lead` more frames before the context exist (for generating that context)."""
        frames = self.latents.shape[1]
        clips = rng.integers(0, len(self.latents), size)
        starts = rng.integers(context + lead, frames - self.new + 1, size)
        if context == 0 and not lead:   # a stream's first window starts at frame 0
            starts = np.where(rng.random(size) < 0.5, 0, starts)
        return self.window(clips, starts, context)

    def window(self, clips: np.ndarray, starts: np.ndarray, context: int):
        first = starts - context
        idx = first[:, None] + np.arange(context + self.new)[None]
        x = self.latents[clips[:, None], idx]                                # (B, c + n, 15)
        ref = self.reference.expand(len(clips), 1, -1)
        latents = torch.cat([ref, x], 1).permute(0, 2, 1)[..., None, None].contiguous()
        audio = self.audio(clips, first, context + self.new)
        audio = torch.cat([torch.zeros_like(audio[:, :1]), audio], 1)
        return latents, audio, clips, starts
