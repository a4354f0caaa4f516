"""How many threads torch computes with: one policy for the server and the offline commands."""

from __future__ import annotations

import os


def torch_threads(streams: int = 1) -> int:
    """Threads for each of `streams` generation streams running at once: the cores, less one for the
    codecs and the rest, shared between the streams. (On a 2-core machine that is 1: torch's OpenMP
    team of 2 slows down 20x and more as soon as anything else wants a core.)"""
    return max(1, ((os.cpu_count() or 1) - 1) // max(streams, 1))


UTILISATION = 0.8  # of the cores, planned for live calls: the rest absorbs bursts (and whatever else runs)
MEDIA_CORES_PER_STREAM = 0.2  # a call's media path besides generation: codecs, RTP, VAD, event loop


def generation_cores(streams: int = 1) -> float:
    """Cores each of `streams` live generation streams may use so that all of them, with their media
    paths, keep real time: UTILISATION of the cores less the media paths, shared. (On 2 cores: 1.4
    for one call, 0.6 each for two; the tiny profile needs ~0.77 at full steps, ~0.57 at one step.)"""
    streams = max(streams, 1)
    return max((os.cpu_count() or 1) * UTILISATION - MEDIA_CORES_PER_STREAM * streams, 0.1) / streams


def set_torch_threads(requested: int | None) -> int:
    """For one offline stream (render, bench, eval): `--threads` if given, else OMP_NUM_THREADS if set
    (torch has already read it), else torch_threads(); OpenCV's pool likewise. Returns the count in use."""
    import torch

    if requested is not None:
        torch.set_num_threads(requested)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(torch_threads())
    set_opencv_threads(torch.get_num_threads())
    return torch.get_num_threads()


def set_opencv_threads(count: int) -> int:
    """OpenCV's own pool (the portrait renderer's remaps, resizes and blurs), process-wide; returns the
    count it had. Its default, every core, bought no wall time on 2 cores and cost CPU in its threads,
    outside the generation thread's CPU clock: 15.2 ms of CPU a portrait window on one thread, 15.8-17.0
    on two."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    return before
