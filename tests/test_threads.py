"""render, bench and eval pick torch's thread count as the server does; --threads overrides."""

import os
import subprocess
import sys

import cv2
import pytest
import torch

from avatar import threads
from avatar.threads import generation_cores, set_torch_threads, torch_threads


def test_the_policy_leaves_a_core_and_shares_the_rest(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)
    assert [torch_threads(n) for n in (1, 2, 3, 7, 8, 20)] == [7, 3, 2, 1, 1, 1]
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert torch_threads() == 1  # the busy 2-core box: one thread
    monkeypatch.setattr(threads.os, "cpu_count", lambda: None)
    assert torch_threads() == 1


def test_generation_cores_share_what_the_media_paths_leave(monkeypatch):
    """The tiny profile needs ~0.77 of a core at full steps: one call on 2 cores has it, two do not
    (0.6 each), so they run one step (~0.57) instead of both falling behind; 16 cores hold 8 calls."""
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert [round(generation_cores(n), 3) for n in (0, 1, 2, 3)] == [1.4, 1.4, 0.6, 0.333]
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)
    assert generation_cores(8) > 1.0


def test_threads_flag_then_environment_then_policy(monkeypatch):
    before, opencv_before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert set_torch_threads(None) == 3 == torch.get_num_threads() == cv2.getNumThreads()
        assert set_torch_threads(2) == 2 == torch.get_num_threads() == cv2.getNumThreads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set by the user: torch's own reading stands
        torch.set_num_threads(1)
        assert set_torch_threads(None) == 1 == cv2.getNumThreads()
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(opencv_before)


async def test_the_server_sizes_opencvs_pool_as_a_full_servers_calls_and_restores_it(monkeypatch, tiny_profile):
    from streaming.config import ServerConfig
    from streaming.server import AvatarServer

    before = cv2.getNumThreads()
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 9)
    server = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2, max_sessions=2), tiny_profile).start()
    try:
        assert cv2.getNumThreads() == 4  # torch_threads(2) on 9 cores
    finally:
        await server.stop()
    assert cv2.getNumThreads() == before


def test_server_uses_the_same_policy(monkeypatch):
    from streaming.config import ServerConfig
    from streaming.server import AvatarServer

    monkeypatch.setattr(threads.os, "cpu_count", lambda: 9)
    server = AvatarServer(ServerConfig(port=0))
    assert server.torch_threads(running=1) == 8 and server.torch_threads(running=2) == 4
    assert server.generation_cores() == pytest.approx(7.0)  # no call yet: as for the first
    server._vad_pool.shutdown()


def bench(*args):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return subprocess.run([sys.executable, "-m", "avatar.cli", "bench", "--profile", "tiny-random", "--seconds", "1",
                           *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_bench_reports_the_threads_it_ran_with():
    default = bench()
    assert default.returncode == 0, default.stderr
    assert f"{torch_threads()} threads)" in default.stdout
    forced = bench("--threads", "2")
    assert forced.returncode == 0, forced.stderr
    assert "2 threads)" in forced.stdout
    refused = bench("--threads", "0")
    assert refused.returncode == 2 and "--threads: must be at least 1" in refused.stderr


def test_render_and_eval_take_the_flag_too():
    from avatar.cli import build_parser

    for command in (["render", "--image", "a.png", "--audio", "a.wav", "--out", "o.mp4"], ["eval"]):
        assert build_parser().parse_args([*command, "--threads", "3"]).threads == 3
        assert build_parser().parse_args(command).threads is None
