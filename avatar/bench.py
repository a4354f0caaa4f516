"""`avatar bench`: how fast a profile streams, as ratios to real time."""

from __future__ import annotations

import os
import platform
import resource
import time
from fractions import Fraction

import numpy as np
import torch

from .profiles import load_profile
from .samples import babble, sample_reference
from .session import Session
from .video import yuv420_frame


def _peak_memory_mb(device: torch.device) -> dict:
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def _encode_ms(images: list[np.ndarray]) -> dict:
    """Per frame, what the call's video track adds: the frame's conversion to yuv420p and aiortc's own
    VP8 and H.264 encoders (one stream), wall and CPU time."""
    from aiortc.codecs.h264 import H264Encoder
    from aiortc.codecs.vpx import Vp8Encoder

    out = {}
    for name, encoder in (("vp8", Vp8Encoder()), ("h264", H264Encoder())):
        started, cpu_started = time.perf_counter(), time.process_time()
        for i, image in enumerate(images):
            frame = yuv420_frame(image)
            frame.pts, frame.time_base = i * 3600, Fraction(1, 90000)
            encoder.encode(frame)
        out[f"encode_{name}_ms_per_frame"] = round(1000 * (time.perf_counter() - started) / len(images), 2)
        out[f"encode_{name}_cpu_ms_per_frame"] = round(1000 * (time.process_time() - cpu_started) / len(images), 2)
    return out


def run_bench(profile_name: str, seconds: float, device: str = "cpu", weights=None, steps: int | None = None,
              warmup_windows: int = 1, conditioning: str | None = None, size: int | None = None) -> dict:
    started = time.perf_counter()
    profile = load_profile(profile_name, device, weights, size).with_conditioning(conditioning)
    load_s = time.perf_counter() - started
    audio = babble(seconds + 1.0 + profile.frames_per_window / profile.fps * warmup_windows, profile.sample_rate)
    session = Session(profile, sample_reference(profile), seed=0)
    session.push_audio(audio, profile.sample_rate)
    sync = torch.cuda.synchronize if profile.device.type == "cuda" else (lambda: None)
    for _ in range(warmup_windows):
        session.step(1, steps)
    if profile.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(profile.device)
    window_s, frames, idle, forwards, decode_s, decode_cpu_s, images = [], 0, 0, [], [], [], []
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
        decode_s.append(session.last_window.decode_s)
        decode_cpu_s.append(session.last_window.decode_cpu_s)
        images += [f.image for f in out][:max(0, 50 - len(images))]
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
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "fps": round(frames / compute, 2),
        "window_latency_p50_s": round(float(np.percentile(window_s, 50)), 4),
        "window_latency_p95_s": round(float(np.percentile(window_s, 95)), 4),
        "algorithmic_latency_s": round(session.window_latency_s, 3),
        # the split of a frame's cost: the DiT's motion/latents, the decoder (portrait: the renderer), and
        # (not in the real-time factor: the call's sender does it) the video encode of one stream
        "motion_ms_per_frame": round(1000 * (compute - sum(decode_s)) / frames, 2),
        "decode_ms_per_frame": round(1000 * sum(decode_s) / frames, 2),
        "motion_cpu_ms_per_frame": round(1000 * (cpu - sum(decode_cpu_s)) / frames, 2),
        "decode_cpu_ms_per_frame": round(1000 * sum(decode_cpu_s) / frames, 2),
        **_encode_ms(images),
        "load_s": round(load_s, 2),
        **_peak_memory_mb(profile.device),
    }
