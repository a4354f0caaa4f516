"""The dataset (procedural faces talking espeak speech) and the DiT's training windows, cut like the
session cuts them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..audio_features import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, MelEncoder, latent_audio_tokens
from ..profile_config import ProfileConfig
from ..tiny_codec import FRAMES_PER_LATENT, TinyCodec
from . import faces, speech
from .loop import autocast, resume


def make_dataset(out: Path, clips: int, seconds: float, size: int, seed: int) -> None:
    """Render procedural talking-face clips with espeak speech; frames uint8, audio float32 16 kHz."""
    rng = np.random.default_rng(seed)
    frames_per_clip = int(seconds * FPS) // FRAMES_PER_LATENT * FRAMES_PER_LATENT
    video = np.zeros((clips, frames_per_clip, size, size, 3), np.uint8)
    refs = np.zeros((clips, size, size, 3), np.uint8)
    audio = np.zeros((clips, frames_per_clip * SAMPLES_PER_FRAME), np.float32)
    for i in tqdm(range(clips), desc="clips"):
        identity = faces.sample_identity(rng)
        pcm = speech.make_training_audio(rng, frames_per_clip * SAMPLES_PER_FRAME / SAMPLE_RATE)
        pcm = pcm[: audio.shape[1]]
        audio[i, : len(pcm)] = pcm
        video[i] = faces.render_clip(identity, audio[i], rng, size=size)[:frames_per_clip]
        refs[i] = faces.render_reference(identity, size)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", video=video, refs=refs, audio=audio)


class Data:
    def __init__(self, out: Path, cfg: ProfileConfig):
        d = np.load(out / "data.npz")
        self.video, self.refs, self.audio = d["video"], d["refs"], d["audio"]
        self.mel = MelEncoder(cfg.audio.n_mels)

    @staticmethod
    def to_tensor(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).permute(*range(frames.ndim - 3), -1, -3, -2).float() / 127.5 - 1


def clip_reader(pcm: np.ndarray):
    """read(s0, s1) -> samples [s0, s1) of a clip, silence outside it (as the session's timeline)."""
    def read(s0, s1):
        out = np.zeros(s1 - s0, np.float32)
        a, b = max(s0, 0), min(s1, len(pcm))
        if b > a:
            out[a - s0:b - s0] = pcm[a:b]
        return out

    return read


def clip_audio_tokens(cfg: ProfileConfig, encoder: MelEncoder, pcm: np.ndarray, first: int, count: int) -> torch.Tensor:
    """(count, K, D) audio tokens of a clip's latent frames [first, first + count), as the session
    cuts them (silence outside the clip)."""
    return latent_audio_tokens(encoder, clip_reader(pcm), first, count, FRAMES_PER_LATENT, cfg.audio.behind_tokens,
                               cfg.audio.ahead_tokens)


class Windows:
    """Encodes every clip once with the frozen codec and cuts training windows like the session."""

    def __init__(self, out: Path, cfg: ProfileConfig, bf16: bool = True):
        data = Data(out, cfg)
        self.cfg = cfg
        self.codec = TinyCodec.from_config(cfg)
        codec_step = resume(out / "codec.pt", self.codec, None)
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
        self.new = cfg.window.new_latents
        self.context = cfg.window.context_latents

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
