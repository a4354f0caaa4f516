"""What moves in a procedural talking face: the mouth (from the audio), the head and the eyelids.

The mouth follows the audio through a fixed causal mapping with 80 ms (2 frames) of look-ahead, so a
model given the same audio span can learn it exactly. Head motion and blinks are random (only their
amount depends on speech), as they are in real talking heads.
"""

from __future__ import annotations

import math

import numpy as np

from ...audio_features import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME

# Loudness is read on an absolute scale: a streaming model cannot know a clip's maximum.
SILENCE_DB = -45.0
LOUD_DB = -15.0

# Frame i's spectral window is 80 ms centred on the frame: samples [640 i - 320, 640 i + 960);
# its loudness is read on the frame's own 40 ms, so the mouth can close between syllables.
_HALF_FRAME = SAMPLES_PER_FRAME // 2
_WINDOW = 2 * SAMPLES_PER_FRAME
_LOW_BAND = (250.0, 900.0)
_MID_BAND = (1000.0, 3200.0)
# log10(mid / low) band energy of typical voiced speech; above it the lips spread, below they round.
_NEUTRAL_SPECTRAL_TILT = -0.6
_MAX_OPENING_STEP, _MAX_CLOSING_STEP = 0.5, 0.35  # per frame: a jaw cannot jump


def frame_windows(pcm: np.ndarray, fps: int = FPS) -> np.ndarray:
    """(T, 1280) analysis windows, T = ceil(len / 640); zero padded at both ends."""
    spf = SAMPLE_RATE // fps
    half, window = spf // 2, 2 * spf
    n_frames = max(1, math.ceil(len(pcm) / spf))
    padded = np.zeros(n_frames * spf + window, np.float32)
    padded[half:half + len(pcm)] = pcm
    return np.lib.stride_tricks.sliding_window_view(padded, window)[::spf][:n_frames]


def loudness_openness(rms: np.ndarray) -> np.ndarray:
    """RMS -> [0, 1] on the absolute speech scale SILENCE_DB..LOUD_DB (silence and noise give 0)."""
    db = 20.0 * np.log10(np.maximum(rms, 1e-9))
    return np.clip((db - SILENCE_DB) / (LOUD_DB - SILENCE_DB), 0.0, 1.0)


def _spread(windows: np.ndarray, fps: int) -> np.ndarray:
    """Lip spreading (+1, 'ee') vs rounding (-1, 'oo') from the balance of low and mid band energy."""
    spectrum = np.abs(np.fft.rfft(windows * np.hanning(windows.shape[1]), axis=1)) ** 2
    freqs = np.fft.rfftfreq(windows.shape[1], 1.0 / SAMPLE_RATE)
    low = spectrum[:, (freqs >= _LOW_BAND[0]) & (freqs < _LOW_BAND[1])].sum(axis=1)
    mid = spectrum[:, (freqs >= _MID_BAND[0]) & (freqs < _MID_BAND[1])].sum(axis=1)
    tilt = np.log10((mid + 1e-10) / (low + 1e-10))
    return np.tanh(1.6 * (tilt - _NEUTRAL_SPECTRAL_TILT))


def _smooth_next(x: np.ndarray) -> np.ndarray:
    """[0.2, 0.6, 0.2] over frames i-1, i, i+1 (one frame of look-ahead)."""
    padded = np.concatenate([x[:1], x, x[-1:]])
    return 0.2 * padded[:-2] + 0.6 * padded[1:-1] + 0.2 * padded[2:]


def _rate_limit(x: np.ndarray, up: float, down: float, start: float = 0.0) -> np.ndarray:
    out = np.empty_like(x)
    prev = start
    for i, v in enumerate(x):
        prev = min(prev + up, max(prev - down, v))
        out[i] = prev
    return out


def mouth_track(pcm16k: np.ndarray, fps: int = FPS) -> np.ndarray:
    """(T, 2) per video frame: openness in [0, 1], spread in [-1, 1] (negative = rounded lips).

    Frame i depends only on samples before 640 (i + 2) + 320, i.e. at most 80 ms after its end.
    """
    windows = frame_windows(np.asarray(pcm16k, np.float32), fps)
    own = windows[:, _HALF_FRAME:_HALF_FRAME + SAMPLES_PER_FRAME].astype(np.float64)
    openness = loudness_openness(np.sqrt(np.mean(own ** 2, axis=1))) ** 1.3
    spread = _spread(windows, fps) * np.clip(openness * 3.0, 0.0, 1.0)  # silent lips are neutral
    openness = _rate_limit(_smooth_next(openness), _MAX_OPENING_STEP, _MAX_CLOSING_STEP)
    spread = np.clip(_rate_limit(_smooth_next(spread), 0.5, 0.5), -1.0, 1.0)
    return np.stack([openness, spread], axis=1).astype(np.float32)


def speech_activity(openness: np.ndarray, fps: int = FPS, seconds: float = 0.8) -> np.ndarray:
    """Slow causal average of mouth openness: how much the person is talking lately (0..1)."""
    alpha = 1.0 / (seconds * fps)
    out = np.empty(len(openness), np.float32)
    level = 0.0
    for i, v in enumerate(openness):
        level += alpha * (v - level)
        out[i] = level
    return np.clip(out * 2.0, 0.0, 1.0)


def _wander(rng: np.random.Generator, t: np.ndarray, amplitude: float, f_lo: float, f_hi: float) -> np.ndarray:
    """Smooth random motion: three sinusoids with random frequencies and phases, peak about `amplitude`."""
    freqs = rng.uniform(f_lo, f_hi, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.uniform(0.5, 1.0, 3)
    weights /= weights.sum()
    return amplitude * (weights[None] * np.sin(2 * np.pi * freqs[None] * t[:, None] + phases[None])).sum(axis=1)


def head_motion(rng: np.random.Generator, activity: np.ndarray, fps: int = FPS) -> dict[str, np.ndarray]:
    """Per-frame head pose offsets: dx, dy (fractions of the frame), roll (radians), yaw and nod
    (feature shifts in face units). Talking makes the motion up to 2.5x larger."""
    t = np.arange(len(activity)) / fps
    gain = 1.0 + 1.5 * activity
    calm = rng.uniform(0.6, 1.2)
    return {
        "dx": gain * _wander(rng, t, 0.014 * calm, 0.05, 0.4),
        "dy": gain * _wander(rng, t, 0.010 * calm, 0.05, 0.4),
        "roll": gain * _wander(rng, t, math.radians(2.5) * calm, 0.05, 0.5),
        "yaw": gain * _wander(rng, t, 0.05 * calm, 0.05, 0.5),
        "nod": gain * _wander(rng, t, 0.02 * calm, 0.2, 1.2) + 0.03 * activity,
    }


def blinks(rng: np.random.Generator, n_frames: int, fps: int = FPS) -> np.ndarray:
    """Eyelid closure per frame in [0, 1]: a blink every 2-6 s lasting 150-250 ms."""
    closure = np.zeros(n_frames, np.float32)
    t_centres = (np.arange(n_frames) + 0.5) / fps
    start = rng.uniform(0.3, 3.0)
    while start < n_frames / fps:
        duration = rng.uniform(0.15, 0.25)
        phase = (t_centres - start) / duration
        inside = (phase >= 0) & (phase <= 1)
        closure[inside] = np.maximum(closure[inside], np.minimum(1.0, 1.4 * np.sin(np.pi * phase[inside])))
        start += duration + rng.uniform(2.0, 6.0)
    return closure


def gaze(rng: np.random.Generator, n_frames: int, fps: int = FPS) -> np.ndarray:
    """(T, 2) iris offset in units of the iris's free travel, slow drift with occasional glances."""
    t = np.arange(n_frames) / fps
    return np.stack([_wander(rng, t, 0.5, 0.05, 0.3), _wander(rng, t, 0.25, 0.05, 0.3)], axis=1)
