"""A live stream's session in a process of its own, for the profiles that run on a CPU.

The calls of one process share its GIL: each call's generation thread, the event loop and the codecs'
threads take turns at it. With two portrait calls on two cores, a window of ~20 ms of CPU took 50-160
ms on the wall, waiting its turns, and 0.8-15% of the frames were repeats, by the hour; 0.0-0.1% with
each session in its own process (`benchmarks/robustness.py soak --profile portrait --callers 2`,
benchmarks/portrait-engine-cpu.md). A `RemoteSession` runs the call's
`Session` in a child process, so a window's Python work waits for no other call's and the event loop
waits for no window's; the call's worker thread (streaming/worker.py) drives it as it drives a
`Session`, through the same calls, and sleeps on a pipe while the window is made.

The children fork from a fork server that has imported the engine once (`start_processes`), so a call
starts in a fraction of a second; each builds its own profile from the profile's config (a
portrait profile: ~0.1 s) and its session. A profile on a GPU keeps its sessions in the server's
process: its weights are loaded once, and its windows wait on the GPU, not on the GIL.

One round trip a window: the audio, speech marks and other changes since the last window travel with
the order to make it (the child replays them on its Session first); the frames come back a latent's
worth at a time, as the Session hands them over, and then the window's result. A frame's pixels do not
go through the pipe: the child writes them into memory both processes map (`FrameSlots`, a window's
worth) and the pipe carries the slot. Pickled through the pipe, a 512x512 frame crossed in ~12 chunks,
a switch between the processes each: ~1 ms of the server's CPU a frame and 1.6-3 ms on the wall, idle
machine; through the slots ~0.1 ms each side (a copy out on the server's side). What the worker asks
between windows (`windows_ready`, `interrupt`'s sample) is answered here from a mirror of the
timeline, so it never waits on the child.
"""

from __future__ import annotations

import gc
import logging
import mmap
import multiprocessing
import os
import signal
import sys
import threading
import traceback
import types
import weakref
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing import forkserver, reduction

import numpy as np

from .errors import AvatarError
from .logs import logging_settings, setup_logging
from .session import Session, StreamPosition, WindowResult
from .session_audio import SessionAudio

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # a child that has not built its session by then (a machine far too busy) is ended
STOP_WAIT_S = 2.0  # for a child told to stop, before it is killed

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["avatar.remote", "models.portrait.codec"])  # what every child would import


def in_own_process(profile) -> bool:
    """Whether a live session of `profile` runs in a process of its own (CPU profiles)."""
    return profile.device.type == "cpu"


def start_processes() -> None:
    """Start the fork server and wait until it has imported the engine (seconds), so the first call's
    session need not wait for it. (It answers a first child only once its imports are done.)"""
    forkserver.ensure_running()
    with _without_main():
        probe = _context.Process(target=_return, name="avatar-warm-up", daemon=True)
        probe.start()
    probe.join()


def open_session(profile, image, prompt: str | None = None, seed: int = 0, output_mode: str = "crop",
                 threads: int = 1):
    """A live stream's session: a RemoteSession for a CPU profile, else a Session (blocking: off the
    loop). `threads`: the child's to start with (torch's, OpenCV's); the worker sets torch's after."""
    if in_own_process(profile):
        return RemoteSession(profile, image, prompt, seed, output_mode, threads)
    return Session(profile, image, prompt=prompt, seed=seed, output_mode=output_mode)


class SessionEnded(RuntimeError):
    """The session's process ended before answering (killed, crashed, or closed meanwhile)."""


class RemoteReference:
    """What a live call reads of a session's reference: the picture its video starts from."""

    def __init__(self, image: np.ndarray):
        self.image = image


class RemoteSession(StreamPosition):
    """A `Session` (the live calls: push_audio, mark_speech, windows_ready, run_window, interrupt, skip,
    set_prompt, use_threads, close) made in a child process. One thread drives it, like a Session;
    `close` may also come from another thread, to end a child stuck in a window."""

    def __init__(self, profile, image, prompt: str | None = None, seed: int = 0, output_mode: str = "crop",
                 threads: int = 1):
        self.profile = profile
        self._conn, child_conn = _context.Pipe()
        self._process = _context.Process(
            target=_serve, name="avatar-session", daemon=True,
            args=(child_conn, profile.config, str(profile.device), image, prompt, seed, output_mode, threads,
                  logging_settings()))
        with _without_main():
            self._process.start()
        child_conn.close()
        self._end = weakref.finalize(self, _end_process, self._process, self._conn)
        self._audio = SessionAudio(profile)  # the mirror: what windows_ready and interrupt need
        self.window_index = 0
        self.frames_done = 0
        self.window_cpu_s = 0.0
        self._pending: list[tuple[str, tuple]] = []  # Session calls to replay before the next window
        self._slots: FrameSlots | None = None
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise SessionEnded(f"the session's process did not start within {START_TIMEOUT_S:.0f} s")
            self.reference = RemoteReference(self._receive("ready")[1])
            self._slots = FrameSlots.create(self.frames_per_window, self.reference.image.shape)
            try:
                reduction.send_handle(self._conn, self._slots.fd, self._process.pid)
            except OSError:
                raise self._ended() from None
            self._slots.close_fd()
        except BaseException:
            self.close()
            raise

    # ---- the Session's live calls ------------------------------------------------------------
    def push_audio(self, pcm: np.ndarray, sample_rate: int, speech: bool | None = None) -> None:
        self._audio.push(pcm, sample_rate, speech)
        self._pending.append(("push_audio", (pcm, sample_rate, speech)))

    def mark_speech(self, s0: int, s1: int, speech: bool) -> None:
        self._pending.append(("mark_speech", (s0, s1, speech)))

    def set_prompt(self, prompt: str | None) -> None:
        self._pending.append(("set_prompt", (prompt,)))

    def use_threads(self, count: int) -> None:
        self._pending.append(("use_threads", (count,)))

    def interrupt(self) -> int:
        self._pending.append(("interrupt", ()))
        return self._silence_unmade()

    def skip(self, windows: int) -> None:
        if windows < 1:
            return
        self._advance(self.window_index + windows)
        self._pending.append(("skip", (windows,)))

    def windows_ready(self) -> int:
        return self._audio.windows_ready(self.window_index)

    def run_window(self, steps: int | None = None, deliver=None) -> WindowResult:
        if self.windows_ready() < 1:
            raise RuntimeError("run_window: the next window's audio is not all in yet")
        self.window_cpu_s = 0.0
        self._send(("run", self._pending, steps))
        self._pending = []
        while True:
            message = self._receive("frames", "done")
            if message[0] == "done":
                break
            _, frames, self.window_cpu_s = message
            if deliver is not None:  # copied out: the child writes the next window's frames there
                deliver([replace(f, image=self._slots.images[slot].copy()) for f, slot in frames])
        result = message[1]
        self.window_cpu_s = result.cpu_s
        self._advance(result.window + 1)
        return result

    def close(self) -> None:
        """End the child (at once if it is stuck in a window); the session cannot be used after."""
        self._end()
        self._slots = None  # unmapped with the last reference

    # ---- the pipe --------------------------------------------------------------------------------
    def _send(self, message: tuple) -> None:
        try:
            self._conn.send(message)
        except (OSError, ValueError):  # the pipe is closed: the child ended, or close() ran
            raise self._ended() from None

    def _receive(self, *kinds: str) -> tuple:
        try:
            message = self._conn.recv()
        except (EOFError, OSError, ValueError):
            raise self._ended() from None
        if message[0] == "error":
            raise message[1]
        if message[0] not in kinds:
            raise RuntimeError(f"session process: {message[0]!r} where {kinds} was due")
        return message

    def _ended(self) -> SessionEnded:
        self._process.join(0.5)
        code = self._process.exitcode
        return SessionEnded("the session's process ended" + ("" if code is None else f" (exit code {code})"))


class FrameSlots:
    """Room for `count` frames of `shape` (uint8) in a memory file both processes map: the server
    creates it, once the child has said its frames' shape, and hands the child its descriptor over the
    call's pipe. Nothing is named, so nothing outlives the two processes."""

    def __init__(self, fd: int, count: int, shape: tuple[int, ...]):
        self.fd = fd
        self.images = np.ndarray((count, *shape), np.uint8, mmap.mmap(fd, self.size(count, shape)))

    @staticmethod
    def size(count: int, shape: tuple[int, ...]) -> int:
        return count * int(np.prod(shape))

    @classmethod
    def create(cls, count: int, shape: tuple[int, ...]) -> "FrameSlots":
        fd = os.memfd_create("avatar-frames", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, cls.size(count, shape))
            return cls(fd, count, shape)
        except BaseException:
            os.close(fd)
            raise

    def close_fd(self) -> None:
        """The mapping stays (until the last reference to `images` goes); the descriptor is not needed."""
        os.close(self.fd)


_starting = threading.Lock()


@contextmanager
def _without_main():
    """While a child starts, a bare __main__: multiprocessing would have each child run the server's
    main module again (`streaming.cli`, a benchmark script, pytest's), seconds of imports, and
    nothing there is needed: the child's work is `_serve`, which the fork server has imported."""
    with _starting:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def _return() -> None:
    """A child with nothing to do (start_processes' wait)."""


def _end_process(process, conn) -> None:
    try:
        conn.send(("stop",))
    except (OSError, ValueError):
        pass
    process.join(STOP_WAIT_S)
    if process.is_alive():
        process.kill()
        process.join(STOP_WAIT_S)
    conn.close()


# ---- the child ----------------------------------------------------------------------------------
def _serve(conn, config, device: str, image, prompt, seed: int, output_mode: str, threads: int,
           log_settings: tuple[bool, str]) -> None:
    """A session's process: build the profile and the session, then make windows until told to stop
    or the server goes (the pipe closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server ends us
    setup_logging(*log_settings)
    from .profiles import build_profile
    from .threads import set_opencv_threads

    try:
        session = Session(build_profile(config, device), image, prompt=prompt, seed=seed, output_mode=output_mode)
        session.use_threads(threads)
        set_opencv_threads(threads)
    except BaseException as exc:
        _report(conn, exc)
        return
    conn.send(("ready", session.reference.image))
    try:
        slots = FrameSlots(reduction.recv_handle(conn), session.frames_per_window, session.reference.image.shape)
    except (EOFError, OSError):  # the server went before handing the slots over
        return
    slots.close_fd()
    gc.collect()
    gc.freeze()  # what was built lives as long as the call: out of the collector's walks
    used = 0  # slots written this window

    def deliver(frames) -> None:
        nonlocal used
        sent = []  # each frame without its pixels, and its slot
        for f in frames:
            slots.images[used] = f.image
            sent.append((replace(f, image=None), used))
            used += 1
        conn.send(("frames", sent, session.window_cpu_s))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        _, calls, steps = message
        used = 0
        try:
            for name, args in calls:
                getattr(session, name)(*args)
            result = session.run_window(steps, deliver)
        except BaseException as exc:
            _report(conn, exc)
            return
        conn.send(("done", replace(result, frames=[])))


def _report(conn, exc: BaseException) -> None:
    """An error to the server: ours as they are (the caller is told); a bug's traceback logged here."""
    if not isinstance(exc, AvatarError):
        log.error("event=session_process_failed error=\"%s: %s\"\n%s", type(exc).__name__, exc,
                  traceback.format_exc())
        exc = RuntimeError(f"session process: {type(exc).__name__}: {exc}")
    try:
        conn.send(("error", exc))
    except Exception:  # an error that does not pickle: its words
        conn.send(("error", RuntimeError(f"session process: {type(exc).__name__}: {exc}")))
