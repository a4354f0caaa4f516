"""How long one speech window takes on this machine, measured once at start-up; it sets the compute
allowance in the output delay (and warms the model up, so the first call is not the slow one)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

MARGIN = 1.25  # headroom over the measured compute
FLOOR_S = 0.12


def measure_window_compute(profile, windows: int = 3) -> float:
    """Seconds for one speech window at the profile's full steps (the slowest after the first)."""
    from avatar.bench import babble, drawn_face
    from avatar.session import Session

    session = Session(profile, drawn_face(), seed=0)
    seconds = (windows + 1) * session.window_latency_s + 1.0
    session.push_audio(babble(seconds, profile.sample_rate), profile.sample_rate, speech=True)
    times = []
    for _ in range(windows):
        started = time.perf_counter()
        session.step(1)
        times.append(time.perf_counter() - started)
    return max(times[1:]) if len(times) > 1 else times[0]


def compute_allowance(profile) -> float:
    measured = measure_window_compute(profile)
    allowance = max(FLOOR_S, MARGIN * measured + 0.02)
    log.info("event=calibrated window_compute_s=%.3f compute_allowance_s=%.3f", measured, allowance)
    return allowance
