"""Hand-over buffers: generated frames (worker thread -> video track) and the caller's voice
(intake -> delayed audio track)."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class FrameBuffer:
    """Bounded, thread-safe, ordered by frame index. The producer never blocks: when full, the oldest
    frame goes (and is counted). The consumer takes the frame due now and drops older ones."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._frames: deque = deque()
        self._lock = threading.Lock()
        self.capacity = capacity
        self.overflowed = 0  # frames pushed out because the consumer did not keep up
        self.late = 0  # frames that arrived after their due time and were skipped

    def put(self, frames) -> None:
        with self._lock:
            for frame in frames:
                if len(self._frames) >= self.capacity:
                    self._frames.popleft()
                    self.overflowed += 1
                self._frames.append(frame)

    def take(self, index: int):
        """The frame with this index if it is here (older ones are dropped), else None."""
        with self._lock:
            while self._frames and self._frames[0].index < index:
                self._frames.popleft()
                self.late += 1
            if self._frames and self._frames[0].index == index:
                return self._frames.popleft()
            return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


class VoiceBuffer:
    """The call's 16 kHz mono timeline of the caller's voice, kept until it has been sent.
    Used from the event loop only."""

    def __init__(self, max_seconds: float, sample_rate: int = 16000):
        self.sample_rate = sample_rate
        self.start = 0  # timeline position of self._data[0]
        self._data = np.zeros(0, np.float32)
        self._max = int(max_seconds * sample_rate)

    @property
    def end(self) -> int:
        return self.start + len(self._data)

    def append(self, pcm: np.ndarray) -> None:
        self._data = np.concatenate([self._data, pcm.astype(np.float32, copy=False)])
        if len(self._data) > self._max:  # nobody is reading: keep the newest only
            cut = len(self._data) - self._max
            self._data = self._data[cut:]
            self.start += cut

    def read(self, position: int, count: int) -> np.ndarray:
        """Samples [position, position + count); silence where there is nothing (yet, or any more)."""
        out = np.zeros(count, np.float32)
        lo, hi = max(position, self.start), min(position + count, self.end)
        if hi > lo:
            out[lo - position:hi - position] = self._data[lo - self.start:hi - self.start]
        return out

    def discard_before(self, position: int) -> None:
        if position > self.start:
            cut = min(position - self.start, len(self._data))
            self._data = self._data[cut:]
            self.start += cut

    def mute_from(self, position: int) -> None:
        lo = max(position - self.start, 0)
        if lo < len(self._data):
            self._data[lo:] = 0.0
