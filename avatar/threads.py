"""How many threads torch computes with: one policy for the server and the offline commands."""

from __future__ import annotations

import os


def torch_threads(streams: int = 1) -> int:
    """Threads for each of `streams` generation streams running at once: the cores, less one for the
    codecs and the rest, shared between the streams. (On a 2-core machine that is 1: torch's OpenMP
    team of 2 slows down 20x and more as soon as anything else wants a core.)"""
    return max(1, ((os.cpu_count() or 1) - 1) // max(streams, 1))


def set_torch_threads(requested: int | None) -> int:
    """For one offline stream (render, bench, eval): `--threads` if given, else OMP_NUM_THREADS if set
    (torch has already read it), else torch_threads(). Returns the count in use."""
    import torch

    if requested is not None:
        torch.set_num_threads(requested)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(torch_threads())
    return torch.get_num_threads()
