"""Figures of the soak (benchmarks/robustness.py soak) from what its callers recorded: A/V offset,
the engine's counters between two stats messages, and the CPU budget of a call by part."""

from __future__ import annotations

import os

import numpy as np


def av_offset(client, t0: float, t1: float) -> float | None:
    """Median (arrival - pts time) of the video minus that of the voice: constant while in sync."""
    v = [a - p / 90000 for a, p, _ in client.received.video if t0 <= a < t1]
    s = [a - p / 48000 for a, p, _ in client.received.audio if t0 <= a < t1]
    return round(float(np.median(v) - np.median(s)), 4) if v and s else None


def engine_counts(client, t0: float, t1: float) -> dict:
    """From the first and last stats message in [t0, t1): frames sent and repeated, windows made, the
    generation thread's CPU seconds (None from a server that does not report them), the window's
    media length, the seconds between the two messages, and the frames handed over late, in all and
    by cause (streaming/lateness.py), and the input frames dropped unread (None: from a server that does
    not count them)."""
    stats = [(a, m) for a, m in client.received.messages if m.get("type") == "stats" and t0 <= a < t1]
    if len(stats) < 2:
        return {"sent": 0, "repeated": 0, "windows": 0, "idle_windows": 0, "fewer_steps": 0, "cpu_s": None,
                "window_s": None, "output_delay_s": None, "span_s": 0.0, "late_frames": None, "late_causes": None,
                "input_dropped": None}
    (a0, first), (a1, last) = stats[0], stats[-1]
    cpu = last["engine"].get("cpu_s")
    causes = last["engine"].get("late_causes")  # None from a server that does not count them
    return {"sent": last["frames_sent"] - first["frames_sent"],
            "repeated": last["frames_repeated"] - first["frames_repeated"],
            "windows": last["engine"]["windows"] - first["engine"]["windows"],
            "idle_windows": last["engine"]["idle_windows"] - first["engine"]["idle_windows"],
            "fewer_steps": last["engine"]["fewer_steps"] - first["engine"]["fewer_steps"],
            "cpu_s": None if cpu is None else cpu - first["engine"]["cpu_s"],
            "window_s": last["latency"]["window_s"], "output_delay_s": last["latency"]["output_delay_s"],
            "span_s": a1 - a0,
            "late_frames": None if causes is None else last["engine"]["late_frames"] - first["engine"]["late_frames"],
            "late_causes": None if causes is None else {k: v - first["engine"]["late_causes"].get(k, 0)
                                                        for k, v in causes.items()},
            "input_dropped": last.get("input_dropped", 0) - first.get("input_dropped", 0) if causes else None}


def cpu_budget(server_cpu_s: float, harness_cpu_s: float, counts: list[dict], seconds: float) -> dict:
    """CPU seconds per media second of one call, by part: unlike the wall-clock figures these hardly
    depend on what else the machine runs, so they say whether the calls fit on its cores.
    `generation_every_window`: what generation needs when no window is passed over (a call that
    falls behind makes fewer windows, so uses less than it needs)."""
    calls = len(counts)
    per_call = {"server": round(server_cpu_s / seconds / calls, 3),
                "harness_caller": round(harness_cpu_s / seconds / calls, 3)}
    if all(c["cpu_s"] is not None and c["windows"] for c in counts):
        generation = sum(c["cpu_s"] / c["span_s"] for c in counts) / calls
        per_window = sum(c["cpu_s"] / c["windows"] for c in counts) / calls
        per_call |= {"generation": round(generation, 3), "server_rest": round(per_call["server"] - generation, 3),
                     "generation_cpu_s_per_window": round(per_window, 4),
                     "generation_every_window": round(per_window / counts[0]["window_s"], 3)}
    return {"cpu_s_per_media_s_per_call": per_call,
            "cores_used": round((server_cpu_s + harness_cpu_s) / seconds, 3), "cores": os.cpu_count()}
