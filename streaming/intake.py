"""Incoming call audio -> 16 kHz mono float32 on the call's timeline.

The first frame lands where the clock says it arrived; later frames land by their timestamps.
Gaps become silence and audio arriving after its place was already filled with silence is cut,
so the timeline never shifts against the clock.
"""

from __future__ import annotations

import av
import numpy as np

from .clock import MediaClock

# Timestamp jitter tolerated before a gap or an overlap is acted on.
TOLERANCE_S = 0.010


class AudioIntake:
    """Turns the caller's decoded audio frames (any rate and layout) into the call's timeline audio.

    `push(frame)` returns the samples to append for one frame, `fill_silence()` the silence owed
    when the input is starved; `end` is the timeline's length so far and `input_offset` where the
    caller's first sample landed. Used from the event loop only.
    """

    def __init__(self, clock: MediaClock):
        self.clock = clock
        self.rate = clock.sample_rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self._origin: tuple[float, float] | None = None  # (frame time (s), timeline position (s))
        self._in_end: float | None = None  # where the input so far ends on the timeline (s)
        self.end = 0  # samples emitted so far (the timeline's end)
        self._drop = 0  # output samples still to cut (their place was filled with silence)
        self.gaps = 0
        self.input_offset: int | None = None  # timeline position of the first input sample

    def _frame_time(self, frame: av.AudioFrame) -> float | None:
        if frame.pts is None or frame.time_base is None:
            return None
        return float(frame.pts * frame.time_base)

    def push(self, frame: av.AudioFrame, now: float | None = None) -> np.ndarray:
        """Samples to append to the timeline for this frame (silence first where there was a gap)."""
        if frame.sample_rate <= 0 or frame.samples <= 0:
            return np.zeros(0, np.float32)
        at = self._frame_time(frame)
        if self._origin is None:
            position = max(self.clock.media_now(now), self.end / self.rate)
            self._origin = (at if at is not None else 0.0, position)
            self._in_end = position
            self.input_offset = int(round(position * self.rate))
        pieces = []
        if self._in_end == self._origin[1] and self.input_offset > self.end:
            # The first frame: the call was silent until it came.
            pieces.append(np.zeros(self.input_offset - self.end, np.float32))
        expected = self._in_end if at is None else self._origin[1] + (at - self._origin[0])
        drift = expected - self._in_end
        if drift > TOLERANCE_S:  # missing input: silence keeps the timeline in place
            self.gaps += 1
            pieces.append(np.zeros(int(round(drift * self.rate)), np.float32))
            self._in_end = expected
        elif drift < -TOLERANCE_S:  # overlaps what is already there
            self._drop += int(round(-drift * self.rate))
        self._in_end = max(self._in_end, expected + frame.samples / frame.sample_rate)
        for out in self._resampler.resample(frame):
            pieces.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        pcm = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        pcm = self._cut(pcm)
        self.end += len(pcm)
        return pcm

    def fill_silence(self, now: float | None = None, margin_s: float = 0.15) -> np.ndarray:
        """When input is starved for longer than margin_s, silence up to now - margin_s."""
        target = int((self.clock.media_now(now) - margin_s) * self.rate)
        if target <= self.end:
            return np.zeros(0, np.float32)
        silence = np.zeros(target - self.end, np.float32)
        self.end = target
        if self._in_end is not None:
            # Input arriving later for this stretch overlaps the silence and is cut.
            self._in_end = max(self._in_end, target / self.rate)
        return silence

    def _cut(self, pcm: np.ndarray) -> np.ndarray:
        if self._drop and len(pcm):
            n = min(self._drop, len(pcm))
            self._drop -= n
            pcm = pcm[n:]
        return pcm
