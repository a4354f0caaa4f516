"""How long one speech window takes on this machine, measured once at start-up; it sets the compute
allowance in the output delay (and warms the model up, so the first call is not the slow one).

The output delay is the window, the audio look-ahead and this allowance: the wait for a window's
last sample to reach the worker (`INPUT_WAIT_S`) plus its compute with a margin. A window that would
still be late runs with fewer steps (streaming/planner.py)."""

from __future__ import annotations

import logging
import statistics
import time

log = logging.getLogger(__name__)

MARGIN = 1.25  # headroom over the measured compute
# A window can start only once its last sample is in the worker: that sample's 20 ms packet has
# arrived and the event loop has passed it on (two calls share the cores: a jitter allowance). The
# worker does not wait for the VAD: its speech marks follow the audio (streaming/call_input.py).
# (30 ms was tried: two portrait calls for 10 minutes repeated 0.05% / 0.03% of their frames instead
# of 0.09% / 0.09%, for 10 ms more latency, which the 250 ms goal has no room for on a slow hour:
# benchmarks/soak2-portrait-cpu.json.)
INPUT_WAIT_S = 0.020
JITTER_S = 0.020
CEILING_S = 1.0  # a busier machine than that degrades (fewer steps, idle path) instead of waiting longer


def measure_window_compute(profile, windows: int = 5) -> float:
    """Median seconds for one speech window at the profile's full steps (the first, a warm-up, not counted)."""
    from avatar.samples import babble, sample_reference
    from avatar.session import Session

    session = Session(profile, sample_reference(profile), seed=0)
    seconds = (windows + 1) * session.window_latency_s + 1.0
    session.push_audio(babble(seconds, profile.sample_rate), profile.sample_rate, speech=True)
    times = []
    for _ in range(windows):
        started = time.perf_counter()
        session.step(1)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def compute_allowance(profile, threads: int | None = None) -> float:
    """Run in its own thread: `threads` (torch's count is per thread) should be what a call's worker uses."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    measured = measure_window_compute(profile)
    allowance = MARGIN * measured + INPUT_WAIT_S + JITTER_S  # at least the input's wait and the jitter
    if allowance > CEILING_S:
        log.warning("event=calibration_capped window_compute_s=%.3f compute_allowance_s=%.1f "
                    "(this machine is busy or slow for this profile: expect degraded windows)",
                    measured, CEILING_S)
        allowance = CEILING_S
    log.info("event=calibrated window_compute_s=%.3f compute_allowance_s=%.3f", measured, allowance)
    return allowance
