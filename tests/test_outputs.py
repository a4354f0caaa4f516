"""RTMP out and recording (streaming/outputs.py), against a real nginx with its RTMP module (Debian's
nginx + libnginx-mod-rtmp, started by the test) and read back with ffprobe and av: 25 fps, the
expected length, audio and video starting and ending within 40 ms of each other."""

import asyncio
import gc
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path

import av
import numpy as np
import pytest

from avatar.samples import drawn_face
from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from avatar.video import NET_TIMEOUT_S
from streaming.outputs import MediaOutput
from streaming.server import AvatarServer

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
AV_TOLERANCE_S = 0.040
# An AAC encoder's first 1024 samples are priming: the first packet's pts is that much before the
# first real sample (mp4 and FLV alike; mp4's edit list then trims them off at play time).
AAC_PRIMING = 1024
CALL_S = 4.0


class RtmpServer:
    """nginx in the foreground on a loopback port, its config, logs, pid and recordings in a tmp dir;
    every stream published to rtmp://127.0.0.1:PORT/live/KEY is recorded to rec/KEY.flv."""

    def __init__(self, root: Path):
        self.root = root
        (root / "rec").mkdir(parents=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = root / "nginx.conf"
        conf.write_text(f"""
load_module {RTMP_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        application live {{
            live on;
            record all;
            record_path {root}/rec;
        }}
    }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"nginx did not start: {(root / 'error.log').read_text(errors='replace')}")
                time.sleep(0.05)

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def recording(self, key: str, timeout: float = 10.0) -> Path:
        """The stream's recording, once its publisher has left (nginx closes the file then)."""
        log = self.root / "error.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            published = re.search(rf"\*(\d+) publish: name='{re.escape(key)}'", text)
            if published and f"*{published.group(1)} disconnect" in text[published.end():] or self.proc.poll() is not None:
                return self.root / "rec" / f"{key}.flv"
            time.sleep(0.1)
        raise TimeoutError(f"no publisher of {key!r} left nginx within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def rtmp_server(tmp_path):
    if not RTMP_MODULE.exists() or not Path(NGINX).exists() or shutil.which("ffprobe") is None:
        pytest.skip("needs nginx, its RTMP module and ffprobe (apt-get install nginx libnginx-mod-rtmp ffmpeg)")
    server = RtmpServer(tmp_path / "nginx")
    try:
        yield server
    finally:
        server.stop()


def probe(path: Path) -> dict:
    """Per stream kind: codec and frame rate (ffprobe), and from the packets (av) the first and last
    media times and the count."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=30, check=True)
    streams = {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}
    times: dict[str, list] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is not None and packet.stream.type in times:
                start = float(packet.pts * packet.time_base)
                times[packet.stream.type].append((start, start + float(packet.duration * packet.time_base)))
    result = {}
    for kind, spans in times.items():
        spans.sort()
        result[kind] = {"codec": streams[kind]["codec_name"], "start": spans[0][0], "end": spans[-1][1],
                        "count": len(spans), "rate": streams[kind].get("r_frame_rate"),
                        "sample_rate": streams[kind].get("sample_rate")}
    return result


def check_av(path: Path, frames: int) -> dict:
    """25 fps H.264 with `frames` frames, AAC voice starting and ending with the video."""
    media = probe(path)
    video, audio = media["video"], media["audio"]
    assert (video["codec"], audio["codec"]) == ("h264", "aac"), media
    assert video["rate"] == "25/1", media
    assert video["count"] == frames, (media, frames)
    assert abs((video["end"] - video["start"]) - frames / 25) < 1e-3, media  # every frame, 40 ms each
    voice_start = audio["start"] + AAC_PRIMING / int(audio["sample_rate"])
    assert abs(voice_start - video["start"]) <= AV_TOLERANCE_S, media
    assert abs(audio["end"] - video["end"]) <= AV_TOLERANCE_S, media
    print(f"{path.name}: {frames} frames at {video['rate']} fps, video {video['start']:.3f}-{video['end']:.3f} s, "
          f"voice {voice_start:.3f}-{audio['end']:.3f} s ({audio['sample_rate']} Hz): start offset "
          f"{1000 * (voice_start - video['start']):+.1f} ms, end offset {1000 * (audio['end'] - video['end']):+.1f} ms")
    return media


def output_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("output-")]


async def _call(server: AvatarServer, speech: np.ndarray, seconds: float, offer_extra=None):
    client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", speech, 16000, offer_extra=offer_extra,
                                   read_stamps=False, loop=True)
    (call,) = [c for c in server.calls.values() if c is not None]
    await asyncio.wait_for(call.connected.wait(), 10)
    return client, call


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_call_is_pushed_to_rtmp_and_recorded_in_sync(rtmp_server, tmp_path, tiny_profile, speech_hello):
    record_dir = tmp_path / "calls"
    config = ServerConfig(port=0, compute_allowance_s=0.3, rtmp_url=rtmp_server.url("{call}"), record_dir=record_dir)
    server = await AvatarServer(config, tiny_profile).start()
    gc.disable()  # only reference counting: a cycle would keep the call or an output
    try:
        client, call = await _call(server, speech_hello, CALL_S)
        assert client.answer["outputs"] == ["rtmp", "record"]
        outputs, track = list(call.outputs), call.video
        await asyncio.sleep(CALL_S)
        await client.close()
        await call.close("test over")
        assert not client.received.of_type("output"), client.received.of_type("output")
    finally:
        await server.stop()
    try:
        call_id, sent = call.id, track.sent + track.skipped
        failed, frames = [o.failed for o in outputs], [o.frames for o in outputs]
        refs = [weakref.ref(x) for x in (call, track, *outputs)]
        del call, track, outputs
        assert [ref() for ref in refs] == [None] * len(refs)  # a finished call leaves nothing
        assert output_threads() == []
    finally:
        gc.enable()
    assert failed == [None, None]
    assert frames[0] == frames[1] == sent  # every frame the call sent (or skipped)
    assert CALL_S / 2 * 25 <= sent <= (CALL_S + 1) * 25, sent  # the call's length, from its first frame sent
    check_av(record_dir / f"{call_id}.mp4", sent)
    check_av(rtmp_server.recording(call_id), sent)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_call_goes_on_when_the_rtmp_server_goes_away(rtmp_server, tmp_path, tiny_profile, speech_hello):
    record_dir = tmp_path / "calls"
    config = ServerConfig(port=0, compute_allowance_s=0.3, record_dir=record_dir,
                          rtmp_allow=(f"rtmp://127.0.0.1:{rtmp_server.port}/live/",))
    server = await AvatarServer(config, tiny_profile).start()
    try:
        with pytest.raises(RuntimeError, match="bad_message"):  # a URL the server was not told to allow
            await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", speech_hello, 16000,
                                  offer_extra={"rtmp": "rtmp://127.0.0.1:1/live/x"}, read_stamps=False)
        while server.calls:
            await asyncio.sleep(0.05)
        client, call = await _call(server, speech_hello, CALL_S, offer_extra={"rtmp": rtmp_server.url("mine")})
        assert client.answer["outputs"] == ["rtmp", "record"]
        outputs, track = list(call.outputs), call.video
        await asyncio.sleep(1.5)
        rtmp_server.stop()
        message = await client.wait_for("output", timeout=10)
        assert message["output"] == "rtmp" and message["ok"] is False, message
        before = len(client.received.video)
        await asyncio.sleep(2.0)
        after = len(client.received.video)
        assert after - before >= 2.0 * 25 - 5  # the call went on at 25 fps
        assert len(client.received.of_type("output")) == 1  # reported once
        await client.close()
        await call.close("test over")
    finally:
        await server.stop()
    assert output_threads() == []
    rtmp, record = outputs
    assert rtmp.failed and record.failed is None, (rtmp.failed, record.failed)
    assert record.frames == track.sent + track.skipped >= 2.0 * 25
    check_av(record_dir / f"{call.id}.mp4", record.frames)  # the recording is whole and finalised


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_stalled_rtmp_server_costs_the_call_nothing(tmp_path, tiny_profile, speech_hello):
    """A server that takes the connection and never answers (a real listening socket that never
    accepts): the push fails after NET_TIMEOUT_S and says so, the call (and the event loop) never
    stop, its end does not wait, the recording is whole, and no thread is left."""
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(4)
    record_dir = tmp_path / "calls"
    config = ServerConfig(port=0, compute_allowance_s=0.3, record_dir=record_dir,
                          rtmp_url=f"rtmp://127.0.0.1:{stalled.getsockname()[1]}/live/{{call}}")
    server = await AvatarServer(config, tiny_profile).start()
    try:
        client, call = await _call(server, speech_hello, CALL_S)
        outputs, track = list(call.outputs), call.video
        message = await client.wait_for("output", timeout=NET_TIMEOUT_S + 5)
        assert message["output"] == "rtmp" and "timed out" in message["reason"], message
        await asyncio.sleep(1.0)
        await client.close()
        started = time.monotonic()
        await call.close("test over")
        assert time.monotonic() - started < 1.0
    finally:
        await server.stop()
        stalled.close()
    assert output_threads() == []
    arrivals = np.array([arrival for arrival, _, _ in client.received.video])
    # The loop never stopped for the network (av holds the GIL while it opens a URL: the old way,
    # the whole process stopped until the server went). Load makes gaps of up to ~1 s here.
    assert np.diff(arrivals).max() < NET_TIMEOUT_S
    rtmp, record = outputs
    assert "timed out" in rtmp.failed and record.failed is None, (rtmp.failed, record.failed)
    check_av(record_dir / f"{call.id}.mp4", track.sent + track.skipped)


@pytest.mark.timeout(60)
def test_an_output_that_falls_behind_stops_and_says_so_once(tmp_path):
    reports = []
    path = tmp_path / "behind.mp4"
    output = MediaOutput("record", str(path), 25, (256, 256), 48000, "t1", lambda *r: reports.append(r))
    output.start()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (256, 256, 3), np.uint8) for _ in range(4)]
    for index in range(2000):  # far faster than real time: noise frames take x264 milliseconds each
        if index == 5:
            time.sleep(1.0)  # the encoder has started
        output.video(images[index % 4], index)
        output.audio(np.zeros(960, np.float32), index * 1920)
        output.audio(np.zeros(960, np.float32), index * 1920 + 960)
    output.close()
    assert not output.alive
    assert len(reports) == 1 and reports[0][0] == "record" and reports[0][1].startswith("behind"), reports
    assert 0 < output.frames < 2000
    check_av(path, output.frames)  # what it had is finalised


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_render_pushes_to_rtmp(rtmp_server, tmp_path, capsys):
    from PIL import Image

    from streaming.cli import main

    image = tmp_path / "face.png"
    Image.fromarray(drawn_face(256)).save(image)
    audio = Path(__file__).parent / "data" / "speech_hello.wav"
    assert main(["render", "--profile", "tiny", "--threads", "1", "--quiet", "--image", str(image),
                 "--audio", str(audio), "--out", rtmp_server.url("render")]) == 0
    from avatar.audio import load_audio_file

    check_av(rtmp_server.recording("render"), frames=-(-len(load_audio_file(audio)) // 640))
    with socket.socket() as s:  # a port nobody listens on: a clear error, no traceback
        s.bind(("127.0.0.1", 0))
        refused = f"rtmp://127.0.0.1:{s.getsockname()[1]}/live/x"
    assert main(["render", "--profile", "tiny", "--threads", "1", "--quiet", "--image", str(image),
                 "--audio", str(audio), "--out", refused]) == 2
    assert f"error: cannot write {refused}: " in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_serve_flags(tmp_path):
    from streaming.cli import build_parser

    def config(*flags):
        return ServerConfig.from_args(build_parser().parse_args(["serve", *flags]))

    cfg = config("--rtmp-url", "rtmp://h/live/{call}", "--record", str(tmp_path / "rec"),
                 "--rtmp-allow", "rtmp://a/", "--rtmp-allow", "rtmps://b/")
    assert (cfg.rtmp_url, cfg.rtmp_allow) == ("rtmp://h/live/{call}", ("rtmp://a/", "rtmps://b/"))
    assert cfg.record_dir.is_dir()  # made at start-up, so a bad path fails there and not in a call
    with pytest.raises(ValueError, match="rtmp://"):
        config("--rtmp-url", "http://h/live")
    assert config().rtmp_url is None and config().record_dir is None and config().rtmp_allow == ()
