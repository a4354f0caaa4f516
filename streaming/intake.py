"""Incoming call audio -> 16 kHz mono float32 on the call's timeline.

One media clock places everything: the first frame lands where the clock says it arrived, later
frames land by their timestamps, and a starved input is filled with silence up to (nearly) now.
Each frame's samples go where its timestamp puts them: a gap before it becomes silence, and the part
of it whose place was already filled (by silence, or by an earlier frame) is cut from that frame
alone. So the timeline never shifts against the clock, and however the input comes (late, in a burst
after a pause, repeated) the intake never owes more than the frame in hand.
"""

from __future__ import annotations

import av
import numpy as np

from .clock import MediaClock

# A frame this much later than where the input so far ends is a gap (less is the resampler's
# pending tail). An overlap is always cut: audio timestamps count samples, they do not jitter.
TOLERANCE_S = 0.010


class AudioIntake:
    """Turns the caller's decoded audio frames (any rate and layout) into the call's timeline audio.

    `push(frame)` returns the samples to append for one frame, `fill_silence()` the silence due when
    the input is starved; `end` is the timeline's length so far and `input_offset` where the caller's
    first sample landed. Used from the event loop only.
    """

    def __init__(self, clock: MediaClock):
        self.clock = clock
        self.rate = clock.sample_rate
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate)
        self._origin: tuple[float, int] | None = None  # (a frame's time (s), its timeline position (samples))
        self._next: int | None = None  # where the next frame lands if the input is contiguous (samples)
        self._tolerance = int(TOLERANCE_S * self.rate)
        self.end = 0  # samples emitted so far (the timeline's end)
        self.gaps = 0  # stretches of missing input filled with silence
        self.cut = 0  # input samples dropped because their place was already filled
        self.dropped = 0  # input frames dropped unread, a backlog the reader could not keep up with
        self.input_offset: int | None = None  # timeline position of the first input sample

    def _position(self, frame: av.AudioFrame) -> int:
        """Where this frame's first sample belongs on the timeline."""
        if frame.pts is None or frame.time_base is None:
            return self._next
        at = float(frame.pts * frame.time_base)
        return self._origin[1] + int(round((at - self._origin[0]) * self.rate))

    def push(self, frame: av.AudioFrame, now: float | None = None) -> np.ndarray:
        """Samples to append to the timeline for this frame (silence first where there was a gap)."""
        if frame.sample_rate <= 0 or frame.samples <= 0:
            return np.zeros(0, np.float32)
        first = self._origin is None
        if first:
            self.input_offset = max(int(round(self.clock.media_now(now) * self.rate)), self.end)
            at = 0.0 if frame.pts is None or frame.time_base is None else float(frame.pts * frame.time_base)
            self._origin = (at, self.input_offset)
            self._next = self.input_offset
        position = self._position(frame)
        self._next = position + int(round(frame.samples * self.rate / frame.sample_rate))
        pcm = np.concatenate([np.zeros(0, np.float32)] + [
            out.to_ndarray().reshape(-1).astype(np.float32, copy=False) for out in self._resampler.resample(frame)])
        ahead = position - self.end
        if first or ahead > self._tolerance:  # silence until the caller's first sample, or missing input
            self.gaps += not first
            pcm = np.concatenate([np.zeros(ahead, np.float32), pcm])
        elif ahead < 0:  # its place is (partly) filled already: cut from this frame only
            n = min(-ahead, len(pcm))
            self.cut += n
            pcm = pcm[n:]
        self.end += len(pcm)
        return pcm

    def fill_silence(self, now: float | None = None, margin_s: float = 0.15) -> np.ndarray:
        """When input is starved for longer than margin_s, silence up to now - margin_s."""
        target = int((self.clock.media_now(now) - margin_s) * self.rate)
        if target <= self.end:
            return np.zeros(0, np.float32)
        silence = np.zeros(target - self.end, np.float32)
        self.end = target
        return silence
