"""The server in this process, with real aiortc callers (tiny-random profile): HTTP routes, the token
and origin gates, malformed signaling, uploads, limits, two callers at once, a vanishing caller."""

import asyncio
import base64
import io
import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from benchmarks.fuzz_cases import OFFER_SDP
from conftest import started_servers, wait_until
from streaming.contrib.pyclient import CallClient
from streaming.watch import PONG_GRACE_S, WATCH_POLL_S


@pytest.fixture
def speech(speech_hello):
    """The phrase after some silence."""
    def make(seconds_silence_before: float = 0.5) -> np.ndarray:
        return np.concatenate([np.zeros(int(seconds_silence_before * 16000), np.float32), speech_hello])

    return make


@pytest.fixture
async def server(tiny_profile):
    async for start in started_servers(tiny_profile, 0.2):
        yield start


def ws_url(srv, token=None) -> str:
    return f"ws://127.0.0.1:{srv.port}/ws" + (f"?token={token}" if token else "")


async def http_get(srv, path: str, headers: dict | None = None):
    def fetch():
        request = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}", headers=headers or {})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        try:
            with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    return await asyncio.to_thread(fetch)


async def next_message(ws, kind: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01)))
        if msg["type"] == kind:
            return msg


async def test_http_routes(server):
    srv = await server()
    status, _, body = await http_get(srv, "/healthz")
    assert status == 200 and json.loads(body) == {"ok": True, "profile": "tiny-random", "sessions": 0,
                                                  "max_sessions": 2}
    status, headers, _ = await http_get(srv, "/")
    assert status == 302 and headers["Location"] == "/demo/"
    status, headers, body = await http_get(srv, "/demo/")
    assert status == 200 and b"<video" in body and headers["Content-Type"].startswith("text/html")
    status, headers, body = await http_get(srv, "/src/index.js")
    assert status == 200 and b"export async function connect" in body
    assert headers["Content-Type"] == "text/javascript"
    status, _, body = await http_get(srv, "/avatars.json")
    assert json.loads(body) == {"avatars": ["drawn", "astronaut"]}
    status, headers, body = await http_get(srv, "/avatars/drawn.png")
    assert status == 200 and body[:4] == b"\x89PNG"
    assert (await http_get(srv, "/avatars/nobody.png"))[0] == 404
    assert (await http_get(srv, "/../pyproject.toml"))[0] == 404
    assert (await http_get(srv, "/ws"))[0] == 426  # plain HTTP on the websocket path


async def test_wrong_token_or_origin_gets_nothing_but_a_refusal(server):
    srv = await server(token="s3cret")
    for url in (ws_url(srv), ws_url(srv, "wrong")):
        with pytest.raises(InvalidStatus) as info:
            await connect(url)
        assert info.value.response.status_code == 401 and info.value.response.body == b"unauthorized"
    for foreign in ("http://evil.example", f"https://127.0.0.1:{srv.port}", f"http://127.0.0.1:{srv.port + 1}"):
        with pytest.raises(InvalidStatus) as info:
            await connect(ws_url(srv, "s3cret"), origin=foreign)
        assert info.value.response.status_code == 403
    assert json.loads((await http_get(srv, "/healthz"))[2])["sessions"] == 0  # no slot was taken
    async with connect(ws_url(srv, "s3cret"), origin=f"http://127.0.0.1:{srv.port}") as ws:
        ready = await next_message(ws, "ready")
        assert ready["profile"] == "tiny-random" and ready["avatars"] == ["drawn", "astronaut"]


async def test_malformed_signaling_gets_errors_and_never_a_crash(server, speech):
    srv = await server()
    async with connect(ws_url(srv)) as ws:
        await next_message(ws, "ready")
        bad = [b"\x00binary", "{", '{"type": "offer", "sdp": 1}', '{"type": "warp"}',
               '{"type": "interrupt"}',  # no call yet
               '{"type": "offer", "sdp": "m=audio 0 RTP/AVP 0\\r\\nm=video\\r\\nnonsense"}',
               json.dumps({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}),
               json.dumps({"type": "offer", "sdp": OFFER_SDP, "avatar": "nobody"}),
               json.dumps({"type": "avatar", "id": "../../etc"})]
        codes = []
        for raw in bad:
            await ws.send(raw)
            codes.append((await next_message(ws, "error"))["code"])
        assert codes == ["bad_message", "bad_message", "bad_message", "bad_message", "bad_state",
                         "bad_sdp", "bad_sdp", "bad_avatar", "bad_avatar"]
        await ws.send('{"type": "ping"}')
        assert (await next_message(ws, "pong"))["type"] == "pong"  # still serving
    # and the server still takes a real call afterwards
    client = await CallClient.open(ws_url(srv), speech(), 16000)
    try:
        assert client.answer["fps"] == 25
    finally:
        await client.close()


def png_data_url(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (180, 140, 120)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


async def test_uploads_are_checked_and_a_good_one_is_used(server, speech):
    srv = await server(max_upload_bytes=200_000, max_image_side=256)
    async with connect(ws_url(srv)) as ws:
        await next_message(ws, "ready")
        await ws.send(json.dumps({"type": "avatar", "image": png_data_url(300, 100)}))
        too_big = await next_message(ws, "error")
        assert too_big["code"] == "image_too_large" and "256x256" in too_big["message"]
        await ws.send(json.dumps({"type": "avatar", "image": "data:image/png;base64," + "A" * 300_000}))
        assert (await next_message(ws, "error"))["code"] == "image_too_large"
        await ws.send(json.dumps({"type": "avatar", "image": base64.b64encode(b"GIF89a junk").decode()}))
        assert (await next_message(ws, "error"))["code"] == "bad_image"
        # Far over the limit (but under 4x it) is still read and refused with a code...
        await ws.send(json.dumps({"type": "avatar", "image": "A" * 1_000_000}))
        assert (await next_message(ws, "error"))["code"] == "image_too_large"
        # ... beyond that the websocket layer refuses the message itself (1009) before reading it.
        await ws.send(json.dumps({"type": "avatar", "image": "A" * 1_200_000}))
        with pytest.raises(ConnectionClosed):
            await next_message(ws, "error")
        assert ws.close_code == 1009
    client = await CallClient.open(ws_url(srv), speech(), 16000, offer_extra={"image": png_data_url(200, 160)})
    try:
        await client.wait_for("stats", timeout=10)
    finally:
        await client.close()


async def test_signaling_timeout_closes_an_idle_socket(server):
    srv = await server(signaling_timeout_s=0.5)
    async with connect(ws_url(srv)) as ws:
        await next_message(ws, "ready")
        assert (await next_message(ws, "error"))["code"] == "timeout"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008
    assert json.loads((await http_get(srv, "/healthz"))[2])["sessions"] == 0


@pytest.mark.slow
async def test_two_callers_third_refused_vanished_caller_frees_its_slot(server, speech):
    srv = await server(max_sessions=2)
    a = await CallClient.open(ws_url(srv), speech(), 16000)
    b = await CallClient.open(ws_url(srv), speech(1.5), 16000)
    try:
        # Each gets its own stream: its own frames, numbered from its own clock.
        await wait_until(lambda: len(a.received.video) >= 30 and len(b.received.video) >= 30, 20)
        for client in (a, b):
            stamps = [i for _, _, i in client.received.video if i is not None]
            assert len(stamps) >= 25 and stamps == sorted(stamps)
        assert a.pc.remoteDescription.sdp != b.pc.remoteDescription.sdp

        async with connect(ws_url(srv)) as third:
            refusal = json.loads(await asyncio.wait_for(third.recv(), 5))
            assert refusal["type"] == "error" and refusal["code"] == "busy" and "full" in refusal["message"]
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(third.recv(), 5)
            assert third.close_code == 1013

        # Caller a vanishes: its socket drops without a goodbye, its peer connection is never closed.
        # Its message loop ends at once: no keep-alive is needed to free the slot.
        a.ws.transport.abort()
        freed_in = await wait_until(lambda: len(srv.calls) == 1, timeout=5.0)
        assert freed_in < srv.config.ping_timeout_s, freed_in  # measured 0.05 s
        frames_b = len(b.received.video)
        await asyncio.sleep(1.0)
        assert len(b.received.video) >= frames_b + 15  # b's stream did not stall

        c = await CallClient.open(ws_url(srv), speech(), 16000)  # the slot is usable again

        # Caller b vanishes silently: its socket stays open but nothing comes back (no FIN, no pongs).
        # The keep-alive frees it: one ping unanswered past its timeout and grace, seen within a poll.
        b.ws.transport.pause_reading()
        freed_in = await wait_until(lambda: len(srv.calls) == 1, timeout=5.0)
        cfg = srv.config
        keep_alive_s = cfg.ping_interval_s + cfg.ping_timeout_s + PONG_GRACE_S + WATCH_POLL_S
        assert cfg.ping_timeout_s <= freed_in < keep_alive_s + 1.0, (freed_in, keep_alive_s)  # measured 1.42 s
        await c.close()
    finally:
        await a.close()
        await b.close()


@pytest.mark.slow
async def test_control_messages_interrupt_prompt_avatar(server, tiny_profile, speech):
    srv = await server()
    client = await CallClient.open(ws_url(srv), speech(0.2), 16000)
    try:
        await client.wait_for("vad", timeout=10)
        await client.send({"type": "prompt", "text": "a calm smile"})
        assert (await client.wait_for("prompt"))["ok"] is True
        (call,) = [c for c in srv.calls.values() if c is not None]
        made_before = call.worker.stats.windows
        await client.send({"type": "interrupt"})
        interrupted = await client.wait_for("interrupted", timeout=5)
        made_after = call.worker.stats.windows
        # Speech is dropped from the first frame of the window after the last one made.
        windows = interrupted["t"] * 25 / tiny_profile.frames_per_window
        assert windows == pytest.approx(round(windows), abs=1e-6) and made_before <= round(windows) <= made_after
        await client.send({"type": "avatar", "image": png_data_url(96, 96)})
        switched = await client.wait_for("avatar", timeout=10)
        assert switched["ok"] is True and switched["frame"] % tiny_profile.frames_per_window == 0
        await client.send({"type": "avatar", "id": "nobody"})
        assert (await client.wait_for("error"))["code"] == "bad_avatar"  # refused; the call goes on
        stats = await client.wait_for("stats", timeout=5, count=3)
        assert stats["engine"]["windows"] >= 2
        assert 0 <= stats["latency"]["network_rtt_s"] < 1.0  # from the caller's RTCP reports
        frames = len(client.received.video)
        await asyncio.sleep(0.5)
        assert len(client.received.video) > frames
    finally:
        await client.close()


@pytest.mark.slow
async def test_a_caller_gone_quiet_keeps_an_idling_face_at_full_rate(server, speech):
    srv = await server()
    client = await CallClient.open(ws_url(srv), speech(0.2)[:16000], 16000)
    try:
        await client.wait_for("stats", timeout=10)
        client.source.stop()  # the caller's audio stops: no more packets at all
        (call,) = [c for c in srv.calls.values() if c is not None]
        windows, frames, started = call.worker.stats.windows, len(client.received.video), time.monotonic()
        # The server fills the silence: the engine keeps making (idle) windows, the video keeps going.
        await wait_until(lambda: call.worker.stats.windows >= windows + 3 and call.worker.stats.idle_windows >= 2,
                         timeout=15)
        elapsed = time.monotonic() - started
        assert len(client.received.video) - frames >= 0.6 * 25 * elapsed
    finally:
        await client.close()


async def test_a_caller_offering_its_camera_is_answered_send_only(server):
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    srv = await server()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    pc.addTrack(VideoStreamTrack())  # sendrecv video
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with connect(ws_url(srv)) as ws:
            await next_message(ws, "ready")
            await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
            answer = await next_message(ws, "answer")
        video = answer["sdp"].split("m=video")[1]
        assert "a=sendonly" in video and first_video_codec(answer["sdp"]) == "video/VP8"  # the caller's first
    finally:
        await pc.close()


def video_codecs(sdp: str) -> dict[int, str]:
    """The video section's codecs, payload type -> mime type, in the SDP's order."""
    from aiortc.sdp import SessionDescription

    (video,) = [m for m in SessionDescription.parse(sdp).media if m.kind == "video"]
    return {c.payloadType: c.mimeType for c in video.rtp.codecs}


def first_video_codec(sdp: str) -> str:
    return next(iter(video_codecs(sdp).values()))


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["video/H264", "video/VP8"])
async def test_the_video_codec_is_the_one_the_caller_offers(server, speech, codec):
    srv = await server()
    client = await CallClient.open(ws_url(srv), speech(0.2), 16000, video_codecs=[codec], read_stamps=False)
    try:
        assert first_video_codec(client.answer["sdp"]) == codec
        (receiver,) = [t.receiver for t in client.pc.getTransceivers() if t.kind == "video"]
        payload_types, handle = set(), receiver._handle_rtp_packet

        async def record(packet, arrival_time_ms):  # the codec of each RTP packet that really arrives
            payload_types.add(packet.payload_type)
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = record
        await wait_until(lambda: len(client.received.video) > 0, timeout=15)
        frames, started = len(client.received.video), time.monotonic()
        await asyncio.sleep(3)
        assert len(client.received.video) - frames >= 0.7 * 25 * (time.monotonic() - started)
        by_type = video_codecs(client.answer["sdp"])
        assert {by_type[pt] for pt in payload_types} - {"video/rtx"} == {codec}
    finally:
        await client.close()


@pytest.mark.slow
async def test_each_utterance_and_interrupt_tells_where_the_voice_stops(server, speech_hello):
    srv = await server()
    gap = np.zeros(int(2.5 * 16000), np.float32)
    hello = speech_hello[:int(0.9 * 16000)]  # its first utterance (0 to 0.8 s); more speech follows it
    pcm = np.concatenate([gap[:3200], hello, gap, speech_hello, gap])
    client = await CallClient.open(ws_url(srv), pcm, 16000, read_stamps=False)
    try:
        def speechends():
            return [m for m in client.received.of_type("vad") if m["event"] == "speechend"]

        # An utterance left alone plays to its end.
        await wait_until(lambda: speechends(), timeout=10)
        first = speechends()[0]
        assert first["cut"] is False and first["played_to"] == first["t"]
        assert first["played_to_input_t"] == first["input_t"]
        # An interrupt in the silence after it (its frames made by now) cuts nothing.
        (call,) = [c for c in srv.calls.values() if c is not None]
        end_window = first["t"] * 25 / call.session.frames_per_window
        await wait_until(lambda: call.worker.stats.windows > end_window + 1, timeout=10)
        await client.send({"type": "interrupt"})
        quiet = await client.wait_for("interrupted", timeout=5)
        assert quiet["cut"] is False and quiet["t"] > first["t"]
        # An interrupt as the next utterance starts cuts it: its end says where it stopped playing.
        start = await client.wait_for("vad", timeout=10, count=3)
        assert start["event"] == "speechstart"
        await client.send({"type": "interrupt"})
        barge = await client.wait_for("interrupted", timeout=5, count=2)
        assert barge["cut"] is True and barge["input_t"] == pytest.approx(barge["t"] - start["t"] + start["input_t"],
                                                                          abs=2e-3)
        await wait_until(lambda: len(speechends()) == 2, timeout=10)
        second = speechends()[1]
        assert second["cut"] is True and second["played_to"] == barge["t"] < second["t"]
        assert second["played_to_input_t"] == barge["input_t"]
    finally:
        await client.close()
