"""Why frames reach the video track late: each frame handed over after its deadline (its due time and
the track's grace, `clock.frame_deadline`) will be shown as a repeat of the one before, so the worker
counts them, per window, under the likeliest cause. The counters travel in the stats
(`engine.late_frames`, `engine.late_causes`), so a soak says where its repeats came from; an INFO line
per late window (shown with `-v`) gives the figures behind each verdict.
"""

from __future__ import annotations

import gc
import threading
import time

CONTENDED = 1.25  # wall time over this many times the window's CPU time: it waited for a core
GC_PAUSE_S = 0.01  # a collection at least this long during a window is counted as its cause

CAUSES = (
    "late_start",  # started too late: a frame was due sooner after the start than the CPU time it took, so
    # no free core could have made it in time (the audio came late, or the window before ran over)
    "gc",  # a garbage collection (any thread's: it holds the GIL) ran during the window
    "full_steps",  # made at the profile's full steps, where one step would have been quicker
    "after_idle",  # the first speech window after idle ones
    "contention",  # one step, but it waited for a core (other calls, the media path, anything else)
    "compute",  # one step and a core of its own: its CPU time alone was too long
)


class GcClock:
    """Seconds the process has spent in garbage collections (all threads), from when it is installed."""

    _lock = threading.Lock()
    _installed = False
    seconds = 0.0
    _began: float | None = None

    @classmethod
    def install(cls) -> None:
        with cls._lock:
            if not cls._installed:
                gc.callbacks.append(cls._callback)
                cls._installed = True

    @classmethod
    def _callback(cls, phase: str, info: dict) -> None:
        if phase == "start":
            cls._began = time.perf_counter()
        elif cls._began is not None:
            cls.seconds += time.perf_counter() - cls._began
            cls._began = None


def late_cause(lateness: "WindowLateness", cpu_s: float, wall_s: float, gc_s: float, full_steps: bool,
               after_idle: bool) -> str:
    """The first of CAUSES that holds for a window that handed over late frames."""
    if lateness.hopeless:
        return "late_start"
    if gc_s >= GC_PAUSE_S:
        return "gc"
    if full_steps:
        return "full_steps"
    if after_idle:
        return "after_idle"
    if wall_s > CONTENDED * cpu_s:
        return "contention"
    return "compute"


class WindowLateness:
    """One window's hand-overs, made on the worker thread: the frames given to the track after their
    deadline, by how much, and whether one of them had its deadline sooner after the window's start
    than the CPU time the window had taken to make it (`hopeless`)."""

    def __init__(self, deadline_of, started: float):
        self._deadline_of = deadline_of  # frame index -> its deadline (time.monotonic())
        self._started = started
        self.frames = 0
        self.worst_s = 0.0
        self.hopeless = False

    def delivered(self, indices, cpu: float) -> None:
        """Frames handed over now; `cpu`: the window's CPU seconds so far (Session.window_cpu_s)."""
        now = time.monotonic()
        for index in indices:
            deadline = self._deadline_of(index)
            if now > deadline:
                self.frames += 1
                self.worst_s = max(self.worst_s, now - deadline)
                self.hopeless |= deadline - self._started < cpu
