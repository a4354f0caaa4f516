"""Audio intake: any rate, mono or stereo, int16 or float -> 16 kHz mono float32 on a timeline."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np

from models.audio_features import SAMPLE_RATE, AudioFileError, decode_audio_file

from .errors import AudioError

log = logging.getLogger(__name__)


def to_float_channels(pcm: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) int16/int32/float -> (channels, n) float32 in [-1, 1]; NaN/inf -> 0."""
    pcm = np.asarray(pcm)
    if pcm.ndim == 1:
        pcm = pcm[:, None]
    if pcm.ndim != 2 or pcm.shape[1] > 8:
        raise AudioError(f"audio must be (samples,) or (samples, channels<=8), got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        out = pcm.astype(np.float32) / 32768.0
    elif pcm.dtype == np.int32:
        out = pcm.astype(np.float32) / 2147483648.0
    elif pcm.dtype in (np.float32, np.float64):
        out = pcm.astype(np.float32)
        bad = ~np.isfinite(out)
        if bad.any():
            log.warning("audio has %d NaN/inf samples; they are replaced by silence", int(bad.sum()))
            out[bad] = 0.0
        np.clip(out, -1.0, 1.0, out=out)
    else:
        raise AudioError(f"unsupported sample format {pcm.dtype}; use int16, int32 or float32")
    return np.ascontiguousarray(out.T)


class Resampler:
    """Streaming resampler to mono at `rate`; keeps filter state across pushes (av / libswresample)."""

    def __init__(self, rate: int):
        self.rate = rate
        self._key = None
        self._resampler = None
        self._pts = 0

    def push(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        if not isinstance(sample_rate, (int, np.integer)) or not 4000 <= sample_rate <= 384000:
            raise AudioError(f"sample rate must be an integer between 4000 and 384000 Hz, got {sample_rate!r}")
        channels = to_float_channels(pcm)
        if channels.shape[0] == 1 and sample_rate == self.rate and self._resampler is None:
            return channels[0]
        if channels.shape[1] == 0:
            return np.zeros(0, np.float32)
        key = (sample_rate, channels.shape[0])
        out = []
        if key != self._key:
            out.append(self.flush())
            self._key = key
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        frame = av.AudioFrame.from_ndarray(channels, format="fltp", layout="stereo" if channels.shape[0] == 2 else
                                           ("mono" if channels.shape[0] == 1 else f"{channels.shape[0]}c"))
        frame.sample_rate = sample_rate
        frame.pts = self._pts
        self._pts += channels.shape[1]
        out += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        self._resampler, self._key = None, None
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class AudioTimeline:
    """16 kHz mono audio on a timeline: sample 0 is media time 0. The engine's input and the call's
    delayed voice are both one of these.

    Reading outside what exists gives silence (before 0, or after the end). Old samples can be
    discarded so a stream of hours keeps a bounded buffer: an unbounded timeline (the engine's) treats
    a read of discarded samples as a bug and raises; one with `max_seconds` keeps only its newest
    `max_seconds` (nobody may be reading it yet) and reads what it let go as silence.
    """

    def __init__(self, max_seconds: float | None = None, sample_rate: int = SAMPLE_RATE):
        self._chunks: list[np.ndarray] = []
        self._buffer = np.zeros(0, np.float32)
        self._max = None if max_seconds is None else int(max_seconds * sample_rate)
        self.start = 0  # index of the first sample still held
        self.end = 0  # one past the last sample pushed

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._chunks.append(samples.astype(np.float32, copy=False))
            self.end += len(samples)
            if self._max is not None and self.end - self.start > self._max:
                self.discard_before(self.end - self._max)

    def _consolidate(self) -> None:
        if self._chunks:
            self._buffer = np.concatenate([self._buffer, *self._chunks])
            self._chunks = []

    def read(self, s0: int, s1: int) -> np.ndarray:
        """Samples [s0, s1)."""
        self._consolidate()
        if self._max is None and s0 < self.start and s1 > 0 and self.start > 0:
            raise AudioError(f"samples before {self.start} were discarded (asked for {s0})")
        out = np.zeros(s1 - s0, np.float32)
        a, b = max(s0, self.start), min(s1, self.end)
        if b > a:
            out[a - s0:b - s0] = self._buffer[a - self.start:b - self.start]
        return out

    def silence_from(self, s0: int) -> None:
        """Replace every held sample from s0 on with silence (interrupt)."""
        self._consolidate()
        self._buffer[max(s0 - self.start, 0):] = 0.0

    def discard_before(self, s0: int) -> None:
        self._consolidate()
        cut = min(max(s0 - self.start, 0), len(self._buffer))
        if cut:
            self._buffer = self._buffer[cut:].copy()
            self.start += cut


def load_audio_file(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode any audio file av can read to mono float32 at `rate`."""
    try:
        return decode_audio_file(path, rate)
    except AudioFileError as exc:
        raise AudioError(str(exc)) from exc
