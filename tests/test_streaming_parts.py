"""The transport's parts on their own: buffers, clock, frame stamps through a real VP8 codec,
the signaling message checks, uploads, static files, token and origin gates, audio intake, VAD."""

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

from avatar.audio import AudioTimeline
from streaming.avatars import AvatarLibrary, decode_upload
from streaming.buffers import FrameBuffer
from streaming.clock import MediaClock
from streaming.contrib.stamp import read_index, stamp_index
from streaming.http import static_file
from streaming.origins import origin_ok, own_origins, token_ok
from streaming.intake import AudioIntake
from benchmarks.fuzz_cases import CANDIDATE, OFFER_SDP, image_bytes, png_with_size
from streaming.protocol import Candidate, Interrupt, Offer, ProtocolError, SetPrompt, parse_message
from streaming.vad import SpeechDetector, single_threaded



class F:  # a frame as the engine hands it over
    def __init__(self, index):
        self.index = index
        self.image = np.full((16, 16, 3), index % 256, np.uint8)


def test_frame_buffer_takes_in_order_drops_late_and_overflow():
    buf = FrameBuffer(capacity=4)
    buf.put([F(i) for i in range(6)])  # 0 and 1 pushed out
    assert buf.overflowed == 2 and len(buf) == 4
    assert buf.take(1) is None  # already gone
    assert buf.take(3).index == 3  # 2 is dropped as late
    assert buf.late == 1
    assert buf.take(3) is None  # taken once
    assert [buf.take(4).index, buf.take(5).index] == [4, 5]
    with pytest.raises(ValueError):
        FrameBuffer(0)


def test_bounded_voice_timeline_reads_silence_outside_and_mutes():
    voice = AudioTimeline(max_seconds=1.0, sample_rate=100)
    voice.append(np.arange(1, 51, dtype=np.float32))
    assert voice.read(-5, 5).tolist() == [0] * 5 + [1, 2, 3, 4, 5]
    assert voice.read(48, 52).tolist() == [49, 50, 0, 0]
    voice.discard_before(10)
    assert voice.start == 10 and voice.read(5, 11).tolist() == [0] * 5 + [11]  # what it let go: silence
    voice.silence_from(45)
    assert voice.read(43, 47).tolist() == [44, 45, 0, 0]
    voice.append(np.ones(200, np.float32))  # over max: keeps the newest second
    assert voice.end == 250 and voice.start == 150


def test_media_clock_maps_frames_and_samples_to_the_same_time():
    clock = MediaClock(delay_s=0.5, fps=25, sample_rate=16000)
    clock.start(now=100.0)
    assert clock.start(now=200.0) == 100.0  # the first start wins
    assert clock.frame_due(25) == pytest.approx(101.5)
    assert clock.sample_due(16000) == pytest.approx(clock.frame_due(25))
    assert clock.frame_playing(now=101.5 + 0.039) == 25
    with pytest.raises(ValueError):
        MediaClock(-1, 25, 16000)


def test_frame_stamp_survives_vp8():
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000)
    encoder = get_encoder(codec)
    decoder_ctx = av.CodecContext.create("libvpx", "r")
    rng = np.random.default_rng(0)
    decoded = []
    for index in (0, 1, 2, 777, 12345):
        image = stamp_index(rng.integers(0, 255, (128, 128, 3), np.uint8), index)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = index * 3600, Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=True)
        from aiortc.codecs.vpx import VpxPayloadDescriptor

        data = b""
        for p in payloads:
            desc, rest = VpxPayloadDescriptor.parse(p)
            data += rest
        for out in decoder_ctx.decode(av.Packet(data)):
            decoded.append(read_index(out.to_ndarray(format="rgb24")))
    assert decoded == [0, 1, 2, 777, 12345]
    assert read_index(np.full((128, 128, 3), 128, np.uint8)) is None  # no stamp: no false reading


@pytest.mark.parametrize("raw, code", [
    (b"\x00\x01", "bad_message"),
    ("not json", "bad_message"),
    ("[1, 2]", "bad_message"),
    ('{"type": "dance"}', "bad_message"),
    ('{"no": "type"}', "bad_message"),
    ('{"type": "offer"}', "bad_message"),
    ('{"type": "offer", "sdp": 5}', "bad_message"),
    ('{"type": "offer", "sdp": "v=0\\r\\nm=video 9"}', "bad_sdp"),
    ('{"type": "offer", "sdp": "m=audio 9\\r\\nm=video 9"}', "bad_sdp"),
    ('{"type": "offer", "sdp": "m=audio m=video", "avatar": "a", "image": "b"}', "bad_message"),
    ('{"type": "candidate", "candidate": 7}', "bad_message"),
    ('{"type": "candidate", "candidate": "x", "sdpMLineIndex": -1}', "bad_message"),
    ('{"type": "avatar"}', "bad_message"),
    ('{"type": "prompt", "text": ' + '"' + "x" * 3000 + '"}', "bad_message"),
    ('{"type": "offer", "sdp": "m=audio m=video", "rtmp": "http://example.com/live"}', "bad_message"),
    ('{"type": "offer", "sdp": "m=audio m=video", "rtmp": 5}', "bad_message"),
    ('{"type": "offer", "sdp": "m=audio m=video", "watch": "yes"}', "bad_message"),
    ("[" * 100000, "bad_message"),
])
def test_malformed_messages_are_refused_with_a_code(raw, code):
    with pytest.raises(ProtocolError) as info:
        parse_message(raw)
    assert info.value.code == code and info.value.to_message()["type"] == "error"


def test_good_messages_parse():
    offer = parse_message(json.dumps({"type": "offer", "sdp": OFFER_SDP, "avatar": "drawn", "prompt": "hi"}))
    assert offer == Offer(OFFER_SDP, avatar="drawn", prompt="hi")
    pushed = parse_message(json.dumps({"type": "offer", "sdp": OFFER_SDP, "rtmp": "rtmp://example.com/live/key"}))
    assert pushed.rtmp == "rtmp://example.com/live/key" and not pushed.watch
    assert parse_message(json.dumps({"type": "offer", "sdp": OFFER_SDP, "watch": True})).watch
    assert parse_message('{"type": "candidate", "candidate": ""}') == Candidate(None)
    trickled = parse_message(json.dumps({"type": "candidate", "candidate": CANDIDATE, "sdpMid": "0"})).candidate
    assert (trickled.ip, trickled.port, trickled.type, trickled.sdpMid) == ("127.0.0.1", 9, "host", "0")
    assert parse_message('{"type": "prompt"}') == SetPrompt("")
    assert parse_message('{"type": "interrupt"}') == Interrupt()


@pytest.mark.parametrize("old, new, reason", [
    ("a=mid:0\r\n", "", "audio section has no a=mid"),
    ("a=recvonly", "a=sendonly", "video section must receive"),
    ("a=recvonly", "a=inactive", "video section must receive"),
    ("m=audio 9", "m=audio 0", "audio section must send"),
    ("a=sendrecv", "a=recvonly", "audio section must send"),
    ("m=video 9", "m=video 0", "video section must receive"),
    ("a=fingerprint:sha-256", "a=fingerprint:sha-1", "needs an a=fingerprint"),
    ("00:01:02", "garbage", "malformed a=fingerprint"),
    (":1E:1F\r\n", ":1E\r\n", "malformed a=fingerprint"),
    ("a=ice-pwd:", "a=ice-pwdx:", "no a=ice-ufrag / a=ice-pwd"),
    ("a=mid:1", "a=mid:0", "the same a=mid"),
    ("m=audio 9", "m=audio " + "9" * 5000, "not valid SDP"),
])
def test_offers_outside_the_contract_are_bad_sdp(old, new, reason):
    sdp = OFFER_SDP.replace(old, new)
    assert sdp != OFFER_SDP
    with pytest.raises(ProtocolError, match=reason) as info:
        parse_message(json.dumps({"type": "offer", "sdp": sdp}))
    assert info.value.code == "bad_sdp"


@pytest.mark.parametrize("candidate", [
    {"candidate": CANDIDATE},  # neither sdpMid nor sdpMLineIndex
    {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1", "sdpMid": "0"},  # too few fields (aiortc asserts)
    {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ", "sdpMid": "0"},
    {"candidate": "candidate:1 1 udp x 127.0.0.1 9 typ host", "sdpMid": "0"},
    {"candidate": "candidate:1 7 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"},
    {"candidate": "candidate:1 1 udp 1 127.0.0.1 99999 typ host", "sdpMid": "0"},
    {"candidate": CANDIDATE, "sdpMLineIndex": True},
])
def test_malformed_candidates_are_bad_message(candidate):
    with pytest.raises(ProtocolError) as info:
        parse_message(json.dumps({"type": "candidate", **candidate}))
    assert info.value.code == "bad_message"


def test_numbers_past_pythons_digit_limit_are_bad_message():
    with pytest.raises(ProtocolError) as info:
        parse_message('{"type": "candidate", "candidate": "", "sdpMLineIndex": ' + "9" * 5000 + "}")
    assert info.value.code == "bad_message"


def _png(width, height) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 120)).save(out, format="PNG")
    return out.getvalue()


def test_uploads_are_limited_before_decoding():
    ok = base64.b64encode(_png(64, 48)).decode()
    assert decode_upload("data:image/png;base64," + ok, 100_000, 512)[:4] == b"\x89PNG"
    with pytest.raises(ProtocolError, match="at most 512x512") as info:
        decode_upload(base64.b64encode(_png(600, 20)).decode(), 100_000, 512)
    assert info.value.code == "image_too_large"
    with pytest.raises(ProtocolError, match="larger than") as info:
        decode_upload(base64.b64encode(b"\x00" * 5000).decode(), 1000, 512)
    assert info.value.code == "image_too_large"
    for bad in ("%%%", base64.b64encode(b"not an image").decode(), "data:image/png,abc", ""):
        with pytest.raises(ProtocolError) as info:
            decode_upload(bad, 100_000, 512)
        assert info.value.code == "bad_image"
    with pytest.raises(ProtocolError) as info:  # a header claiming a decompression bomb
        decode_upload(base64.b64encode(png_with_size(60000, 60000)).decode(), 100_000, 512)
    assert info.value.code == "image_too_large"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM", "TGA"])
def test_uploads_are_only_the_formats_the_message_names(fmt):
    with pytest.raises(ProtocolError, match="PNG, JPEG or WebP") as info:
        decode_upload(base64.b64encode(image_bytes(fmt)).decode(), 100_000, 512)
    assert info.value.code == "bad_image"
    for fmt in ("PNG", "JPEG", "WEBP"):
        assert decode_upload(base64.b64encode(image_bytes(fmt)).decode(), 100_000, 512) == image_bytes(fmt)


def test_avatar_library(tmp_path):
    (tmp_path / "alice.png").write_bytes(_png(80, 80))
    (tmp_path / ".hidden.png").write_bytes(_png(80, 80))
    lib = AvatarLibrary(tmp_path)
    assert lib.ids() == ["drawn", "astronaut", "alice"]
    assert lib.image("alice") == tmp_path / "alice.png"
    assert lib.image("drawn").shape[2] == 3
    assert lib.png("drawn")[:4] == b"\x89PNG"
    for bad in ("../etc/passwd", "nobody", 5):
        with pytest.raises(ProtocolError):
            lib.image(bad)


def test_static_files_stay_inside_the_root(tmp_path):
    root = tmp_path / "client"
    (root / "demo").mkdir(parents=True)
    (root / "demo" / "index.html").write_text("<p>hi</p>")
    (tmp_path / "secret.txt").write_text("no")
    ok = static_file(root, "/demo/")
    assert ok.status == 200 and ok.body == b"<p>hi</p>" and ok.headers["Content-Type"].startswith("text/html")
    for path in ("/../secret.txt", "/demo/%2e%2e/%2e%2e/secret.txt", "/.git/config", "/nothing.js", "/demo/\x00",
                 "/demo/" + "a" * 256, "/" + "b" * 5000 + "/x"):
        assert static_file(root, path).status == 404


def test_token_and_origin_checks():
    assert token_ok(None, None) and token_ok("", "anything")
    assert token_ok("s3cret", "s3cret")
    assert not token_ok("s3cret", None) and not token_ok("s3cret", "s3creT")
    assert not token_ok("s3cret", "s3cr\udcff")  # a non-ASCII header byte, as a surrogate escape
    own = own_origins("127.0.0.1", 8080)
    assert own == {"http://127.0.0.1:8080", "http://localhost:8080"}
    assert origin_ok(None, own)  # not a browser
    assert origin_ok("http://localhost:8080", own)
    for foreign in ("http://evil.example", "https://127.0.0.1:8080", "http://127.0.0.1:8081", "null"):
        assert not origin_ok(foreign, own)
    assert own_origins("::1", 80) == {"http://[::1]:80", "http://[::1]", "http://localhost:80", "http://localhost"}
    assert "http://127.0.0.1:9000" in own_origins("0.0.0.0", 9000)
    assert origin_ok("https://app.example", own | {"https://app.example"})


def _audio_frame(pcm: np.ndarray, rate: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray((pcm * 32767).astype(np.int16)[None], format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


def test_intake_places_audio_by_timestamps_and_fills_gaps():
    clock = MediaClock(0.5, 25, 16000)
    clock.start(now=1000.0)
    intake = AudioIntake(clock)
    tone = 0.5 * np.sin(np.arange(960) * 2 * np.pi * 440 / 48000).astype(np.float32)
    out = [intake.push(_audio_frame(tone, 48000, 0), now=1000.25)]  # arrives 250 ms in: lands there
    assert intake.input_offset == 4000
    out.append(intake.push(_audio_frame(tone, 48000, 960), now=1000.27))
    out.append(intake.push(_audio_frame(tone, 48000, 960 * 4), now=1000.33))  # two frames lost
    assert intake.gaps == 1
    total = sum(len(o) for o in out)
    # 250 ms of leading silence + 2 frames + a 40 ms gap + 1 frame, less the resampler's pending tail
    assert intake.end == total
    assert abs(total - (4000 + 5 * 320)) <= 64
    assert np.all(out[0][:3900] == 0)


def test_intake_fills_silence_when_starved_then_cuts_the_overlap():
    clock = MediaClock(0.5, 25, 16000)
    clock.start(now=0.0)
    intake = AudioIntake(clock)
    tone = np.full(960, 0.25, np.float32)
    intake.push(_audio_frame(tone, 48000, 0), now=0.0)
    filled = intake.fill_silence(now=2.0, margin_s=0.3)  # nothing came for 2 s
    assert intake.end == int(1.7 * 16000) and not filled.any()
    late = intake.push(_audio_frame(tone, 48000, 960 * 5), now=2.01)  # belongs at 0.1 s: already silence
    assert len(late) == 0 and intake.end == int(1.7 * 16000)
    assert len(intake.fill_silence(now=2.0, margin_s=0.3)) == 0  # nothing more to fill yet


@pytest.fixture(scope="module")
def vad_model():
    from streaming.vad import load_vad_model

    return load_vad_model()


def test_vad_marks_speech_and_reports_onsets(vad_model, speech_hello):
    speech = speech_hello
    silence = np.zeros(16000, np.float32)
    audio = np.concatenate([silence, speech, silence, silence, speech, silence])
    detector = SpeechDetector(vad_model)
    chunks, events = [], []
    with ThreadPoolExecutor(1, initializer=single_threaded) as vad_thread:  # as the server runs it
        for i in range(0, len(audio), 320):  # 20 ms at a time, as a call delivers it
            whole = detector.completes_chunk(len(audio[i:i + 320]))  # else the call keeps it on the loop
            c, e = vad_thread.submit(detector.push, audio[i:i + 320]).result()
            assert bool(c) == whole
            chunks += c
            events += e
    assert all(len(c.pcm) == 512 for c in chunks)
    assert [c.start for c in chunks[:3]] == [0, 512, 1024]
    kinds = [e.kind for e in events]
    assert kinds == ["speechstart", "speechend"] * (len(kinds) // 2) and len(kinds) >= 4  # alternate
    second = 1.0 + len(speech) / 16000 + 2.0
    starts = [e.seconds for e in events if e.kind == "speechstart"]
    ends = [e.seconds for e in events if e.kind == "speechend"]
    assert starts[0] == pytest.approx(1.0, abs=0.12)  # the recording's speech begins at its start
    assert min(abs(t - second) for t in starts) < 0.12
    assert ends[-1] == pytest.approx(second + len(speech) / 16000, abs=0.35)
    in_silence = [t for t in starts + ends if t < 0.85 or 1.0 + len(speech) / 16000 + 0.4 < t < second - 0.15]
    assert in_silence == []
    flags = np.array([c.speech for c in chunks])
    times = np.array([c.start for c in chunks]) / 16000
    assert not flags[times < 0.8].any() and flags[(times > 1.3) & (times < 3.5)].mean() > 0.8


def test_server_config_from_cli_args_and_environment(monkeypatch):
    from argparse import Namespace

    from streaming.config import ServerConfig

    args = Namespace(host="0.0.0.0", port=9000, profile="tiny-random", max_sessions=3, token=None,
                     weights=None, device="cpu")
    monkeypatch.setenv("AVATAR_TOKEN", "from-env")
    monkeypatch.setenv("AVATAR_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    cfg = ServerConfig.from_args(args)
    assert (cfg.host, cfg.port, cfg.max_sessions, cfg.token) == ("0.0.0.0", 9000, 3, "from-env")
    assert cfg.allowed_origins == ("https://a.example", "https://b.example")
    args.token = "from-flag"
    assert ServerConfig.from_args(args).token == "from-flag"
    args.max_sessions = 0
    with pytest.raises(ValueError, match="max-sessions"):
        ServerConfig.from_args(args)


def test_serve_main_refuses_bad_settings_with_a_message(capsys):
    from argparse import Namespace

    from streaming.server import serve_main

    args = Namespace(host="127.0.0.1", port=70000, profile="tiny-random", max_sessions=2, token=None,
                     weights=None, device="cpu")
    assert serve_main(args) == 2
    assert "--port" in capsys.readouterr().err


def test_compute_allowance_is_measured_and_bounded(tiny_profile, monkeypatch):
    from streaming import calibrate

    # Window durations as the clock reads them: the first (the warm-up) is not counted, the median of the rest is.
    durations = iter([9.0, 0.3, 0.1, 0.2, 0.4])
    readings = []

    def perf_counter():
        readings.append(len(readings))
        return 0.0 if len(readings) % 2 else next(durations)

    monkeypatch.setattr(calibrate, "time", SimpleNamespace(perf_counter=perf_counter))
    with ThreadPoolExecutor(1, initializer=single_threaded) as thread:
        measured = thread.submit(calibrate.measure_window_compute, tiny_profile, 5).result()
    assert measured == pytest.approx(0.25) and len(readings) == 10  # five real windows were timed
    monkeypatch.undo()
    monkeypatch.setattr(calibrate, "measure_window_compute", lambda profile: 0.2)
    assert calibrate.compute_allowance(tiny_profile) == pytest.approx(0.25 + 0.02 + 0.02)  # + packet, jitter (the VAD is not waited for)
    monkeypatch.setattr(calibrate, "measure_window_compute", lambda profile: 0.0)
    assert calibrate.compute_allowance(tiny_profile) == calibrate.INPUT_WAIT_S + calibrate.JITTER_S
    monkeypatch.setattr(calibrate, "measure_window_compute", lambda profile: 7.0)  # a swamped machine
    assert calibrate.compute_allowance(tiny_profile) == calibrate.CEILING_S


def test_intake_after_a_pause_cuts_only_the_burst_and_keeps_up_at_once():
    # A 1 s pause (the server stopped): the silence filler runs first, then 50 frames arrive at once.
    clock = MediaClock(0.5, 25, 16000)
    clock.start(now=0.0)
    intake = AudioIntake(clock)
    tone = np.full(960, 0.25, np.float32)
    for i in range(10):  # 200 ms on time
        intake.push(_audio_frame(tone, 48000, 960 * i), now=0.02 * i)
    intake.fill_silence(now=1.2)
    assert intake.end == int(1.05 * 16000)
    burst = [intake.push(_audio_frame(tone, 48000, 960 * i), now=1.2) for i in range(10, 60)]
    # What the silence already covers is cut; the rest of the burst lands at its place.
    assert intake.end == pytest.approx(60 * 320, abs=64)
    assert intake.cut == pytest.approx(int(1.05 * 16000) - 10 * 320, abs=64)
    assert sum(len(b) for b in burst) == intake.end - int(1.05 * 16000)
    # Nothing is owed afterwards: the next frame is kept whole, right after the burst.
    after = intake.push(_audio_frame(tone, 48000, 960 * 60), now=1.21)
    assert len(after) == pytest.approx(320, abs=16) and intake.end == pytest.approx(61 * 320, abs=64)


async def test_an_input_backlog_is_cut_to_its_newest_frames_and_keeps_the_end_of_stream():
    """aiortc's remote track queues decoded frames without bound; a starved reader keeps the newest."""
    from aiortc.rtcrtpreceiver import RemoteStreamTrack

    from streaming.peer import drop_input_backlog

    track = RemoteStreamTrack(kind="audio")
    frames = []
    for i in range(40):
        frame = av.AudioFrame(format="s16", layout="mono", samples=320)
        frame.pts = i * 320
        frames.append(frame)
        track._queue.put_nowait(frame)
    track._queue.put_nowait(None)  # end of stream
    assert drop_input_backlog(track, 25) == 16
    assert [(await track.recv()).pts for _ in range(24)] == [f.pts for f in frames[16:]]
    with pytest.raises(Exception):  # the end of stream is still there: MediaStreamError
        await track.recv()
    assert drop_input_backlog(SimpleNamespace(), 25) == 0  # internals not as expected: nothing done


def test_audio_level_is_aiortcs_figure():
    from aiortc import rtp

    from streaming.peer import audio_level_dbov

    rng = np.random.default_rng(0)
    for scale in (0, 1, 30, 3000, 40000):  # silence, the -127 floor, speech, clipping at 0 dBov
        pcm = np.clip(rng.standard_normal(960) * scale, -32768, 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
        frame.sample_rate = 48000
        assert audio_level_dbov(frame) == rtp.compute_audio_level_dbov(frame)
