"""A peer that vanishes without a word (its process killed or stopped, so its UDP traffic just ends)
is freed within a bounded time by the media watchdog (streaming/liveness.py), for each kind of peer:
a websocket caller whose socket stays open, a WHIP publisher, a WHEP viewer. Real aiortc peers in
processes of their own (tests/peer_process.py), on loopback; the other call or viewer goes on."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from avatar.samples import babble
from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from streaming.server import AvatarServer

ROOT = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "peer_process.py"
TOKEN = "s3cret"
MEDIA_TIMEOUT_S = ServerConfig.media_timeout_s  # the shipped setting
BOUND_S = MEDIA_TIMEOUT_S + 1.5  # the timeout, a poll, the close, and a busy machine's slack

pytestmark = pytest.mark.slow


@pytest.fixture
async def server(tiny_profile):
    srv = await AvatarServer(ServerConfig(port=0, token=TOKEN, compute_allowance_s=0.3, max_sessions=2,
                                          signaling_timeout_s=30), tiny_profile).start()
    try:
        yield srv
    finally:
        await srv.stop()


class PeerProcess:
    """tests/peer_process.py running; `line(prefix)` waits for its next line starting with prefix.
    (subprocess.Popen rather than asyncio's: an asyncio transport left to the collector after the
    test's loop has closed raises in __del__.)"""

    @classmethod
    async def start(cls, *args: str) -> "PeerProcess":
        self = cls()
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, str(PEER), *args], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        return self

    async def line(self, prefix: str, timeout: float = 40.0) -> str:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline), timeout)
            if not line:
                raise AssertionError(f"the peer process ended before printing {prefix!r}")
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"timed out waiting for the peer process to print {prefix!r}")

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> float:
        self.proc.send_signal(sig)
        return time.monotonic()

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


async def until(predicate, timeout: float, what: str) -> float:
    """The monotonic time at which predicate() first held (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic()


async def test_a_callers_vanished_media_frees_its_slot_while_its_socket_stays_open(server):
    """The websocket stays with the test process (it answers pings); the media peer is killed."""
    url = f"ws://127.0.0.1:{server.port}/ws?token={TOKEN}"
    other = await CallClient.open(url, babble(4.0, 16000, 1), 16000, read_stamps=False, loop=True)
    media = await PeerProcess.start("media")
    try:
        offer = json.loads(await media.line("{"))
        async with connect(url, max_size=None, max_queue=None, close_timeout=1.0) as ws:
            messages = []

            async def read() -> None:
                async for raw in ws:
                    messages.append(json.loads(raw))
            reader = asyncio.ensure_future(read())
            await until(lambda: any(m["type"] == "ready" for m in messages), 20, "ready")
            call_id = next(m for m in messages if m["type"] == "ready")["call"]
            await ws.send(json.dumps({"type": "offer", "sdp": offer["sdp"]}))
            await until(lambda: any(m["type"] == "answer" for m in messages), 30, "the answer")
            answer = next(m for m in messages if m["type"] == "answer")
            media.send(json.dumps({"sdp": answer["sdp"]}))
            await media.line("frames", 30)
            await until(lambda: server.calls.get(call_id) is not None and server.calls[call_id].connected.is_set(),
                        20, "the call to connect")
            other_call = next(c for i, c in server.calls.items() if i != call_id)
            await asyncio.sleep(1.0)  # both calls running

            killed = media.signal(signal.SIGKILL)
            freed = await until(lambda: call_id not in server.calls, 30, "the slot to be freed")
            print(f"websocket call: media killed -> slot freed in {freed - killed:.2f} s")
            assert freed - killed <= BOUND_S
            await until(lambda: any(m["type"] == "close" for m in messages), 5, "the caller to be told")
            reader.cancel()
        # The other call went on all along and still does.
        frames = len(other.received.video)
        await asyncio.sleep(1.0)
        assert not other_call.closed.is_set() and len(other.received.video) > frames + 15
        assert list(server.calls) == [other_call.id]
    finally:
        media.end()
        await other.close()


async def test_a_vanished_whep_viewer_and_whip_publisher_are_freed(server):
    from test_whip import AUTH, AiortcViewer, request

    base = f"http://127.0.0.1:{server.port}"
    publisher = await PeerProcess.start("whip", f"{base}/whip?avatar=drawn", TOKEN)
    viewer_a = viewer_b = None
    try:
        await publisher.line("location")
        broadcast = next(iter(server.whip.broadcasts.values()))
        call = broadcast.call
        await until(call.connected.is_set, 30, "the publisher's connection")
        watch = f"{base}/whep/{broadcast.watch_id}"
        viewer_a = await PeerProcess.start("whep", watch, TOKEN)
        await viewer_a.line("location")
        viewer_b = AiortcViewer()
        async with aiohttp.ClientSession() as http:
            await viewer_b.watch(http, watch)
            await until(lambda: len(broadcast.viewers) == 2 and all(v.connected.is_set()
                                                                    for v in broadcast.viewers.values()),
                        30, "both viewers to connect")
            await viewer_a.line("frames", 30)
            await until(lambda: viewer_b.received["video"] > 10, 30, "the in-process viewer's frames")

            # A viewer stopped (SIGSTOP: its sockets stay, nothing more comes from it) is dropped.
            stopped = viewer_a.signal(signal.SIGSTOP)
            dropped = await until(lambda: len(broadcast.viewers) == 1, 30, "the stopped viewer to be dropped")
            print(f"WHEP viewer: stopped -> dropped in {dropped - stopped:.2f} s")
            assert dropped - stopped <= BOUND_S
            frames = viewer_b.received["video"]
            await asyncio.sleep(1.0)
            assert viewer_b.received["video"] > frames + 15 and not call.closed.is_set()

            # A viewer that closes its peer connection without DELETE: seen at once (DTLS close_notify).
            closed = time.monotonic()
            await viewer_b.pc.close()
            dropped = await until(lambda: not broadcast.viewers, 10, "the closed viewer to be dropped")
            print(f"WHEP viewer: closed without DELETE -> dropped in {dropped - closed:.2f} s")
            assert dropped - closed < 2.0

            # The publisher killed: the session and the slot end.
            killed = publisher.signal(signal.SIGKILL)
            freed = await until(lambda: not server.calls, 30, "the slot to be freed")
            print(f"WHIP publisher: killed -> slot freed in {freed - killed:.2f} s")
            assert freed - killed <= BOUND_S and call.closed.is_set()
            status, _, _ = await request(http, "GET", f"{base}/whip/{broadcast.id}", headers=AUTH)
            assert status == 404
    finally:
        for peer in (publisher, viewer_a):
            if peer is not None:
                peer.end()
        if viewer_b is not None:
            await viewer_b.pc.close()


async def test_a_stopped_gstreamer_publisher_is_freed(server, tmp_path, speech_hello):
    """Debian's simple-whip-client (GStreamer) stopped with SIGSTOP: its sockets stay open, its
    packets stop; it never sends DELETE."""
    from test_whip import WHIP_CLIENT, publish, speech_wav

    if WHIP_CLIENT is None or shutil.which("gcc") is None:
        pytest.skip("needs Debian's simple-whip-client and gcc (apt-get install simple-whip-client gcc)")
    base = f"http://127.0.0.1:{server.port}"
    client = publish(f"{base}/whip?avatar=drawn", speech_wav(tmp_path / "speech.wav", speech_hello), tmp_path)
    try:
        await until(lambda: server.whip.broadcasts, 30, "the WHIP POST")
        broadcast = next(iter(server.whip.broadcasts.values()))
        await until(broadcast.call.connected.is_set, 30, "the publisher's connection")
        await asyncio.sleep(1.0)
        client.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        freed = await until(lambda: not server.calls, 30, "the slot to be freed")
        print(f"simple-whip-client: stopped -> slot freed in {freed - stopped:.2f} s")
        assert freed - stopped <= BOUND_S and broadcast.call.closed.is_set()
    finally:
        client.send_signal(signal.SIGCONT)
        client.kill()
        client.wait()


@pytest.mark.browser
async def test_a_live_chromium_viewer_is_not_taken_for_gone(server, tmp_path, speech_hello):
    """The other side of the watchdog: Chromium watching (the shipped WHEP page) only receives, so its
    RTCP reports alone must keep it; it is still there well past the timeout, and still playing."""
    from test_browser_demo import CHROMIUM, Chromium
    from test_whip import speech_wav, watch_in_page

    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium")
    base = f"http://127.0.0.1:{server.port}"
    publisher = await PeerProcess.start("whip", f"{base}/whip?avatar=drawn", TOKEN)
    browser = Chromium(tmp_path / "profile", speech_wav(tmp_path / "speech.wav", speech_hello),
                       disable_features=("WebRtcHideLocalIpsWithMdns",))
    try:
        await publisher.line("location")
        broadcast = next(iter(server.whip.broadcasts.values()))
        await watch_in_page(browser, base, broadcast.watch_id)
        (viewer,) = broadcast.viewers.values()
        await until(viewer.connected.is_set, 10, "the server's side of the viewer")
        frames = "document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"
        before = await browser.evaluate(frames)
        await asyncio.sleep(2 * MEDIA_TIMEOUT_S)
        assert list(broadcast.viewers.values()) == [viewer] and viewer.pc is not None
        assert await browser.evaluate(frames) > before
    finally:
        publisher.end()
        await browser.close()
