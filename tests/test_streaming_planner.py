"""The degrade / catch-up policy as a table: slack and estimates in, a plan out (no threads, no clock)."""

import pytest

from streaming.planner import StepPlanner, WindowPlan

WINDOW_S = 0.64  # 16 frames at 25 fps


def planner(est_full=None, est_fast=None, full_steps=2):
    p = StepPlanner(full_steps, WINDOW_S)
    p.est_full, p.est_fast = est_full, est_fast
    return p


@pytest.mark.parametrize("est_full, est_fast, slack, ready, expected", [
    # nothing measured yet: full steps, whatever the slack
    (None, None, 0.5, 1, WindowPlan(0, None)),
    (None, None, 0.0, 1, WindowPlan(0, None)),
    # on time with room: full steps
    (0.20, None, 0.50, 1, WindowPlan(0, None)),
    # would finish late at full steps, one step not measured yet: try one step
    (0.20, None, 0.10, 1, WindowPlan(0, 1)),
    # within the 10 % margin of the full-steps estimate: one step
    (0.20, None, 0.21, 1, WindowPlan(0, 1)),
    # one step measured faster than full steps: use it when late
    (0.20, 0.08, 0.05, 1, WindowPlan(0, 1)),
    # one step measured no faster: stay on full steps
    (0.20, 0.25, 0.05, 1, WindowPlan(0, None)),
    # late, but part of the window still shows: make it (fewer steps), no jump
    (0.20, 0.08, -0.30, 3, WindowPlan(0, 1)),
    # estimated to finish after its last frame, but not past due yet: make it (estimates can be wrong)
    (0.50, 0.40, 0.05, 3, WindowPlan(0, 1)),
    (0.50, 0.40, -0.60, 3, WindowPlan(0, 1)),
    # a whole window behind: jump over it
    (0.20, 0.08, -0.70, 3, WindowPlan(1, 1)),
    # 2.5 windows behind: jump two, the third still has frames due after it is done
    (0.20, 0.08, -1.60, 5, WindowPlan(2, 1)),
    # far behind: jump as far as the audio that is in allows (never past the last ready window)
    (0.20, 0.08, -60.0, 4, WindowPlan(3, 1)),
    (0.20, 0.08, -60.0, 1, WindowPlan(0, 1)),
    # a jump lands in the window that holds the frame due when it is done: late, so fewer steps
    (0.20, 0.08, -10 * WINDOW_S + 0.5, 20, WindowPlan(9, 1)),
    # with no estimates a jump counts the window as free: over every window already past
    (None, None, -2 * WINDOW_S - 0.01, 5, WindowPlan(2, None)),
    # a one-step profile never degrades steps
    (0.20, None, 0.05, 1, "one-step"),
])
def test_plan(est_full, est_fast, slack, ready, expected):
    if expected == "one-step":
        assert planner(est_full, est_fast, full_steps=1).plan(slack, ready) == WindowPlan(0, None)
    else:
        assert planner(est_full, est_fast).plan(slack, ready) == expected


@pytest.mark.parametrize("before, observed, after", [
    # (est_full, est_fast) before; (steps, idle, compute) observed; (est_full, est_fast) after
    ((None, None), (None, False, 0.30), (0.30, None)),
    ((0.30, None), (None, False, 0.20), (0.27, None)),
    ((0.30, None), (1, False, 0.10), (0.27, 0.10)),  # full steps not measured: relaxes 10 %
    ((0.30, 0.10), (1, False, 0.10), (0.27, 0.10)),
    ((0.11, 0.10), (1, False, 0.10), (0.10, 0.10)),  # relaxes no lower than one step's cost
    ((0.30, 0.10), (None, True, 0.01), (0.30, 0.10)),  # an idle window tells nothing
    ((0.30, 0.10), (1, True, 0.01), (0.30, 0.10)),
])
def test_observe(before, observed, after):
    p = planner(*before)
    p.observe(*observed)
    assert (p.est_full, p.est_fast) == pytest.approx(after)
