"""A call survives a stalled server and lets go of everything when it ends (in-process server,
tiny-random, real aiortc callers). The long versions (SIGSTOP of a real `avatar serve`, 100 calls in
every hang-up style, a 30-minute soak) are benchmarks/robustness.py."""

import asyncio
import gc
import multiprocessing
import threading
import time
import weakref

import numpy as np
import pytest

from conftest import wait_until
from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from streaming.server import AvatarServer


@pytest.fixture
async def server(tiny_profile):
    srv = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2), tiny_profile).start()
    yield srv
    await srv.stop()


def the_call(srv):
    (call,) = [c for c in srv.calls.values() if c is not None]
    return call


@pytest.mark.parametrize("hang_up", ["bye", "close", "vanish"])
async def test_a_finished_call_is_freed_without_a_garbage_collection(server, speech_hello, hang_up):
    client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", speech_hello, 16000, read_stamps=False)
    gc.disable()  # only reference counting: a cycle would keep the call
    try:
        await wait_until(lambda: len(client.received.video) >= 5, 20)
        call = the_call(server)
        parts = {name: weakref.ref(getattr(call, name)) for name in
                 ("session", "worker", "pc", "intake", "detector", "video", "voice_track", "frames", "voice")}
        parts["call"] = weakref.ref(call)
        del call
        if hang_up == "bye":
            await client.send({"type": "bye"})
        elif hang_up == "vanish":
            client.ws.transport.abort()
        else:
            await client.close()
        await wait_until(lambda: not server.calls, 5)
        await asyncio.sleep(0.5)  # the closing tasks finish
        assert [name for name, ref in parts.items() if ref() is not None] == []
        assert not [t for t in threading.enumerate() if t.name.startswith("gen-")]
        assert not [p for p in multiprocessing.active_children() if p.name == "avatar-session"]
    finally:
        gc.enable()
        await client.close()


@pytest.mark.slow
async def test_a_stalled_server_keeps_to_its_clock(server, speech_hello):
    """The event loop stops for 1 s (as under a pause or a long garbage collection), then the input
    arrives in a burst. The timeline keeps to the clock (it owes nothing), the voice comes back, and
    the generation is at most a window and its compute behind what is due (it jumps; it does not
    work through the backlog). Whether every frame is then fresh depends on the machine's load: that
    figure is the benchmark's (benchmarks/robustness.py pause)."""
    client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", np.tile(speech_hello, 6), 16000,
                                   read_stamps=False)
    try:
        await wait_until(lambda: len(client.received.video) >= 50, 20)
        call = the_call(server)
        fpw = call.session.frames_per_window
        time.sleep(1.0)  # the loop stalls (the worker thread does not)
        resumed = time.monotonic()
        await asyncio.sleep(2.0)
        assert call.clock.media_now() - call.intake.end / 16000 < 0.3  # the silence filler's margin
        voiced = [float(np.sqrt(np.mean(pcm ** 2))) > 0.003 for at, _, pcm, _ in client.received.audio
                  if at > resumed + 1.0]
        assert np.mean(voiced) > 0.5
        made = call.worker.stats.recent[-1]
        compute = max(call.worker.stats.compute_s)
        behind_s = (call.clock.frame_playing(made["done"]) - made["first_frame"]) / 25
        assert behind_s <= fpw / 25 + compute + 0.2, (behind_s, compute)
    finally:
        await client.close()


async def test_a_call_that_never_connects_starts_no_clock_and_makes_no_window(server):
    """Answered, but the caller never applies the answer: no media path, so no clock and no window
    of silence made for nobody until the signaling deadline ends the call."""
    from benchmarks.slot_free import _raw_call

    ws, pc, _ = await _raw_call(f"ws://127.0.0.1:{server.port}/ws", wrong_fingerprint=False)
    try:
        await wait_until(lambda: any(c is not None and c.worker is not None for c in server.calls.values()), 30)
        call = the_call(server)
        await asyncio.sleep(1.5)  # the intake used to fill silence every 0.1 s from here on
        assert not call.connected.is_set() and not call.clock.started
        assert call.worker.stats.windows == 0 and call.voice_track.sent == 0
    finally:
        await pc.close()
        await ws.close()
