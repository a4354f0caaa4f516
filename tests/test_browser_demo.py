"""End to end in a real browser: headless Chromium (Debian's) opens the demo page, speaks a WAV through
its fake microphone, and the page plays the avatar. Driven over the Chrome DevTools Protocol."""

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from streaming.call import Call
from streaming.config import ServerConfig
from streaming.ice import parse_ice_server
from streaming.server import AvatarServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_mic_wav(path: Path, speech_hello: np.ndarray) -> Path:
    """1 s silence, the speech, 1.5 s silence (Chromium loops it), 48 kHz mono."""
    speech = np.round(speech_hello * 32768).astype(np.int16)
    speech48 = np.repeat(speech, 3)  # 16 -> 48 kHz; plenty for a VAD test
    pcm = np.concatenate([np.zeros(48000, np.int16), speech48, np.zeros(72000, np.int16)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return path


def wav_speech_starts(path: Path) -> tuple[list[float], float]:
    from streaming.vad import SpeechDetector, single_threaded

    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)[::3] / 32768
    with ThreadPoolExecutor(1, initializer=single_threaded) as vad_thread:
        _, events = vad_thread.submit(SpeechDetector().push, pcm).result()
    return [e.seconds for e in events if e.kind == "speechstart"], len(pcm) / 16000


class Chromium:
    """A headless Chromium with a fake microphone, and one page to talk to over CDP."""

    def __init__(self, profile_dir: Path, wav: Path, extra_args: tuple[str, ...] = (),
                 disable_features: tuple[str, ...] = ()):
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", "--mute-audio",
             "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required",
             f"--disable-features={','.join(('Translate', 'MediaRouter') + disable_features)}",
             f"--user-data-dir={profile_dir}", "--remote-debugging-port=0", *extra_args, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port_file = profile_dir / "DevToolsActivePort"
        self.ws = None
        self._id = 0

    async def open_page(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.1)
        port = int(self.port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self.ws = await connect(pages[0]["webSocketDebuggerUrl"], max_size=None)

    async def command(self, method: str, **params) -> dict:
        self._id += 1
        await self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def evaluate(self, expression: str):
        result = await self.command("Runtime.evaluate", expression=expression, awaitPromise=True,
                                    returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, expression: str, what: str, timeout: float = 20.0) -> None:
        """Wait until the page's expression is true."""
        deadline = time.monotonic() + timeout
        while not await self.evaluate(f"!!({expression})"):
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def wait_for_event(browser, kind: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await browser.evaluate(f"window.demo.events.some((e) => e.type === '{kind}')"):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {kind!r} event in the page")


MEASURE_FPS = """
new Promise((resolve) => {
  const v = document.getElementById('video');
  const q0 = v.getVideoPlaybackQuality().totalVideoFrames, t0 = performance.now();
  let callbacks = 0;
  const count = () => { callbacks++; v.requestVideoFrameCallback(count); };
  v.requestVideoFrameCallback(count);
  setTimeout(() => {
    const seconds = (performance.now() - t0) / 1000;
    resolve({ presented: callbacks / seconds,
              decoded: (v.getVideoPlaybackQuality().totalVideoFrames - q0) / seconds,
              width: v.videoWidth, paused: v.paused, readyState: v.readyState,
              hasAudio: v.srcObject ? v.srcObject.getAudioTracks().length : 0 });
  }, 4000);
})
"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
async def test_demo_page_plays_the_avatar_in_chromium(tmp_path, tiny_profile, speech_hello, turn_server, monkeypatch):
    turn = parse_ice_server(turn_server)  # handed to the page in "ready"
    trickled = []  # the page trickles its ICE candidates after the offer, then None (the end)
    add_candidate = Call.add_candidate

    async def spy(call, candidate):
        trickled.append(candidate)
        await add_candidate(call, candidate)

    monkeypatch.setattr(Call, "add_candidate", spy)
    server = await AvatarServer(ServerConfig(port=0, token="s3cret", ice_servers=(turn,)), tiny_profile).start()
    browser = Chromium(tmp_path / "profile", fake_mic_wav(tmp_path / "mic.wav", speech_hello))
    try:
        await browser.open_page()
        await browser.command("Page.navigate", url=f"{server.url}?autostart=1&avatar=drawn&token=s3cret")
        state = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:  # until the call has run a while: stats and a speech start
            state = await browser.evaluate(
                "JSON.stringify({error: window.demo && window.demo.error, "
                "types: window.demo ? window.demo.events.map((e) => e.type) : []})") or "{}"
            state = json.loads(state)
            assert not state.get("error"), state
            if state["types"].count("speechstart") >= 3 and state["types"].count("stats") >= 3:
                break
            await asyncio.sleep(0.5)
        assert state["types"].count("speechstart") >= 3, state
        ice = json.loads(await browser.evaluate(
            "JSON.stringify({servers: window.demo.call.pc.getConfiguration().iceServers, "
            "offer: window.demo.call.pc.localDescription.sdp})"))
        assert ice["servers"][0]["urls"] == turn["urls"] and ice["servers"][0]["username"] == "alice", ice
        assert "typ relay" in ice["offer"]  # Chromium took a relayed address from the TURN server
        assert any(c is not None and c.type == "relay" for c in trickled) and trickled[-1] is None, trickled
        playback = await browser.evaluate(MEASURE_FPS)
        assert playback["width"] == 128 and playback["hasAudio"] == 1 and not playback["paused"], playback
        assert playback["presented"] >= 20 and playback["decoded"] >= 20, playback

        events = json.loads(await browser.evaluate("JSON.stringify(window.demo.events)"))
        stats = [e["detail"] for e in events if e["type"] == "stats"]
        assert stats[-1]["fps"] >= 20 and stats[-1]["latency"]["output_delay_s"] > 0.5
        # The fake microphone loops the WAV from wherever it was when the call began, so compare the
        # speech starts with the WAV's own (found offline by the same VAD) up to one offset.
        # A start in the call's first moments may be speech already under way when the call began.
        starts = [e["detail"]["inputT"] for e in events if e["type"] == "speechstart" and e["detail"]["inputT"] > 0.3]
        assert len(starts) >= 2, events
        expected, period = wav_speech_starts(tmp_path / "mic.wav")
        offsets = [(e - x) % period for e in expected for x in expected]  # between two starts in the WAV
        for t in starts[1:]:
            phase = (t - starts[0]) % period
            gap = min(min(abs(phase - o), period - abs(phase - o)) for o in offsets)
            assert gap < 0.15, (starts, expected, period)
        # The page shows the live stats in plain words, with the stream's size and only new frames as fps.
        shown = await browser.evaluate("document.getElementById('stats').textContent")
        assert "128 × 128 pixels" in shown and "fps (new frames shown per second" in shown, shown
        assert "Delay: the face follows your voice by" in shown and "window" not in shown, shown
        page = json.loads(await browser.evaluate(
            "JSON.stringify({fps: window.demo.shown.fps, "
            "last: window.demo.events.filter((e) => e.type === 'stats').slice(-2).map((e) => e.detail)})"))
        before, last = page["last"]
        sent = last["frames_sent"] - before["frames_sent"]
        new = sent - (last["frames_repeated"] - before["frames_repeated"])
        assert sent > 0 and abs(page["fps"] - last["fps"] * new / sent) < 1e-6, page
        # The call's sound is the caller's own voice, late: muted until the caller asks for it.
        assert await browser.evaluate("document.getElementById('video').muted") is True
        assert await browser.evaluate("document.getElementById('hear-voice').click(), "
                                      "document.getElementById('video').muted") is False

        # The call's controls: interrupt is acknowledged, close ends it and frees the server's slot.
        await browser.evaluate("window.demo.call.interrupt()")
        await wait_for_event(browser, "interrupted")
        await browser.evaluate("window.demo.call.close()")
        await wait_for_event(browser, "close")
        deadline = time.monotonic() + 5
        while server.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not server.calls
    finally:
        await browser.close()
        await server.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
async def test_the_microphone_needs_https_from_another_machine(tmp_path, tiny_profile, speech_hello, turn_server):
    """The page under a name that is not this machine's (as a LAN caller opens it): over plain HTTP
    the browser gives it no microphone and the demo says so; served with --tls-cert it is a secure
    context and the call runs."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=avatar.test", "-addext", "subjectAltName=DNS:avatar.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    plain_port, tls_port = free_port(), free_port()
    plain = await AvatarServer(ServerConfig(port=plain_port, allowed_origins=(f"http://avatar.test:{plain_port}",)),
                               tiny_profile).start()
    secure = await AvatarServer(ServerConfig(port=tls_port, tls_cert=str(cert), tls_key=str(key),
                                             allowed_origins=(f"https://avatar.test:{tls_port}",),
                                             ice_servers=(parse_ice_server(turn_server),)), tiny_profile).start()
    browser = Chromium(tmp_path / "profile", fake_mic_wav(tmp_path / "mic.wav", speech_hello), (
        "--host-resolver-rules=MAP avatar.test 127.0.0.1", "--ignore-certificate-errors"))
    try:
        await browser.open_page()
        await browser.command("Page.navigate", url=f"http://avatar.test:{plain_port}/demo/?autostart=1")
        await browser.until("window.demo && window.demo.error", "the page did not say why it has no microphone")
        assert await browser.evaluate("window.isSecureContext") is False
        assert await browser.evaluate("window.demo.error.code") == "insecure"

        await browser.command("Page.navigate", url=f"https://avatar.test:{tls_port}/demo/?autostart=1&avatar=drawn")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            state = json.loads(await browser.evaluate(
                "JSON.stringify({secure: window.isSecureContext, error: window.demo && window.demo.error, "
                "types: window.demo ? window.demo.events.map((e) => e.type) : []})") or "{}")
            assert not state.get("error"), state
            if state["types"].count("stats") >= 2:
                break
            await asyncio.sleep(0.5)
        assert state["secure"] is True and state["types"].count("stats") >= 2, state
        assert len(secure.calls) == 1 and not plain.calls
    finally:
        await browser.close()
        await plain.stop()
        await secure.stop()
