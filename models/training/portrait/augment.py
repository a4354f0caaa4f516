"""Audio augmentation for real microphones: speed/pitch, level, EQ, reverberation, noise, clipping.

Training voices are clean synthetic speech; a caller's microphone adds room echo, hiss or hum, a
telephone-like band, any level and sometimes clipping. Every example gets a random chain of these
(some stay clean). Speed/pitch resamples the audio, so the motion is resampled with it (`stretch`).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from models.audio_features import SAMPLE_RATE


def stretch(audio: np.ndarray, motion: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Play `audio` `factor` times faster (pitch up by the same ratio); motion (T, C) follows."""
    up, down = 100, int(round(100 * factor))
    fast = resample_poly(audio, up, down).astype(np.float32)
    frames = max(1, int(round(len(motion) / factor)))
    src = np.linspace(0, len(motion) - 1, frames)
    moved = np.stack([np.interp(src, np.arange(len(motion)), motion[:, c]) for c in range(motion.shape[1])], 1)
    return fast, moved


def _rms(x: np.ndarray) -> float:
    loud = x[np.abs(x) > 1e-4]
    return float(np.sqrt(np.mean(loud ** 2))) if loud.size else 1e-4


def _room(rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: direct path, then exponentially decaying noise (RT60 0.1-0.7 s)."""
    rt60 = rng.uniform(0.1, 0.7)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.5)
    tail[: int(0.003 * SAMPLE_RATE)] = 0
    tail[0] = 1.0
    return tail / np.sqrt(np.sum(tail ** 2))


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    white = rng.standard_normal(n)
    kind = rng.integers(3)
    if kind == 1:   # pink-ish: hiss with less top
        white = sosfilt(butter(1, 1000, "low", fs=SAMPLE_RATE, output="sos"), white)
    elif kind == 2:   # hum and rumble
        t = np.arange(n) / SAMPLE_RATE
        f = rng.choice([50.0, 60.0])
        white = 0.3 * white + sum(np.sin(2 * np.pi * f * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
    return white / (np.sqrt(np.mean(white ** 2)) + 1e-9)


def augment(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random microphone chain over clean 16 kHz speech; the length is kept."""
    x = audio.astype(np.float64)
    speech_rms = _rms(x)
    if rng.random() < 0.4:
        x = fftconvolve(x, _room(rng))[: len(x)]
    if rng.random() < 0.5:   # band limits: phone, laptop or headset microphones
        low, high = rng.uniform(60, 350), rng.uniform(3200, 7800)
        x = sosfilt(butter(2, [low, high], "band", fs=SAMPLE_RATE, output="sos"), x)
    if rng.random() < 0.4:   # a tilt: boost or cut the highs
        high = sosfilt(butter(1, rng.uniform(1500, 4000), "high", fs=SAMPLE_RATE, output="sos"), x)
        x = x + rng.uniform(-0.6, 1.0) * high
    x *= speech_rms / _rms(x)
    if rng.random() < 0.6:
        snr_db = rng.uniform(5, 35)
        x = x + _noise(rng, len(x)) * speech_rms * 10 ** (-snr_db / 20)
    x *= 10 ** (rng.uniform(-35, -8) / 20) / speech_rms   # any level, quiet to loud
    if rng.random() < 0.1:
        x = np.clip(x * rng.uniform(2, 6), -0.5, 0.5)
    return np.clip(x, -1, 1).astype(np.float32)
