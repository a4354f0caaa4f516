"""Audio encoders: per-video-frame audio tokens at 25 fps with a stated look-ahead.

Every encoder works on 16 kHz mono and emits `tokens_per_frame` tokens per video frame
(640 samples). `token_span(j0, j1)` says which samples tokens [j0, j1) need, so a streaming caller
knows when it may encode them; `encode(samples, j1 - j0)` turns exactly that slice into tokens.
Tokens depend only on their span, so encoding in pieces gives the same tokens as encoding at once.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import av
import numpy as np
import torch

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640


class AudioFileError(ValueError):
    """An audio file that is missing or cannot be decoded."""


def decode_audio_file(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any audio file av can read -> mono float32 at `rate` (libswresample); NaN/inf -> silence."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            out = []
            for frame in container.decode(audio=0):
                out += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        raise AudioFileError(f"{path} is not a readable audio file: {exc}") from exc
    samples = np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
    bad = ~np.isfinite(samples)
    if bad.any():
        log.warning("%s has %d NaN/inf samples; they are replaced by silence", path, int(bad.sum()))
        samples[bad] = 0.0
    return samples


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    bank = np.clip(np.minimum(up, down), 0.0, None)
    return torch.from_numpy(bank.T.astype(np.float32))


class MelEncoder:
    """Log-mel tokens at 50 Hz (2 per video frame); token j is a 40 ms window centred on its 20 ms hop.

    Look-ahead: 10 ms beyond the end of a video frame (half a window past the last hop).
    """

    tokens_per_frame = 2
    hop = SAMPLES_PER_FRAME // 2  # 320
    window = SAMPLES_PER_FRAME  # 640
    n_fft = 1024

    def __init__(self, n_mels: int = 40, f_min: float = 60.0, f_max: float = 7600.0):
        self.feature_dim = n_mels
        self.filters = mel_filterbank(self.n_fft, n_mels, SAMPLE_RATE, f_min, f_max)
        self.hann = torch.hann_window(self.window, periodic=True)
        self.lookahead_samples = (self.window - self.hop) // 2

    def token_span(self, j0: int, j1: int) -> tuple[int, int]:
        left = (self.window - self.hop) // 2
        return j0 * self.hop - left, (j1 - 1) * self.hop + self.window - left

    def encode(self, samples: np.ndarray | torch.Tensor, n_tokens: int) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
        expected = (n_tokens - 1) * self.hop + self.window
        if x.shape[-1] != expected:
            raise ValueError(f"{n_tokens} tokens need {expected} samples, got {x.shape[-1]}")
        frames = x.unfold(-1, self.window, self.hop) * self.hann  # (n_tokens, window)
        # Power normalised by the window, so a full-scale sine peaks near 0.25 whatever the sizes.
        spectrum = (torch.fft.rfft(frames, n=self.n_fft).abs() / self.hann.sum()) ** 2
        mel = spectrum @ self.filters
        # Fixed affine map of log power (no per-clip normalisation: a stream cannot know its max);
        # digital silence maps to -2, loud speech to about +1.5.
        return ((torch.log(mel + 1e-9) + 12.0) / 4.0).clamp(-2.0, 3.0)


def latent_token_window(latent_index: int, frames_per_latent: int, tokens_per_frame: int,
                        behind: int, ahead: int) -> tuple[int, int]:
    """Token range [j0, j1) latent frame `latent_index` attends to: its own frames' tokens,
    `behind` tokens before and `ahead` tokens after (EchoMimicV3 preview: 5 before, 4 after)."""
    first = latent_index * frames_per_latent * tokens_per_frame
    return first - behind, first + frames_per_latent * tokens_per_frame + ahead


def lookahead_seconds(encoder, ahead_tokens: int) -> float:
    """Audio needed past a window's last frame before the window can run."""
    per_token = SAMPLES_PER_FRAME / encoder.tokens_per_frame
    return (math.ceil(ahead_tokens * per_token) + encoder.lookahead_samples) / SAMPLE_RATE


def latent_audio_tokens(encoder, read, first_latent: int, count: int, frames_per_latent: int,
                        behind: int, ahead: int) -> torch.Tensor:
    """(count, K, D) tokens for latent frames [first, first + count); read(s0, s1) gives samples,
    silence outside the audio. Used the same way by the session and by training."""
    j0 = latent_token_window(first_latent, frames_per_latent, encoder.tokens_per_frame, behind, ahead)[0]
    j1 = latent_token_window(first_latent + count - 1, frames_per_latent, encoder.tokens_per_frame, behind, ahead)[1]
    s0, s1 = encoder.token_span(j0, j1)
    tokens = encoder.encode(read(s0, s1), j1 - j0)
    per_latent = []
    for i in range(first_latent, first_latent + count):
        a, b = latent_token_window(i, frames_per_latent, encoder.tokens_per_frame, behind, ahead)
        per_latent.append(tokens[a - j0:b - j0])
    return torch.stack(per_latent)
