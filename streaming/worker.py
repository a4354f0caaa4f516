"""Generation off the event loop: one thread drives one engine Session.

Commands come in through a queue (typed, `streaming/events.py`); frames go out through a bounded
FrameBuffer. Each window is planned against its due time on the media clock by a `StepPlanner`: a
window that would be late runs with fewer steps, and windows that would only be shown late are not
made at all (the stream jumps to the frame due now), so latency never grows without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from models.audio_features import SAMPLES_PER_FRAME

from .buffers import FrameBuffer
from .clock import MediaClock
from .events import (AudioIn, AvatarSwitched, Degraded, Failed, Interrupt, Interrupted, SetPrompt, SpeechMark,
                     Stop, SwapSession, WorkerCommand, WorkerEvent)
from .lateness import CAUSES, GcClock, WindowLateness, late_cause
from .planner import StepPlanner

log = logging.getLogger(__name__)

REPLAY_S = 4.0  # recent audio kept to replay into a new session when the avatar changes
CATCH_UP_LOG_S = 10.0  # at most one catch-up line per call this often (a call that cannot keep up jumps often)


class WorkerStats:
    """Counters the worker updates and the call reads (under the worker's lock)."""

    def __init__(self):
        self.windows = 0
        self.idle_windows = 0
        self.fewer_steps = 0  # windows run with fewer steps to stay on time
        self.catch_ups = 0  # times the stream fell behind and jumped to the frame due now
        self.skipped_frames = 0  # frames passed over by those jumps (never made)
        self.late_windows = 0  # windows whose first frame was ready after its due time
        self.late_frames = 0  # frames handed to the track after their due time (each shown as a repeat)
        self.late_causes = dict.fromkeys(CAUSES, 0)  # those frames by their window's cause (streaming/lateness.py)
        self.cpu_s = 0.0  # CPU seconds the windows have used (in the thread or process that made them)
        self.compute_s = deque(maxlen=50)
        self.slack_s = deque(maxlen=50)  # due time of a window's first frame - time it was ready
        self.recent = deque(maxlen=1000)  # per window: index, first frame, started, done, CPU s, steps, idle

    def snapshot(self) -> dict:
        compute = list(self.compute_s)
        slack = list(self.slack_s)
        return {
            "windows": self.windows, "idle_windows": self.idle_windows, "fewer_steps": self.fewer_steps,
            "catch_ups": self.catch_ups, "skipped_frames": self.skipped_frames, "late_windows": self.late_windows,
            "cpu_s": round(self.cpu_s, 3), "late_frames": self.late_frames, "late_causes": dict(self.late_causes),
            "compute_last_s": round(compute[-1], 4) if compute else None,
            "compute_p95_s": round(float(np.percentile(compute, 95)), 4) if compute else None,
            "slack_min_s": round(min(slack), 4) if slack else None,
        }


class CatchUpLog:
    """The catch-up log line, at most one per CATCH_UP_LOG_S: the first jump is told at once, the
    ones after it are counted and told together (each still reaches the caller as an event)."""

    def __init__(self, thread: str):
        self.thread = thread
        self._told_at = -CATCH_UP_LOG_S
        self._jumps = self._skipped = 0
        self._behind_s = 0.0

    def jumped(self, behind_s: float, skipped: int, resume_frame: int) -> None:
        self._jumps += 1
        self._skipped += skipped
        self._behind_s = max(self._behind_s, behind_s)
        now = time.monotonic()
        if now - self._told_at >= CATCH_UP_LOG_S:
            self._told_at = now
            self.flush(resume_frame)

    def flush(self, resume_frame: int) -> None:
        if self._jumps:
            log.warning("thread=%s event=catch_up catch_ups=%d skipped_frames=%d max_behind_s=%.3f resume_frame=%d",
                        self.thread, self._jumps, self._skipped, self._behind_s, resume_frame)
        self._jumps = self._skipped = 0
        self._behind_s = 0.0


class GenerationWorker:
    """One thread that drives one engine session for a call and hands its frames to the video track.

    The event loop calls `push_audio`, `mark_speech`, `interrupt`, `set_prompt`, `swap_session` and `stop`; each
    puts one command on the inbox, which the thread drains between windows. Results come back through
    `notify(event)`, called on the worker thread with one of `streaming.events.WorkerEvent`.

    The interrupt's path: the caller's `{"type": "interrupt"}` -> `Call.interrupt` -> `Interrupt` on
    this inbox -> `Session.interrupt` (speech without frames becomes silence, so the next windows
    idle) -> `Interrupted(sample, dropped_speech)` -> `Call` mutes the delayed voice from that sample
    and sends `{"type": "interrupted", "t", "input_t", "cut"}`, t being the call time of the next
    window's first frame.

    `stop` (a `Stop` command) is the one way to end the thread; an exception in the session ends it
    too, reported as `Failed` (other calls go on).
    """

    def __init__(self, session, clock: MediaClock, frames: FrameBuffer,
                 notify: Callable[[WorkerEvent], None] | None = None, name: str = "generation",
                 threads: Callable[[], int] | None = None, cores: Callable[[], float] | None = None):
        self.session = session
        self.clock = clock
        self.frames = frames
        self.notify = notify or (lambda event: None)
        self.threads = threads  # torch threads for this worker, asked before each window (per thread under OpenMP)
        self.cores = cores  # the cores this call may use (full steps only within them), asked likewise
        self.stats = WorkerStats()
        self.lock = threading.Lock()
        self.planner = StepPlanner(session.profile.steps, session.frames_per_window / clock.fps)
        self.error: BaseException | None = None
        self._inbox: queue.SimpleQueue[WorkerCommand] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._catch_up_log = CatchUpLog(name)
        self._base_frame = 0  # the call's frame index of the session's frame 0
        self._next_frame = 0  # the call's frame index of the next window's first frame
        self._pushed = 0  # call timeline samples pushed so far
        self._recent: deque = deque()  # (start sample, pcm), about REPLAY_S of it
        self._marks: deque = deque()  # (start, end, speech) call samples, as far back as _recent
        self._lateness: WindowLateness | None = None  # the window being made
        self._last_idle = True  # whether the last window made was idle
        self._threads: int | None = None  # the session's torch threads, as last set

    # ---- called from the event loop ---------------------------------------------------------
    def start(self) -> None:
        GcClock.install()
        self._thread.start()

    def push_audio(self, pcm: np.ndarray, speech: bool | None) -> None:
        """Timeline audio, marked speech or not, or (None) to be marked later by `mark_speech`."""
        self._inbox.put(AudioIn(pcm, speech))

    def mark_speech(self, start: int, end: int, speech: bool) -> None:
        """The VAD's verdict on call samples [start, end), pushed before (the audio does not wait for it)."""
        self._inbox.put(SpeechMark(start, end, speech))

    def interrupt(self) -> None:
        self._inbox.put(Interrupt())

    def set_prompt(self, text: str | None) -> None:
        self._inbox.put(SetPrompt(text))

    def swap_session(self, session) -> None:
        """Continue with another session (a new avatar) from the next window on."""
        self._inbox.put(SwapSession(session))

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread, then the session (a session still stuck in a window after `timeout` is
        closed under it: a RemoteSession's process ends, and the thread with it)."""
        self._inbox.put(Stop())
        if threading.current_thread() is self._thread:
            return
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.session.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._drain(block=self.session.windows_ready() == 0):
                if self.session.windows_ready():
                    self._run_window()
            self._catch_up_log.flush(self._next_frame)
        except BaseException as exc:  # reported to the call, which closes; other calls go on
            self.error = exc
            log.exception("thread=%s event=generation_failed", self._thread.name)
            self.notify(Failed(f"{type(exc).__name__}: {exc}"))

    def _drain(self, block: bool) -> bool:
        """Handle the commands waiting (the first one waited for when `block`); False on Stop."""
        try:
            command = self._inbox.get() if block else self._inbox.get_nowait()
        except queue.Empty:
            return True
        while True:
            if not self._handle(command):
                return False
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                return True

    def _handle(self, command: WorkerCommand) -> bool:
        match command:
            case AudioIn(pcm, speech):
                self._push(pcm, speech)
            case SpeechMark(start, end, speech):
                self._mark(start, end, speech)
            case Interrupt():
                sample = self.session.interrupt() + self._base_frame * SAMPLES_PER_FRAME
                dropped = any(speech and end > sample for _, end, speech in self._marks)
                self.notify(Interrupted(sample, dropped))
            case SwapSession(session):
                self._swap(session)
            case SetPrompt(text):
                self.session.set_prompt(text)
            case Stop():
                return False
        return True

    def _push(self, pcm: np.ndarray, speech: bool | None) -> None:
        self.session.push_audio(pcm, self.clock.sample_rate)
        self._recent.append((self._pushed, pcm))
        if speech is not None:
            self._mark(self._pushed, self._pushed + len(pcm), speech)
        self._pushed += len(pcm)
        while self._recent and self._pushed - self._recent[0][0] > REPLAY_S * self.clock.sample_rate:
            self._recent.popleft()
        while self._marks and self._recent and self._marks[0][1] <= self._recent[0][0]:
            self._marks.popleft()

    def _mark(self, start: int, end: int, speech: bool) -> None:
        self._marks.append((start, end, speech))
        base = self._base_frame * SAMPLES_PER_FRAME
        if end > base:
            self.session.mark_speech(max(start - base, 0), end - base, speech)

    def _swap(self, session) -> None:
        """The new session starts where the old one's next window would have: its frame 0 is that
        call frame, and the audio already given to the old one from there on is replayed into it."""
        switch = self._next_frame
        start = switch * SAMPLES_PER_FRAME
        kept = self._recent[0][0] if self._recent else self._pushed
        if kept > start:  # older than what is kept: silence (not expected: REPLAY_S covers a window)
            session.push_audio(np.zeros(kept - start, np.float32), self.clock.sample_rate)
            session.mark_speech(0, kept - start, False)
        for at, pcm in self._recent:
            if at + len(pcm) > start:
                session.push_audio(pcm[max(start - at, 0):], self.clock.sample_rate)
        for s0, s1, speech in self._marks:
            if s1 > start:
                session.mark_speech(max(s0 - start, 0), s1 - start, speech)
        old, self.session, self._base_frame, self._threads = self.session, session, switch, None
        old.close()
        self.notify(AvatarSwitched(switch))

    def _jump(self, windows: int, behind_s: float) -> None:
        """Pass over windows whose frames could only be shown late: the stream goes on at the frame
        due by the time the next window is made."""
        skipped = windows * self.session.frames_per_window
        self.session.skip(windows)
        self._next_frame += skipped
        with self.lock:
            self.stats.catch_ups += 1
            self.stats.skipped_frames += skipped
        self._catch_up_log.jumped(behind_s, skipped, self._next_frame)
        self.notify(Degraded("catch-up", round(behind_s, 3), skipped))

    def _deliver(self, frames) -> None:
        """A window's frames, a latent's worth at a time, to the video track (call frame indices)."""
        if self._base_frame:
            frames = [replace(f, index=f.index + self._base_frame) for f in frames]
        self.frames.put(frames)
        if self._lateness is not None:
            self._lateness.delivered((f.index for f in frames), self.session.window_cpu_s)

    def _run_window(self) -> None:
        if self.threads is not None:
            wanted = self.threads()
            if wanted != self._threads:
                self.session.use_threads(wanted)
                self._threads = wanted
        slack = self.clock.frame_due(self._next_frame) - time.monotonic()
        plan = self.planner.plan(slack, self.session.windows_ready(), None if self.cores is None else self.cores())
        if plan.skip:
            self._jump(plan.skip, -slack)
        first = self._next_frame
        due = self.clock.frame_due(first)
        started, gc_started = time.monotonic(), GcClock.seconds
        lateness = self._lateness = WindowLateness(self.clock.frame_deadline, started)
        result = self.session.run_window(plan.steps, deliver=self._deliver)
        done, cpu = time.monotonic(), result.cpu_s
        self._lateness = None
        self._next_frame = self._base_frame + result.first_frame + self.session.frames_per_window
        compute = done - started
        self.planner.observe(plan.steps, result.idle, compute, cpu)
        cause = None
        if lateness.frames:
            cause = late_cause(lateness, cpu, compute, GcClock.seconds - gc_started,
                               plan.steps is None and result.steps > 1 and not result.idle,
                               self._last_idle and not result.idle)
            log.info("thread=%s event=late_window window=%d cause=%s late_frames=%d worst_s=%.3f start_slack_s=%.3f "
                     "compute_s=%.3f cpu_s=%.3f gc_s=%.3f steps=%d", self._thread.name, result.window, cause,
                     lateness.frames, lateness.worst_s, due - started, compute, cpu,
                     GcClock.seconds - gc_started, result.steps)
        self._last_idle = result.idle
        with self.lock:
            st = self.stats
            st.windows += 1
            st.idle_windows += result.idle
            st.fewer_steps += plan.steps is not None and not result.idle
            st.compute_s.append(compute)
            st.slack_s.append(due - done)
            st.late_windows += done > due
            st.late_frames += lateness.frames
            if cause is not None:
                st.late_causes[cause] += lateness.frames
            st.cpu_s += cpu
            st.recent.append({"window": result.window, "first_frame": first, "started": started,
                              "done": done, "cpu_s": cpu, "steps": result.steps, "idle": result.idle})
