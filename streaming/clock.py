"""One media clock per call: every outgoing frame and voice sample is due at a fixed delay after
the moment its audio came in, so video and voice leave together and stay in sync."""

from __future__ import annotations

import time


# A frame not made by its due time is waited for this much longer before the one before is shown
# again: sent a little late, it still plays at its own timestamp (the receiver's jitter buffer takes
# it), where a repeat is a visible stutter. Half a frame at 25 fps: the next frame's time is untouched.
FRAME_GRACE_S = 0.020


class MediaClock:
    """Media time 0 is `t0` (wall, time.monotonic()); media time m is played out at t0 + delay + m."""

    def __init__(self, delay_s: float, fps: int, sample_rate: int):
        if delay_s < 0:
            raise ValueError("the output delay cannot be negative")
        self.delay_s = float(delay_s)
        self.fps = int(fps)
        self.sample_rate = int(sample_rate)
        self.t0: float | None = None

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def start(self, now: float | None = None) -> float:
        """Start the clock once (the first caller wins); returns t0."""
        if self.t0 is None:
            self.t0 = time.monotonic() if now is None else now
        return self.t0

    def media_now(self, now: float | None = None) -> float:
        """Media time (s) of the input arriving now."""
        return (time.monotonic() if now is None else now) - self.start()

    def frame_due(self, index: int) -> float:
        return self.start() + self.delay_s + index / self.fps

    def frame_deadline(self, index: int) -> float:
        """The last moment frame `index` is taken: after it, the one before is shown again."""
        return self.frame_due(index) + FRAME_GRACE_S

    def sample_due(self, sample: int) -> float:
        return self.start() + self.delay_s + sample / self.sample_rate

    def frame_playing(self, now: float | None = None) -> int:
        """Index of the frame due now (may be negative before the first one)."""
        now = time.monotonic() if now is None else now
        return int((now - self.start() - self.delay_s) * self.fps // 1)
