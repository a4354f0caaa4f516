"""The hand-over of generated frames, worker thread -> video track. (The caller's voice, intake ->
delayed audio track, is kept in an `avatar.audio.AudioTimeline`.)"""

from __future__ import annotations

import threading
from collections import deque


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
