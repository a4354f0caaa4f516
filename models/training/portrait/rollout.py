"""Motion for a whole clip, made window by window exactly as `avatar.session.Session` makes a
portrait stream's latents: [reference | the previous window's last frames, clean | new frames], the
profile's sampler, steps and guidance plan, the idle path (null audio, `idle_steps`, no audio
guidance) when the window and its look-ahead hold no speech by the session's energy gate, and the
session's per-window noise seeds. Training and evaluation live below `avatar` (imports run
avatar -> models), so they cannot run a Session itself.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from models.audio_features import SAMPLE_RATE, SAMPLES_PER_FRAME, MelEncoder, lookahead_seconds
from models.echomimic_inputs import window_audio
from models.profile_config import ProfileConfig
from models.sampler import GuidancePlan, flow_sigmas, sample
from models.training.data import clip_reader
from models.window_input import WindowInput, denoiser

SPEECH_DBFS = -45.0   # avatar.session_audio.SPEECH_DBFS: the session's gate when no VAD marks speech


def speech_frames(audio: np.ndarray, f0: int, f1: int) -> np.ndarray:
    chunk = np.zeros((f1 - f0) * SAMPLES_PER_FRAME, np.float32)
    part = audio[f0 * SAMPLES_PER_FRAME:f1 * SAMPLES_PER_FRAME]
    chunk[:len(part)] = part
    rms = np.sqrt(np.mean(chunk.reshape(f1 - f0, -1).astype(np.float64) ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms) > SPEECH_DBFS


@torch.inference_mode()
def generate(dit, cfg: ProfileConfig, mean: torch.Tensor, std: torch.Tensor, audio: np.ndarray, seed: int = 0,
             plan: GuidancePlan | None = None) -> np.ndarray:
    """(frames, 15) motion for 16 kHz `audio`; `plan` overrides the profile's guidance."""
    encoder = MelEncoder(cfg.audio.n_mels)
    n, keep = cfg.window.new_latents, cfg.window.context_latents
    behind, ahead = cfg.audio.behind_tokens, cfg.audio.ahead_tokens
    frames = math.ceil(len(audio) / SAMPLES_PER_FRAME)
    lookahead = -(-int(lookahead_seconds(encoder, ahead) * SAMPLE_RATE) // SAMPLES_PER_FRAME)
    plan = cfg.sampler.guidance if plan is None else plan
    ref = (-mean / std).reshape(1, -1, 1, 1, 1)
    null = dit.prepare_context(torch.zeros(1, 1, cfg.dit.text_dim))

    read = clip_reader(audio)
    context, made = None, []
    for k in range(math.ceil(frames / n)):
        idle = not speech_frames(audio, k * n, (k + 1) * n + lookahead).any()
        window_plan = plan.without("audio") if idle else plan
        sigmas = flow_sigmas(cfg.sampler.idle_steps if idle else cfg.sampler.steps, cfg.sampler.shift,
                             cfg.sampler.sigmas)
        c = 0 if context is None else context.shape[2]
        tokens = window_audio(encoder, read, k * n - c, c + n, 1, behind, ahead, False)[0][None]
        if idle:
            tokens = torch.zeros_like(tokens)
        known = ref if context is None else torch.cat([ref, context], 2)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k)
        noise = torch.randn((1, ref.shape[1], n, 1, 1), generator=gen) * cfg.sampler.noise_scale
        new = sample(denoiser(dit, WindowInput.clean_tokens(known, n), tokens, lambda row: null), noise,
                     sigmas, window_plan)[:, :, -n:]
        both = new if context is None else torch.cat([context, new], 2)
        context = both[:, :, -keep:] if keep else None
        made.append(new)
    latents = torch.cat(made, 2)[0, :, :, 0, 0].T[:frames]
    return (latents * std + mean).numpy()
