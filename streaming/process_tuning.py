"""Process-wide settings that live calls want, held while any server runs: taken by the first server
to start and given back by the last to stop, so servers may overlap (tests, an app embedding two) and
a server whose start fails leaves nothing changed.

- The GIL's switch interval (CPython's default is 5 ms). Every call's generation thread, the event loop
  and the codecs' threads take turns at the GIL hundreds of times a window; at 5 ms a turn, two portrait
  calls' 20 ms windows took 80-110 ms of wall time and 6-10% of their frames were repeats
  (`benchmarks/robustness.py soak --profile portrait --callers 2`, idle machine); at 0.5 ms, 0.4-2.8%,
  for the same CPU time.
- OpenCV's pool (the portrait renderer's remaps), sized like torch's (avatar/threads.py).
- What start-up made (portrait: ~450k objects) kept out of the collector's reach: a full collection
  walked it for ~0.2 CPU-s holding the GIL, and every call's frames waited.
"""

from __future__ import annotations

import gc
import sys

from avatar.threads import set_opencv_threads

GIL_SWITCH_S = 0.0005

_holders = 0
_saved: tuple[float, int] | None = None


def take(opencv_threads: int) -> None:
    global _holders, _saved
    if _holders == 0:
        _saved = sys.getswitchinterval(), set_opencv_threads(opencv_threads)
        sys.setswitchinterval(GIL_SWITCH_S)
    _holders += 1


def freeze_start_up() -> None:
    """Once a server has made what it keeps for its life: out of the collector's reach."""
    gc.collect()
    gc.freeze()


def give_back() -> None:
    global _holders
    _holders -= 1
    if _holders == 0 and _saved is not None:
        interval, opencv_threads = _saved
        sys.setswitchinterval(interval)
        set_opencv_threads(opencv_threads)
        gc.unfreeze()
