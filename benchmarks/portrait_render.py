"""Portrait renderer cost per frame on ONE thread: motion vector -> 512x512 frame.

    python benchmarks/portrait_render.py [--image face.png] [--size 512] [--frames 250] [--json FILE]

Without --image it uses scikit-image's public-domain astronaut photo (the `test` extra). The motion
is a speech-like sequence (jaw and lips at syllable rate, blinks, head sway). Prints ms per frame
(mean, median, p95, min) in wall-clock and in CPU time of the process, the one-off face fit and
set-up, and the machine's load average, since this 2-core machine is shared.
"""
import argparse
import json
import os
import time

import cv2
import numpy as np

from models.portrait.face_mesh import FaceMesher, read_photo
from models.portrait.motion import CHANNELS, INDEX
from models.portrait.render import PortraitRenderer


def speech_like_motion(frames: int, fps: int = 25) -> np.ndarray:
    t = np.arange(frames) / fps
    m = np.zeros((frames, len(CHANNELS)))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t) * 0.5 + 0.5, 0, 1) * (np.sin(2 * np.pi * 0.3 * t) > -0.5)
    m[:, INDEX["jaw_open"]] = 0.7 * syllables
    m[:, INDEX["lip_gap"]] = 0.3 * syllables
    m[:, INDEX["mouth_wide"]] = 0.3 * np.sin(2 * np.pi * 1.1 * t)
    m[:, INDEX["mouth_round"]] = 0.3 * np.clip(np.sin(2 * np.pi * 0.7 * t), 0, 1)
    m[:, INDEX["upper_lip_raise"]] = 0.4 * syllables
    m[:, INDEX["lip_press"]] = 0.5 * (syllables < 0.1)
    blink = np.exp(-((t % 3.2) - 0.1) ** 2 / (2 * 0.05 ** 2))
    m[:, INDEX["blink_right"]] = m[:, INDEX["blink_left"]] = blink
    m[:, INDEX["brows"]] = 0.3 * np.sin(2 * np.pi * 0.25 * t)
    m[:, INDEX["head_yaw"]] = 3 * np.sin(2 * np.pi * 0.2 * t)
    m[:, INDEX["head_pitch"]] = 2 * np.sin(2 * np.pi * 0.33 * t)
    m[:, INDEX["head_roll"]] = 1.5 * np.sin(2 * np.pi * 0.15 * t)
    m[:, INDEX["head_x"]] = 0.01 * np.sin(2 * np.pi * 0.1 * t)
    return m


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--image")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--json")
    args = p.parse_args()
    cv2.setNumThreads(1)
    if args.image:
        photo = read_photo(args.image)
    else:
        from skimage import data
        photo = data.astronaut()
    started = time.perf_counter()
    mesher = FaceMesher()
    load_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    mesh = mesher.fit(photo)
    fit_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    renderer = PortraitRenderer(photo, mesh, size=args.size)
    setup_ms = (time.perf_counter() - started) * 1e3
    motion = speech_like_motion(args.frames)
    renderer.render(motion[0])   # warm-up
    times, cpu = [], []
    for m in motion:
        started, cpu_started = time.perf_counter(), time.process_time()
        renderer.render(m)
        times.append((time.perf_counter() - started) * 1e3)
        cpu.append((time.process_time() - cpu_started) * 1e3)
    times, cpu = np.array(times), np.array(cpu)
    result = {
        "size": args.size, "frames": args.frames, "threads": 1,
        "ms_per_frame_mean": round(float(times.mean()), 2),
        "ms_per_frame_median": round(float(np.median(times)), 2),
        "ms_per_frame_p95": round(float(np.percentile(times, 95)), 2),
        "ms_per_frame_min": round(float(times.min()), 2),
        "render_rtf_at_25fps": round(float(times.mean()) / 40.0, 3),
        # CPU time of this process: what the frame costs, whatever else the machine runs
        "cpu_ms_per_frame_mean": round(float(cpu.mean()), 2),
        "cpu_ms_per_frame_median": round(float(np.median(cpu)), 2),
        "cpu_rtf_at_25fps": round(float(cpu.mean()) / 40.0, 3),
        "model_load_ms": round(load_ms, 1), "face_fit_ms": round(fit_ms, 1),
        "renderer_setup_ms": round(setup_ms, 1),
        "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
    }
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
