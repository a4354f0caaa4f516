"""WHIP in, WHEP out, with real clients: Debian's simple-whip-client (GStreamer) publishes a WAV as the
session's voice; headless Chromium (the shipped WHEP page) and an aiortc peer watch it. Plus the
HTTP contract: status codes, headers, tokens, trickle fragments, slots."""

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streaming.broadcast import parse_sdpfrag
from streaming.config import ServerConfig
from streaming.protocol import WHIP_OFFER, ProtocolError, check_offer_sdp
from streaming.server import AvatarServer

WHIP_CLIENT = shutil.which("whip-client")  # Debian's simple-whip-client
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Debian 12's libnice links libgupnp-igd, which pulls in libsoup 3; whip-client links libsoup 2, and
# libsoup refuses to share a process with the other version (it aborts at start). libnice takes a
# missing UPnP agent (thread_new returning NULL) as "no UPnP", so a stand-in library without it lets
# the client run; UPnP port mapping plays no part on loopback.
NO_UPNP_C = """
void *gupnp_simple_igd_thread_new(void) { return 0; }
void gupnp_simple_igd_add_port(void) {}
void gupnp_simple_igd_remove_port_local(void) {}
unsigned long gupnp_simple_igd_get_type(void) { return 20 << 2; }
"""


@pytest.fixture
async def whip_server(tiny_profile):
    server = await AvatarServer(ServerConfig(port=0, token=TOKEN, compute_allowance_s=0.3, max_sessions=1,
                                             signaling_timeout_s=20), tiny_profile).start()
    try:
        yield server, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def aiortc_offer(*kinds_directions) -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    for kind, direction in kinds_directions:
        pc.addTransceiver(kind, direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


async def request(http, method, url, body=None, content_type="application/sdp", headers=AUTH):
    headers = dict(headers) | ({"Content-Type": content_type} if body is not None else {})
    async with http.request(method, url, data=body, headers=headers) as res:
        return res.status, res.headers, await res.text()


async def test_whip_http_contract(whip_server):
    server, base = whip_server
    pc, offer = await aiortc_offer(("audio", "sendonly"))
    async with aiohttp.ClientSession() as http:
        status, headers, _ = await request(http, "OPTIONS", f"{base}/whip", headers={})
        assert status == 204 and "POST" in headers["Allow"] and headers["Accept-Post"] == "application/sdp"
        status, headers, _ = await request(http, "OPTIONS", f"{base}/whep/any", headers={})
        assert status == 204 and headers["Accept-Post"] == "application/sdp"
        status, headers, _ = await request(http, "OPTIONS", f"{base}/healthz", headers={})
        assert status == 204 and "Accept-Post" not in headers
        status, headers, _ = await request(http, "PUT", f"{base}/whip", offer)
        assert status == 405 and "POST" in headers["Allow"]
        # Token first: nothing is looked at without it.
        status, headers, text = await request(http, "POST", f"{base}/whip", offer, headers={})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer") and "Bearer" in text
        status, _, _ = await request(http, "POST", f"{base}/whip", offer, headers={"Authorization": "Bearer nope"})
        assert status == 401
        status, headers, text = await request(http, "POST", f"{base}/whip", offer, content_type="application/json")
        assert status == 415 and "application/sdp" in text and headers["Accept-Post"] == "application/sdp"
        status, _, text = await request(http, "POST", f"{base}/whip", "v=0\r\nm=audio port RTP/AVP 0\r\n")
        assert status == 400 and "not valid SDP" in text
        no_audio = (await aiortc_offer(("video", "sendonly")))[1]
        status, _, text = await request(http, "POST", f"{base}/whip", no_audio)
        assert status == 400 and "one audio section" in text
        listen_only = (await aiortc_offer(("audio", "recvonly")))[1]
        status, _, text = await request(http, "POST", f"{base}/whip", listen_only)
        assert status == 400 and "audio section must send" in text
        status, _, text = await request(http, "POST", f"{base}/whip", offer + "a=x-pad:" + "x" * 70000 + "\r\n")
        assert status == 413 and "larger than" in text
        status, _, text = await request(http, "POST", f"{base}/whip?avatar=nobody", offer)
        assert status == 400 and "unknown avatar" in text
        assert not server.calls  # no refusal took a slot

        status, headers, answer = await request(http, "POST", f"{base}/whip?avatar=drawn", offer)
        assert status == 201 and headers["Content-Type"] == "application/sdp" and answer.startswith("v=0")
        location, etag = headers["Location"], headers["ETag"]
        assert headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
        watch = next(link for link in headers.getall("Link") if 'rel="alternate"' in link)
        watch = watch[watch.index("<") + 1:watch.index(">")]
        assert location.startswith("/whip/") and watch.startswith("/whep/") and location[6:] != watch[6:]
        assert len(server.calls) == 1
        # The only slot is taken: the next publisher is told to come back later.
        status, headers, text = await request(http, "POST", f"{base}/whip", offer)
        assert status == 503 and headers["Retry-After"] and "full" in text

        ufrag = next(line.split(":", 1)[1] for line in offer.splitlines() if line.startswith("a=ice-ufrag:"))
        pwd = next(line.split(":", 1)[1] for line in offer.splitlines() if line.startswith("a=ice-pwd:"))
        frag = (f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
                "a=candidate:1 1 UDP 2015363327 127.0.0.1 54029 typ host\r\na=end-of-candidates\r\n")
        sdpfrag = "application/trickle-ice-sdpfrag"
        status, _, _ = await request(http, "PATCH", base + location, frag, sdpfrag, AUTH | {"If-Match": etag})
        assert status == 204
        status, _, _ = await request(http, "PATCH", base + location, frag, sdpfrag, AUTH | {"If-Match": '"stale"'})
        assert status == 412
        status, _, text = await request(http, "PATCH", base + location, frag, sdpfrag, AUTH | {"If-Match": "*"})
        assert status == 422 and "ICE restart" in text
        restart = frag.replace(ufrag, "other")
        status, _, text = await request(http, "PATCH", base + location, restart, sdpfrag, AUTH | {"If-Match": etag})
        assert status == 422 and "ICE restart" in text
        status, headers, text = await request(http, "PATCH", base + location, frag, sdpfrag)
        assert status == 428 and "If-Match" in text and "ETag" not in headers
        # A refused restart keeps the session as it was (RFC 9725 4.3.3), trickle included.
        assert len(server.calls) == 1 and not next(iter(server.calls.values())).closed.is_set()
        status, _, _ = await request(http, "PATCH", base + location, frag, sdpfrag, AUTH | {"If-Match": etag})
        assert status == 204
        status, _, _ = await request(http, "PATCH", base + location, frag, "text/plain")
        assert status == 415
        status, _, _ = await request(http, "PATCH", f"{base}/whip/unknown", frag, sdpfrag)
        assert status == 404
        status, _, _ = await request(http, "POST", f"{base}/whep/unknown", offer)
        assert status == 404
        status, _, text = await request(http, "POST", base + watch, offer)  # sends audio, receives no video
        assert status == 400 and "video section" in text
        status, _, state = await request(http, "GET", base + location)
        assert status == 200 and f'"whep": "{watch}"' in state and '"viewers": 0' in state

        # A WHEP viewer: its own resource, trickle and DELETE; the session goes on without it.
        viewer_pc, viewer_offer = await aiortc_offer(("video", "recvonly"), ("audio", "recvonly"))
        status, headers, answer = await request(http, "POST", base + watch, viewer_offer)
        assert status == 201 and answer.startswith("v=0") and headers["Location"].startswith(watch + "/")
        viewer = headers["Location"]
        vfrag = "\r\n".join(line for line in viewer_offer.splitlines() if line.startswith("a=ice-")) + \
            "\r\nm=video 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 UDP 2015363327 127.0.0.1 54031 typ host\r\n"
        status, _, _ = await request(http, "PATCH", base + viewer, vfrag, sdpfrag, AUTH | {"If-Match": headers["ETag"]})
        assert status == 204
        status, _, _ = await request(http, "DELETE", base + viewer)
        assert status == 200 and len(server.calls) == 1
        status, _, _ = await request(http, "DELETE", base + viewer)
        assert status == 404
        await viewer_pc.close()

        status, _, _ = await request(http, "DELETE", base + location, headers={})
        assert status == 401 and len(server.calls) == 1
        status, _, _ = await request(http, "DELETE", base + location)
        assert status == 200 and not server.calls  # the slot is free at once
        status, _, _ = await request(http, "DELETE", base + location)
        assert status == 404
    await pc.close()


def test_sdpfrag_parsing():
    frag = parse_sdpfrag("a=ice-ufrag:ab\r\na=ice-pwd:cd\r\nm=audio 9 RTP/AVP 0\r\na=mid:audio0\r\n"
                         "a=candidate:1 1 UDP 2015363327 127.0.0.1 5000 typ host\r\n"
                         "m=video 9 RTP/AVP 0\r\na=mid:v\r\n"
                         "a=candidate:2 1 UDP 2015363327 127.0.0.1 5002 typ host\r\na=end-of-candidates\r\n")
    assert (frag.ufrag, frag.pwd) == ("ab", "cd")
    first, second, end = frag.candidates
    assert (first.sdpMid, first.sdpMLineIndex, first.port) == ("audio0", 0, 5000)
    assert (second.sdpMid, second.sdpMLineIndex, second.port) == ("v", 1, 5002)
    assert end is None


async def test_whip_offer_may_bundle_its_audio_on_the_video_transport():
    """GStreamer's max-bundle offer: video first, then audio with port 0 and a=bundle-only."""
    pc, offer = await aiortc_offer(("video", "sendonly"), ("audio", "sendonly"))
    await pc.close()
    port_0 = re.sub(r"m=audio \d+", "m=audio 0", offer)
    bundle_only = port_0.replace("a=mid:1\r\n", "a=mid:1\r\na=bundle-only\r\n")
    assert port_0 != offer and bundle_only.count("a=bundle-only") == 1
    check_offer_sdp(bundle_only, WHIP_OFFER, others=True)
    with pytest.raises(ProtocolError, match="audio section must send"):  # port 0 alone: a refused section
        check_offer_sdp(port_0, WHIP_OFFER, others=True)


# ---- the real clients ----------------------------------------------------------------------------
def speech_wav(path: Path, speech_hello: np.ndarray, repeats: int = 8) -> Path:
    """1 s of silence, then "hello", 1.5 s of silence, again and again: 16 kHz mono."""
    speech = np.round(speech_hello * 32767).astype(np.int16)
    gap, tail = np.zeros(16000, np.int16), np.zeros(24000, np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate([gap, speech, tail] * repeats).tobytes())
    return path


def no_upnp_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "no-upnp"
    folder.mkdir()
    (folder / "stub.c").write_text(NO_UPNP_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libgupnp-igd-1.0.so.4", "-o",
                    str(folder / "libgupnp-igd-1.0.so.4"), str(folder / "stub.c")], check=True)
    return folder


def publish(url: str, wav: Path, tmp_path: Path) -> subprocess.Popen:
    """simple-whip-client sending the WAV in real time (clocksync) as Opus, trickling its candidates, and
    a small camera-like video as OBS would (the server ignores it). With both, GStreamer offers
    max-bundle: the audio section is bundle-only, port 0."""
    audio = (f"filesrc location={wav} ! wavparse ! clocksync ! audioconvert ! audioresample ! "
             "audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=100 ssrc=1 ! queue ! "
             "application/x-rtp,media=audio,encoding-name=OPUS,payload=100")
    video = ("videotestsrc is-live=true pattern=ball ! video/x-raw,width=64,height=64,framerate=5/1 ! "
             "videoconvert ! vp8enc deadline=1 ! rtpvp8pay pt=96 ssrc=2 ! queue ! "
             "application/x-rtp,media=video,encoding-name=VP8,payload=96")
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(no_upnp_dir(tmp_path)), "HOME": str(tmp_path)}
    return subprocess.Popen([WHIP_CLIENT, "-u", url, "-t", TOKEN, "-o", "-A", audio, "-V", video], env=env,
                            stdout=open(tmp_path / "whip-client.log", "wb"), stderr=subprocess.STDOUT)


async def watch_in_page(browser, base: str, watch_id: str) -> None:
    """The shipped WHEP page in Chromium, watching /whep/{watch_id} until connected."""
    await browser.open_page()
    await browser.command("Page.navigate", url=f"{base}/demo/watch.html?whep=/whep/{watch_id}")
    await browser.until("window.watching && window.watching.start", "the watch page did not load")
    await browser.evaluate(f"window.watching.start('{TOKEN}')")
    await browser.until("window.watching.pc && window.watching.pc.connectionState === 'connected'",
                        "the page's viewer to connect")


async def until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class AiortcViewer:
    """A second WHEP viewer: an aiortc peer counting what it receives."""

    def __init__(self):
        self.pc = RTCPeerConnection()
        self.received = {"video": 0, "audio": 0}
        self.ended = asyncio.Event()
        self.pc.on("track", lambda track: asyncio.ensure_future(self._count(track)))

    async def _count(self, track) -> None:
        try:
            while True:
                await track.recv()
                self.received[track.kind] += 1
        except MediaStreamError:
            self.ended.set()

    async def watch(self, http, url: str) -> str:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        status, headers, answer = await request(http, "POST", url, self.pc.localDescription.sdp)
        assert status == 201, answer
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return headers["Location"]




@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(WHIP_CLIENT is None or shutil.which("gcc") is None,
                    reason="needs Debian's simple-whip-client and gcc (apt-get install simple-whip-client gcc)")
async def test_whip_publisher_drives_the_avatar_and_whep_viewers_watch(whip_server, tmp_path, speech_hello):
    from test_browser_demo import CHROMIUM, MEASURE_FPS, Chromium

    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium")
    server, base = whip_server
    client = publish(f"{base}/whip?avatar=drawn", speech_wav(tmp_path / "speech.wav", speech_hello), tmp_path)
    # No getUserMedia on a watch page, so Chromium would hide its addresses behind mDNS names.
    browser = Chromium(tmp_path / "profile", tmp_path / "speech.wav", disable_features=("WebRtcHideLocalIpsWithMdns",))
    viewer = AiortcViewer()
    try:
        broadcast = await until(lambda: next(iter(server.whip.broadcasts.values()), None), 30, "the WHIP POST")
        call = broadcast.call
        await until(call.connected.is_set, 20, "the publisher's connection")
        # The publisher's speech reaches the VAD and the engine: speech starts, windows with speech.
        await until(lambda: any(e["event"] == "speechstart" for e in call.vad_events), 30, "a speech start")
        await until(lambda: call.worker.stats.windows > call.worker.stats.idle_windows, 20, "a speech window")

        await watch_in_page(browser, base, broadcast.watch_id)
        sent0 = call.video.sent
        playback = await browser.evaluate(MEASURE_FPS)  # over 4 s
        playback["server_fps"] = (call.video.sent - sent0) / 4
        playback["error"] = await browser.evaluate("window.watching.error")
        shown = json.dumps(playback)
        print("whep playback:", shown)  # pytest -s shows the figures
        assert playback["width"] == 128 and playback["hasAudio"] == 1 and not playback["paused"], shown
        # The server sends 25 fps; what a browser decodes and paints also depends on the machine's load
        # (on a loaded 2-core box its painting lags first).
        assert playback["server_fps"] >= 23 and playback["decoded"] >= 20 and playback["presented"] >= 15, shown
        assert not playback["error"], shown
        async with aiohttp.ClientSession() as http:
            # A second viewer at once: both get the avatar and the voice.
            viewer_location = await viewer.watch(http, f"{base}/whep/{broadcast.watch_id}")
            assert len(broadcast.viewers) == 2
            await until(lambda: viewer.received["video"] > 50 and viewer.received["audio"] > 100, 20,
                        "the second viewer's frames")
            page_frames = await browser.evaluate("document.getElementById('video').getVideoPlaybackQuality()"
                                                 ".totalVideoFrames")
            await asyncio.sleep(1.0)
            assert await browser.evaluate("document.getElementById('video').getVideoPlaybackQuality()"
                                          ".totalVideoFrames") > page_frames  # the page still plays

            # The page's Stop sends DELETE for its viewer only; the session and the other viewer go on.
            await browser.evaluate("window.watching.stop()")
            await until(lambda: len(broadcast.viewers) == 1, 10, "the page's viewer to leave")
            assert not call.closed.is_set()
            status, _, _ = await request(http, "DELETE", base + viewer_location)
            assert status == 200 and not broadcast.viewers

            viewer2 = AiortcViewer()
            await viewer2.watch(http, f"{base}/whep/{broadcast.watch_id}")
            await until(lambda: viewer2.received["video"] > 10, 20, "the next viewer's frames")
            # The publisher hangs up (SIGTERM: simple-whip-client sends DELETE): the session, its
            # viewers and its slot all end.
            client.send_signal(signal.SIGTERM)
            assert await until(lambda: client.poll() is not None, 15, "whip-client to exit") and client.returncode == 0
            await asyncio.wait_for(viewer2.ended.wait(), 15)
            await until(lambda: not server.calls and call.closed.is_set(), 10, "the slot to be freed")
            status, _, _ = await request(http, "POST", f"{base}/whep/{broadcast.watch_id}",
                                         viewer.pc.localDescription.sdp)
            assert status == 404
            await viewer2.pc.close()
    finally:
        if client.poll() is None:
            client.kill()
        await viewer.pc.close()
        await browser.close()
    log = (tmp_path / "whip-client.log").read_text(errors="replace")
    assert "DTLS connected" in log and "[trickle]" not in log, log[-2000:]  # every PATCH got its 204


async def test_whep_watches_a_websocket_call_only_when_it_opts_in(whip_server, speech_hello):
    """A websocket call with the offer option `watch` gets a WHEP path in its answer; a player there
    gets the avatar and the re-timed voice while the caller keeps its own; a call without it has none.
    When the caller hangs up, the player's tracks end and the path is gone."""
    from streaming.contrib.pyclient import CallClient

    server, base = whip_server
    server.config.max_sessions = 2
    url = f"ws://127.0.0.1:{server.port}/ws?token={TOKEN}"
    private = await CallClient.open(url, speech_hello, 16000, read_stamps=False)
    watched = await CallClient.open(url, speech_hello, 16000, read_stamps=False, loop=True, offer_extra={"watch": True})
    viewer = AiortcViewer()
    try:
        assert "watch" not in private.answer and watched.answer["watch"].startswith("/whep/")
        assert server.whip.watched and not server.whip.broadcasts  # no WHIP session: nothing to end by URL
        async with aiohttp.ClientSession() as http:
            status, _, _ = await request(http, "POST", base + watched.answer["watch"], "v=0", headers={})
            assert status == 401  # the server's token still applies
            await viewer.watch(http, base + watched.answer["watch"])
            await until(lambda: viewer.received["video"] > 25 and viewer.received["audio"] > 50, 30,
                        "the player's frames")
            caller_frames = len(watched.received.video)
            await asyncio.sleep(2.0)
            assert len(watched.received.video) > caller_frames + 20  # the caller still gets its own (25 fps
            # on a quiet machine; the bar leaves room for a loaded one)
            (call,) = [c for c in server.calls.values() if c is not None and c.id == watched.ready["call"]]
            await watched.send({"type": "bye"})
            await asyncio.wait_for(viewer.ended.wait(), 10)
            await until(lambda: call.closed.is_set() and not server.whip.watched, 10, "the watch to end")
            status, _, _ = await request(http, "POST", base + watched.answer["watch"], viewer.pc.localDescription.sdp)
            assert status == 404
            assert len(private.received.video) > 25 and not any(
                c.closed.is_set() for c in server.calls.values() if c is not None)
    finally:
        await viewer.pc.close()
        await watched.close()
        await private.close()
