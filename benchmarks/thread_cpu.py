"""CPU seconds per second of a running server, by thread: where the media path's CPU goes.

    python benchmarks/thread_cpu.py PID [--after 30] [--seconds 120]

Reads /proc/PID/task/*/stat twice, `--seconds` apart. Python threads have no OS names, so the
threads are named by `py-spy dump` when py-spy is installed (a measuring aid, not a dependency;
`pip install py-spy`), else by their OS name. Threads of one kind (vad_0, uvloop_1, gen-<call>) are
summed under one name: gen (generation), MainThread (event loop, RTP/SRTP/ICE), uvloop (aiortc's
VP8 and Opus encoders, the loop's default executor), vad, audio-decoder (aiortc's Opus decoder).
With one call running, everything but gen is that call's media path.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter


def thread_cpu(pid: int) -> dict[str, tuple[str, float]]:
    """{tid: (OS name, CPU seconds)} of each thread of the process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[tid] = stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def python_thread_names(pid: int) -> dict[str, str]:
    spy = shutil.which("py-spy", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if spy is None:
        return {}
    dump = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30).stdout
    return {m[1]: m[2] for m in re.finditer(r'Thread (\d+) \([^)]*\): "([^"]*)"', dump)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--after", type=float, default=0.0, help="wait this long before the first reading")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    time.sleep(args.after)
    first, t0 = thread_cpu(args.pid), time.monotonic()
    time.sleep(args.seconds)
    last, span = thread_cpu(args.pid), time.monotonic() - t0
    names = python_thread_names(args.pid)
    groups: Counter = Counter()
    for tid, (os_name, cpu) in last.items():
        name = re.sub(r"_\d+$", "", names.get(tid, os_name))
        name = "gen" if name.startswith("gen-") else name
        groups[name] += cpu - first.get(tid, (os_name, 0.0))[1]
    per_s = {name: round(cpu / span, 4) for name, cpu in groups.most_common()}
    print(json.dumps({"seconds": round(span, 1), "cpu_s_per_s": per_s,
                      "outside_generation": round(sum(v for k, v in per_s.items() if k != "gen"), 4)}, indent=1))


if __name__ == "__main__":
    main()
