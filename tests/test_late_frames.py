"""Honest numbers: a frame that is late is counted once (its slot's repeat, not also a drop), and a
stream with many repeats says so with a "degraded" message. A real call with no compute allowance, so
every window finishes after its first frames were due."""

import asyncio
import gc
import sys
import time

import pytest

from avatar.errors import ProfileError
from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from streaming.process_tuning import GIL_SWITCH_S
from streaming.server import AvatarServer


async def test_late_frames_are_counted_once_and_reported(tiny_profile, speech_hello):
    server = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.0), tiny_profile).start()
    client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", speech_hello, 16000)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            late = [m for m in client.received.of_type("degraded") if m["reason"] == "late_frames"]
            if late and len(client.received.of_type("stats")) >= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        await client.close()
        await server.stop()
    assert len(late) >= 1, client.received.of_type("degraded")
    assert late[0]["repeated_share"] > 0.1 and late[0]["behind_s"] > 0  # no allowance: windows finish late
    stats = client.received.of_type("stats")[-1]
    assert stats["frames_repeated"] > 0 and stats["frames_dropped"] == 0, stats  # once, as the repeat
    # Sent once per stretch of lateness, not every second.
    assert len(late) <= len(client.received.of_type("stats")) // 2 + 1


async def test_the_server_hands_the_gil_over_quickly_while_it_runs(tiny_profile):
    before = sys.getswitchinterval()
    server = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2), tiny_profile).start()
    try:
        assert sys.getswitchinterval() == GIL_SWITCH_S < before  # generation threads wait 0.5 ms, not 5
    finally:
        await server.stop()
    assert sys.getswitchinterval() == before


async def test_overlapping_servers_and_a_failed_start_leave_the_process_as_it_was(tiny_profile):
    before = sys.getswitchinterval(), gc.get_freeze_count()
    first = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2), tiny_profile).start()
    second = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2), tiny_profile).start()
    await first.stop()
    assert sys.getswitchinterval() == GIL_SWITCH_S  # the second still runs
    await second.stop()
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == before
    with pytest.raises(ProfileError):  # a start that fails gives back what it took
        await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2, output_mode="photo"), tiny_profile).start()
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == before


async def test_what_start_up_made_is_out_of_the_collectors_reach_while_the_server_runs(tiny_profile):
    server = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2), tiny_profile).start()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the profile, torch, aiortc: a full collection no longer walks them
        started = time.thread_time()
        gc.collect()
        assert time.thread_time() - started < 0.05  # (~0.2 CPU-s with the portrait profile, unfrozen)
    finally:
        await server.stop()
    assert gc.get_freeze_count() == 0
