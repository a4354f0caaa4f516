"""The degrade / catch-up policy of a live stream, as a pure object (no clock, no threads).

Before each window the worker asks for a plan given the window's slack (its first frame's due time
minus now) and how many windows have their audio. Once a whole window is past due, the stream jumps
over every window whose frames would all be shown late, to the window holding the frame due when
the work is done. A
window that would finish late at full steps runs with fewer steps, when fewer steps are faster.

The estimates are wall-clock times, but the one for the kind of window not being made now (full
steps while on one step, and back) follows the windows that are: its CPU time, which the machine's
load hardly changes, times how much longer than their CPU time windows take on the wall now. So a
call that shares its cores (two calls on two cores) stays on one step while that lasts, instead of
trying full steps every few windows and showing each of those late; once the load goes, the
estimate of full steps falls with it and they come back.

Full steps must also fit the call's share of the machine (`cores`, from avatar.threads): a window's
CPU time at full steps over the window's length is the cores the call needs to keep up. Two calls on
two cores cannot both have that (then they would fall behind together, whatever the slack says), so
each runs one step while they share the machine. "Fit" keeps a margin (SHARE_MARGIN): full steps
that need about the whole share leave no room for the media path's bursts and the other call's.
The first full-steps window may have cost more than usual (a cold start), so while over the share
full steps' CPU estimate eases toward one step's and they are re-measured; but never below the
cheapest full-steps window measured after that first one. (Before, two tiny calls on two cores, full
steps at 0.19-0.22 CPU-s a window against a share of 0.192, eased back under it every few seconds
and tried full steps again, a window likely to be late each time: in the 30-minute soak, which had
1.3-1.7% repeated frames, 7-12% of the windows were not made on one step, full-step and idle ones.)

A call with less than a whole core (WHOLE_CORE) runs one step even when full steps fit its share:
the output delay's compute allowance (streaming/calibrate.py) was measured for one call alone at
full steps, and where calls outnumber the cores a window can wait for another call's to finish
first. One step halves the DiT's part of a window. (Two portrait calls on two cores: full steps
cost ~0.018 CPU-s of an 80 ms window, a quarter of the 0.6-core share, so the share kept them; in two
1.5-minute soaks on the idle machine 10-21% of the late windows were full-steps ones and 42-49%
one-step windows that had waited for a core. One step: 18.4 -> 15.3 ms of CPU a window.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SMOOTHING = 0.3  # weight of the newest compute time in the moving estimates
FULL_STEPS_MARGIN = 1.1  # full steps only when the slack exceeds their estimate by this factor
CPU_RELAX = 0.995  # per window on fewer steps for want of cores: full steps' CPU estimate eases toward one step's
SHARE_MARGIN = 0.9  # full steps only when their CPU time is under this much of the call's share
WHOLE_CORE = 1.0  # a call with a smaller share runs one step (its window may wait on another call's)


@dataclass(frozen=True)
class WindowPlan:
    skip: int  # windows to pass over before the next one is made (0: none)
    steps: int | None  # sampling steps for it (None: the profile's)


class StepPlanner:
    """Compute-time estimates (full steps, one step) from past windows -> a plan for the next one."""

    def __init__(self, full_steps: int, window_s: float):
        self.full_steps = full_steps
        self.window_s = window_s
        self.est_full: float | None = None
        self.est_fast: float | None = None
        self.cpu_full: float | None = None  # CPU seconds of a window at full steps, at one step
        self.cpu_fast: float | None = None
        self.full_measured = 0  # full-steps windows with a CPU time
        self.cpu_full_best: float | None = None  # the cheapest of those after the first (which may be cold)

    def _cheapest(self) -> float:
        known = [e for e in (self.est_full, self.est_fast) if e is not None]
        return min(known) if known else 0.0

    def over_budget(self, cores: float | None) -> bool:
        """Full steps need more of a core than the call's share, or the call has less than a whole
        core (None: no share set)."""
        if cores is None:
            return False
        return cores < WHOLE_CORE or self.cpu_full is not None and self.cpu_full > SHARE_MARGIN * cores * self.window_s

    def plan(self, slack_s: float, ready: int, cores: float | None = None) -> WindowPlan:
        skip = 0
        if slack_s <= -self.window_s:  # the whole window is already past due: jump (not on an estimate alone)
            # over every window whose last frame is due before the cheapest run of it could end
            behind = math.floor((self._cheapest() - slack_s) / self.window_s)
            skip = max(0, min(behind, ready - 1))  # never past the audio that is in
        slack_s += skip * self.window_s
        steps = None
        late = self.est_full is not None and slack_s < FULL_STEPS_MARGIN * self.est_full
        if ((late or self.over_budget(cores)) and self.full_steps > 1
                and (self.est_fast is None or self.est_full is None or self.est_fast < self.est_full)):
            steps = 1
        return WindowPlan(skip, steps)

    def observe(self, steps: int | None, idle: bool, compute_s: float, cpu_s: float | None = None) -> None:
        """A window ran with the planned `steps` in `compute_s` (wall) and `cpu_s` (its thread's CPU
        time, if known); idle windows take their own (cheap) path and tell nothing."""
        if idle:
            return
        full = steps is None
        if full:
            self.est_full = _smooth(self.est_full, compute_s)
        else:
            self.est_fast = _smooth(self.est_fast, compute_s)
        if cpu_s is not None and cpu_s > 0:
            slowdown = compute_s / cpu_s  # wall time per CPU second now
            if full:  # up at once (a re-measure after easing), down smoothly
                self.full_measured += 1
                if self.full_measured > 1:
                    self.cpu_full_best = cpu_s if self.cpu_full_best is None else min(self.cpu_full_best, cpu_s)
                self.cpu_full = max(cpu_s, _smooth(self.cpu_full, cpu_s))
                if self.cpu_fast is not None:
                    self.est_fast = _smooth(self.est_fast, self.cpu_fast * slowdown)
                return
            self.cpu_fast = _smooth(self.cpu_fast, cpu_s)
            if self.cpu_full is not None:
                # a first full-steps window that cost more than usual (a cold start) must not keep the
                # call off full steps for good: eased until re-measured (no lower than a warm one)
                self.cpu_full = max(self.cpu_fast, self.cpu_full_best or 0.0, CPU_RELAX * self.cpu_full)
                self.est_full = _smooth(self.est_full, self.cpu_full * slowdown)
                return
        if not full and self.est_full is not None:
            # No CPU time to go by: let the full-steps estimate relax, so they are tried again (one
            # slow outlier must not keep the stream on fewer steps for good).
            self.est_full = max(self.est_fast, 0.9 * self.est_full)


def _smooth(estimate: float | None, value: float) -> float:
    return value if estimate is None else (1 - SMOOTHING) * estimate + SMOOTHING * value
