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

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory(self) -> tuple[float, int]:
        """(RSS in MB, threads) of the server process."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


async def open_probe(server: Server) -> Probe:
    phrase = load_audio_file(ROOT / "tests" / "data" / "speech_hello.wav")  # looped: the caller keeps talking
    return await Probe.open(f"ws://127.0.0.1:{server.port}/ws", phrase, RATE, read_stamps=False, loop=True, timeout=60)
