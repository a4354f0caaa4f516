"""Generation off the event loop: one thread drives one engine Session.

Audio and commands come in through a queue; frames go out through a bounded FrameBuffer. Each
window is planned against its due time on the media clock: when it would be late the worker
degrades (fewer sampling steps; far behind, it drops pending speech and catches up on the idle
path), so latency never grows without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import replace

import numpy as np
import torch

from .buffers import FrameBuffer
from .clock import MediaClock

log = logging.getLogger(__name__)

SAMPLES_PER_FRAME = 640
REPLAY_S = 4.0  # recent audio kept to replay into a new session when the avatar changes


class WorkerStats:
    """Counters the worker updates and the call reads (under the worker's lock)."""

    def __init__(self):
        self.windows = 0
        self.idle_windows = 0
        self.fewer_steps = 0  # windows run with fewer steps to stay on time
        self.catch_ups = 0  # times pending speech was dropped to catch up on the idle path
        self.late_windows = 0  # windows whose first frame was ready after its due time
        self.compute_s = deque(maxlen=50)
        self.slack_s = deque(maxlen=50)  # due time of a window's first frame - time it was ready
        self.recent = deque(maxlen=200)  # per window: index, first frame, started, done, steps, idle

    def snapshot(self) -> dict:
        compute = list(self.compute_s)
        slack = list(self.slack_s)
        return {
            "windows": self.windows, "idle_windows": self.idle_windows, "fewer_steps": self.fewer_steps,
            "catch_ups": self.catch_ups, "late_windows": self.late_windows,
            "compute_last_s": round(compute[-1], 4) if compute else None,
            "compute_p95_s": round(float(np.percentile(compute, 95)), 4) if compute else None,
            "slack_min_s": round(min(slack), 4) if slack else None,
        }


class GenerationWorker:
    def __init__(self, session, clock: MediaClock, frames: FrameBuffer, notify=None, name: str = "generation",
                 threads=None):
        self.session = session
        self.clock = clock
        self.frames = frames
        self.notify = notify or (lambda kind, payload: None)  # called from the worker thread
        self.threads = threads  # () -> torch threads for this worker (per thread under OpenMP), or None
        self.stats = WorkerStats()
        self.lock = threading.Lock()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._est_full: float | None = None
        self._est_fast: float | None = None
        self.full_steps = session.profile.steps
        self.error: BaseException | None = None
        self._base_frame = 0  # the call's frame index of the session's frame 0
        self._pushed = 0  # call timeline samples pushed so far
        self._recent: deque = deque()  # (start sample, pcm, speech), about REPLAY_S of it

    # ---- called from the event loop ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def push_audio(self, pcm: np.ndarray, speech: bool) -> None:
        self._inbox.put(("audio", pcm, speech))

    def interrupt(self) -> None:
        self._inbox.put(("interrupt",))

    def set_prompt(self, text: str | None) -> None:
        self._inbox.put(("prompt", text))

    def swap_session(self, session) -> None:
        """Continue with another session (a new avatar) from the next window on."""
        self._inbox.put(("swap", session))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._inbox.put(("stop",))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._drain(block=self.session.windows_ready() == 0)
                if not self._stop.is_set() and self.session.windows_ready():
                    self._run_window()
        except BaseException as exc:  # reported to the call, which closes; other calls go on
            self.error = exc
            log.exception("thread=%s event=generation_failed", self._thread.name)
            self.notify("failed", {"message": f"{type(exc).__name__}: {exc}"})

    def _drain(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.05) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(item)
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "audio":
            self._push(item[1], item[2])
        elif kind == "interrupt":
            self.session.interrupt()
            self.notify("interrupted", {"sample": (self._base_frame + self.session.frames_done) * SAMPLES_PER_FRAME})
        elif kind == "swap":
            self._swap(item[1])
        elif kind == "prompt":
            self.session.set_prompt(item[1])
        elif kind == "stop":
            self._stop.set()

    def _push(self, pcm: np.ndarray, speech: bool) -> None:
        self.session.push_audio(pcm, self.clock.sample_rate, speech=speech)
        self._recent.append((self._pushed, pcm, speech))
        self._pushed += len(pcm)
        while self._recent and self._pushed - self._recent[0][0] > REPLAY_S * self.clock.sample_rate:
            self._recent.popleft()

    def _swap(self, session) -> None:
        """The new session starts where the old one's next window would have: its frame 0 is that
        call frame, and the audio already given to the old one from there on is replayed into it."""
        switch = self._base_frame + self.session.frames_done
        start = switch * SAMPLES_PER_FRAME
        kept = self._recent[0][0] if self._recent else self._pushed
        if kept > start:  # older than what is kept: silence (not expected: REPLAY_S covers a window)
            session.push_audio(np.zeros(kept - start, np.float32), self.clock.sample_rate, speech=False)
        for at, pcm, speech in self._recent:
            if at + len(pcm) > start:
                session.push_audio(pcm[max(start - at, 0):], self.clock.sample_rate, speech=speech)
        self.session, self._base_frame = session, switch
        self.notify("avatar", {"frame": switch})

    def _plan_steps(self, slack: float) -> int | None:
        """Steps for the next window: the profile's, or fewer when it would finish late."""
        if self._est_full is not None and slack < 1.1 * self._est_full and self.full_steps > 1:
            if self._est_fast is None or self._est_fast < self._est_full:
                return 1
        return None

    def _run_window(self) -> None:
        if self.threads is not None:
            wanted = self.threads()
            if wanted != torch.get_num_threads():
                torch.set_num_threads(wanted)
        s = self.session
        first = self._base_frame + s.window_index * s.frames_per_window
        due = self.clock.frame_due(first)
        slack = due - time.monotonic()
        window_s = s.frames_per_window / self.clock.fps
        if slack < -window_s:  # a whole window behind: drop pending speech, idle until caught up
            s.interrupt()
            with self.lock:
                self.stats.catch_ups += 1
            self.notify("degraded", {"reason": "catch-up", "behind_s": round(-slack, 3)})
        steps = self._plan_steps(slack)
        started = time.monotonic()
        frames = s.step(1, steps)
        done = time.monotonic()
        if self._base_frame:
            frames = [replace(f, index=f.index + self._base_frame) for f in frames]
        self.frames.put(frames)
        info = s.last_window_stats
        compute = done - started
        if info.get("idle"):
            pass
        elif steps is None:
            self._est_full = compute if self._est_full is None else 0.7 * self._est_full + 0.3 * compute
        else:
            self._est_fast = compute if self._est_fast is None else 0.7 * self._est_fast + 0.3 * compute
            # Full steps are not being measured now: let their estimate relax, so they are tried again
            # (one slow outlier must not keep the stream on fewer steps for good).
            if self._est_full is not None:
                self._est_full = max(self._est_fast, 0.9 * self._est_full)
        with self.lock:
            st = self.stats
            st.windows += 1
            st.idle_windows += bool(info.get("idle"))
            st.fewer_steps += steps is not None and not info.get("idle")
            st.compute_s.append(compute)
            st.slack_s.append(due - done)
            st.late_windows += done > due
            st.recent.append({"window": info.get("window"), "first_frame": first, "started": started,
                              "done": done, "steps": info.get("steps"), "idle": bool(info.get("idle"))})
