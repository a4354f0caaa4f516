"""Late frames and their causes (streaming/lateness.py): what a soak's repeated frames are put down to."""

import time

import pytest

from streaming.lateness import CAUSES, WindowLateness, late_cause


def lateness(hopeless: bool) -> WindowLateness:
    window = WindowLateness(lambda index: 0.0, 0.0)
    window.frames, window.hopeless = 4, hopeless
    return window


@pytest.mark.parametrize("hopeless, cpu, wall, gc_s, full, after_idle, cause", [
    (True, 0.1, 0.5, 0.05, True, True, "late_start"),  # no core could have made it: nothing else matters
    (False, 0.1, 0.5, 0.05, True, True, "gc"),
    (False, 0.1, 0.5, 0.0, True, True, "full_steps"),
    (False, 0.1, 0.5, 0.0, False, True, "after_idle"),
    (False, 0.1, 0.12, 0.0, False, False, "compute"),  # within 1.25x of its CPU time: it had a core
    (False, 0.1, 0.2, 0.0, False, False, "contention"),  # waited for a core
])
def test_a_late_window_gets_the_first_cause_that_holds(hopeless, cpu, wall, gc_s, full, after_idle, cause):
    assert late_cause(lateness(hopeless), cpu, wall, gc_s, full, after_idle) == cause
    assert cause in CAUSES


def test_frames_handed_over_after_their_due_time_are_counted():
    now = time.monotonic()
    due = {0: now - 0.05, 1: now + 10.0, 2: now - 0.2}  # 0 and 2 already late
    window = WindowLateness(due.__getitem__, now - 0.3)
    window.delivered([0, 1, 2], 0.001)
    assert window.frames == 2 and window.worst_s == pytest.approx(0.2, abs=0.05)
    # due 0.1 s and 0.25 s after the start, with (almost) no CPU time used yet: a core would have made them
    assert not window.hopeless
    hopeless = WindowLateness(due.__getitem__, now - 0.3)
    hopeless.delivered([0], 1.0)  # 1 CPU-s had gone into the window
    assert hopeless.hopeless
