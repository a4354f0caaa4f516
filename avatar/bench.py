"""`avatar bench`: how fast a profile streams, as ratios to real time."""

from __future__ import annotations

import platform
import resource
import time

import numpy as np
import torch

from .profiles import load_profile
from .samples import babble, drawn_face
from .session import Session


def _peak_memory_mb(device: torch.device) -> dict:
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def run_bench(profile_name: str, seconds: float, device: str = "cpu", weights=None, steps: int | None = None,
              warmup_windows: int = 1, conditioning: str | None = None) -> dict:
    started = time.perf_counter()
    profile = load_profile(profile_name, device, weights).with_conditioning(conditioning)
    load_s = time.perf_counter() - started
    audio = babble(seconds + 1.0 + profile.frames_per_window / profile.fps * warmup_windows, profile.sample_rate)
    session = Session(profile, drawn_face(), seed=0)
    session.push_audio(audio, profile.sample_rate)
    sync = torch.cuda.synchronize if profile.device.type == "cuda" else (lambda: None)
    for _ in range(warmup_windows):
        session.step(1, steps)
    if profile.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(profile.device)
    window_s, frames, idle, forwards = [], 0, 0, []
    sync()
    cpu_started = time.process_time()  # CPU seconds, all threads: unlike the wall clock, the machine's load hardly changes it
    media_frames = int(seconds * profile.fps)
    while frames < media_frames and session.windows_ready():
        t0 = time.perf_counter()
        out = session.step(1, steps)
        sync()
        window_s.append(time.perf_counter() - t0)
        frames += len(out)
        idle += session.last_window.idle
        forwards.append(session.last_window.forwards)
    cpu = time.process_time() - cpu_started
    compute = sum(window_s)
    media = frames / profile.fps
    return {
        "profile": profile.name,
        "random_weights": profile.random_weights,
        "device": str(profile.device) + (f" ({torch.cuda.get_device_name(profile.device)})"
                                         if profile.device.type == "cuda" else f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        "resolution": "x".join(map(str, profile.resolution)),
        "steps": steps or profile.steps,
        "conditioning": profile.conditioning,
        "forwards_per_window": round(float(np.mean(forwards)), 2),  # DiT batch rows (guidance rows x steps)
        "forward_s": round(compute / sum(forwards), 4),
        "windows": len(window_s),
        "idle_windows": idle,
        "frames_per_window": profile.frames_per_window,
        "media_s": round(media, 3),
        "compute_s": round(compute, 3),
        "real_time_factor": round(compute / media, 4),
        "cpu_s_per_window": round(cpu / len(window_s), 4),
        "cpu_cores_needed": round(cpu / media, 3),  # CPU seconds per media second: cores one stream keeps busy
        "fps": round(frames / compute, 2),
        "window_latency_p50_s": round(float(np.percentile(window_s, 50)), 4),
        "window_latency_p95_s": round(float(np.percentile(window_s, 95)), 4),
        "algorithmic_latency_s": round(session.window_latency_s, 3),
        "load_s": round(load_s, 2),
        **_peak_memory_mb(profile.device),
    }
