"""The generation worker with a real engine session (tiny-random): in order frames when on time,
degrading when behind, interrupts, and a failing session that takes nothing else down. Due times are
set far in the past or future, so the outcome does not depend on the machine's speed."""

import threading
import time

import numpy as np

from avatar.session import Session
from streaming.buffers import FrameBuffer
from streaming.clock import MediaClock
from streaming.worker import GenerationWorker


class Events:
    def __init__(self):
        self.items = []
        self.lock = threading.Lock()

    def __call__(self, kind, payload):
        with self.lock:
            self.items.append((kind, payload))

    def kinds(self):
        with self.lock:
            return [k for k, _ in self.items]


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def unhurried_clock() -> MediaClock:
    """A started clock on which every frame is due an hour from now: no deadline pressure."""
    clock = MediaClock(delay_s=3600.0, fps=25, sample_rate=16000)
    clock.start()
    return clock


def make_worker(profile, face, clock, capacity=500):
    events = Events()
    frames = FrameBuffer(capacity)
    worker = GenerationWorker(Session(profile, face, seed=0), clock, frames, events, threads=lambda: 1)
    return worker, frames, events


def feed(worker, audio, speech=True):
    for i in range(0, len(audio), 512):
        worker.push_audio(audio[i:i + 512], speech)


def drain(frames):
    out = []
    index = 0
    while len(frames):
        frame = frames.take(index)
        if frame is not None:
            out.append(frame)
        index += 1
    return out


def test_on_time_worker_runs_every_window_in_order_at_full_steps(tiny_profile, face_image, speech_like):
    clock = unhurried_clock()
    worker, frames, events = make_worker(tiny_profile, face_image, clock)
    worker.start()
    try:
        feed(worker, speech_like(2.5))
        wait_for(lambda: worker.stats.windows >= 3)
    finally:
        worker.stop()
    got = drain(frames)
    assert [f.index for f in got] == list(range(len(got))) and len(got) >= 3 * tiny_profile.frames_per_window
    snap = worker.stats.snapshot()
    assert snap["fewer_steps"] == 0 and snap["catch_ups"] == 0 and snap["late_windows"] == 0
    assert "degraded" not in events.kinds()


def test_worker_far_behind_catches_up_on_the_idle_path_and_says_so(tiny_profile, face_image, speech_like):
    clock = MediaClock(delay_s=0.0, fps=25, sample_rate=16000)
    clock.start(now=time.monotonic() - 60)  # every window is a minute late
    worker, frames, events = make_worker(tiny_profile, face_image, clock)
    worker.start()
    try:
        feed(worker, speech_like(2.5))
        wait_for(lambda: worker.stats.windows >= 3)
    finally:
        worker.stop()
    snap = worker.stats.snapshot()
    assert snap["catch_ups"] >= 1 and snap["idle_windows"] >= 1 and snap["late_windows"] >= 3
    assert "degraded" in events.kinds()
    assert events.items[events.kinds().index("degraded")][1]["reason"] == "catch-up"


def test_worker_slightly_behind_uses_fewer_steps(tiny_profile, face_image, speech_like):
    clock = MediaClock(delay_s=0.0, fps=25, sample_rate=16000)
    clock.start(now=time.monotonic() + 3600)  # window 0 on time: it measures the full-steps cost
    worker, frames, _ = make_worker(tiny_profile, face_image, clock)
    worker.start()
    try:
        fpw = tiny_profile.frames_per_window
        feed(worker, speech_like(fpw / 25 + tiny_profile.lookahead_s + 0.1))  # enough audio for window 0 only
        wait_for(lambda: worker.stats.windows >= 1)
        assert worker.session.windows_ready() == 0
        # Window 1 is now due in 50 ms: less than a full-steps window takes.
        clock.t0 = time.monotonic() + 0.05 - fpw / 25
        feed(worker, speech_like(2.0, seed=1))
        wait_for(lambda: worker.stats.windows >= 2)
    finally:
        worker.stop()
    second = list(worker.stats.recent)[1]
    assert second["first_frame"] == fpw and not second["idle"] and second["steps"] == 1
    assert worker.stats.fewer_steps >= 1


def test_interrupt_reports_where_speech_was_dropped(tiny_profile, face_image, speech_like):
    clock = unhurried_clock()
    worker, frames, events = make_worker(tiny_profile, face_image, clock)
    worker.start()
    try:
        feed(worker, speech_like(1.5))
        wait_for(lambda: worker.stats.windows >= 1)
        worker.interrupt()
        wait_for(lambda: "interrupted" in events.kinds())
    finally:
        worker.stop()
    sample = events.items[events.kinds().index("interrupted")][1]["sample"]
    assert sample % 640 == 0 and sample >= tiny_profile.frames_per_window * 640


def test_a_failing_session_stops_only_its_own_worker(tiny_profile, face_image, speech_like):
    clock = unhurried_clock()
    broken, _, broken_events = make_worker(tiny_profile, face_image, clock)
    healthy, healthy_frames, _ = make_worker(tiny_profile, face_image, clock)

    def explode(*args, **kwargs):
        raise RuntimeError("model blew up")

    broken.session.step = explode
    broken.start()
    healthy.start()
    try:
        feed(broken, speech_like(1.5))
        feed(healthy, speech_like(2.5))
        wait_for(lambda: "failed" in broken_events.kinds())
        wait_for(lambda: healthy.stats.windows >= 3)
        assert not broken.alive and healthy.alive
        assert "model blew up" in broken_events.items[-1][1]["message"]
    finally:
        broken.stop()
        healthy.stop()
    assert len(drain(healthy_frames)) >= 3 * tiny_profile.frames_per_window


def test_new_avatar_takes_over_at_a_window_boundary_with_no_gap(tiny_profile, face_image, speech_like):
    clock = unhurried_clock()
    worker, frames, events = make_worker(tiny_profile, face_image, clock)
    worker.start()
    try:
        feed(worker, speech_like(1.5))
        wait_for(lambda: worker.stats.windows >= 1)
        other = np.full_like(face_image, 40)
        other[64:192, 64:192] = 220
        new_session = Session(tiny_profile, other, seed=0)
        worker.swap_session(new_session)
        wait_for(lambda: "avatar" in events.kinds())
        switch = events.items[events.kinds().index("avatar")][1]["frame"]
        fpw = tiny_profile.frames_per_window
        feed(worker, speech_like(2.0, seed=1))
        # the old session may have run more than one window before the swap came in: count from it
        wait_for(lambda: worker.stats.windows >= switch // fpw + 3)
    finally:
        worker.stop()
    got = drain(frames)
    assert switch % fpw == 0 and switch >= fpw
    assert [f.index for f in got] == list(range(len(got))) and len(got) > switch + fpw  # contiguous across it
    # The new session made the frames from the switch on (tiny-random shows noise whatever the
    # face, so the frames themselves cannot tell; the session's count can).
    assert worker.session is new_session
    assert new_session.frames_done >= 3 * fpw
    assert new_session.frames_done + switch >= len(got)
