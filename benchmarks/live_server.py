"""The live server as the robustness harnesses (benchmarks/robustness.py) drive it: a real
`avatar serve --profile NAME` subprocess, and a real aiortc caller that keeps compact records of what
it receives (streaming.contrib.pyclient, over loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatar.audio import load_audio_file  # noqa: E402
from avatar.profiles import DEFAULT_PROFILE  # noqa: E402
from streaming.contrib.pyclient import CallClient  # noqa: E402

RATE = 16000


def load() -> str:
    return repr(os.getloadavg())


class Probe(CallClient):
    """A caller keeping compact records: video (arrival, pts, 16x16 grey thumbnail), voice (arrival, pts, rms)."""

    async def _record(self, track) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:  # the track ended
                return
            now = time.monotonic()
            if track.kind == "video":
                grey = frame.to_ndarray(format="gray")
                h, w = grey.shape
                thumb = grey[:h - h % 16, :w - w % 16].reshape(16, h // 16, 16, w // 16).mean(axis=(1, 3))
                self.received.video.append((now, frame.pts, thumb))
            else:
                pcm = frame.to_ndarray().astype(np.float32).reshape(-1) / 32768.0
                self.received.audio.append((now, frame.pts, float(np.sqrt(np.mean(pcm ** 2)))))


class Server:
    """`avatar serve --profile NAME` in a subprocess, from this checkout or another."""

    def __init__(self, tree: Path, max_sessions: int = 2, profile: str = DEFAULT_PROFILE, verbose: bool = False):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        module = "streaming.cli" if (tree / "streaming" / "cli.py").exists() else "avatar.cli"
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
        self.log = open(f"/tmp/robustness-server-{self.port}.log", "w")
        self.cmd = [sys.executable, "-m", module, *["-v"] * verbose, "serve", "--profile", profile,
                    "--port", str(self.port), "--max-sessions", str(max_sessions)]
        self.proc = subprocess.Popen(self.cmd, cwd=tree, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 180.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "avatar server: open" in Path(self.log.name).read_text():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            await asyncio.sleep(0.2)
        raise TimeoutError("the server did not start")

    def sessions(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
            return json.loads(r.read())["sessions"]

    def _tree(self) -> dict[int, list[str]]:
        """/proc/PID/stat fields of the server process and those it started (the calls' session
        processes and their fork server), all the way down."""
        stats = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
        tree, grew = {self.proc.pid}, True
        while grew:
            grew = False
            for pid, fields in stats.items():
                if int(fields[1]) in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        return {pid: stats[pid] for pid in tree if pid in stats}

    def cpu_s(self) -> float:
        """CPU seconds the server has used: its processes' (all threads), and those of its ended children."""
        ticks = sum(sum(int(f) for f in fields[11:15]) for fields in self._tree().values())
        return ticks / os.sysconf("SC_CLK_TCK")

    def memory(self) -> tuple[float, int]:
        """(memory in MB, threads) of the server's processes: their proportional set sizes (a page
        shared by several processes counted once in all), and their threads together."""
        pss_kb, threads = 0, 0
        for pid, fields in self._tree().items():
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            pss_kb += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:")))
            threads += int(fields[17])
        return pss_kb / 1024, threads

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


async def open_probe(server: Server) -> Probe:
    phrase = load_audio_file(ROOT / "tests" / "data" / "speech_hello.wav")  # looped: the caller keeps talking
    return await Probe.open(f"ws://127.0.0.1:{server.port}/ws", phrase, RATE, read_stamps=False, loop=True, timeout=60)
