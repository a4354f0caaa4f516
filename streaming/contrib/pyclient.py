"""A Python caller for the server: a real aiortc peer that speaks a recording and records what comes
back (frames and voice with arrival times, control messages). Used by the tests and the latency
benchmark, and usable by apps that drive an avatar from Python (e.g. from a TTS engine)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from websockets.asyncio.client import connect

from ..ice import rtc_configuration
from .stamp import read_index

SEND_RATE = 48000
FRAME_SAMPLES = round(SEND_RATE * AUDIO_PTIME)  # 20 ms


class RecordingTrack(MediaStreamTrack):
    """Plays mono float32 audio at 48 kHz in real time (then silence, or again from the start when
    `loop`); remembers when it started."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray, loop: bool = False):
        super().__init__()
        self.pcm = np.asarray(pcm, np.float32)
        self.loop = loop and len(self.pcm) > 0
        self.started_at: float | None = None  # wall (monotonic) time of sample 0
        self._position = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.started_at is None:
            self.started_at = time.monotonic()
        position = self._position
        self._position += FRAME_SAMPLES
        delay = self.started_at + position / SEND_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = np.zeros(FRAME_SAMPLES, np.float32)
        start = position % len(self.pcm) if self.loop else position
        piece = self.pcm[start:start + FRAME_SAMPLES]
        chunk[:len(piece)] = piece
        frame = av.AudioFrame.from_ndarray((np.clip(chunk, -1, 1) * 32767).astype(np.int16)[None], format="s16",
                                           layout="mono")
        frame.sample_rate = SEND_RATE
        frame.pts = position
        frame.time_base = Fraction(1, SEND_RATE)
        return frame


def to_48k_mono(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Any-rate mono float32 -> 48 kHz (av's resampler)."""
    pcm = np.asarray(pcm, np.float32)
    frame = av.AudioFrame.from_ndarray(pcm[None], format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SEND_RATE)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass
class Received:
    messages: list = field(default_factory=list)  # (arrival, dict)
    video: list = field(default_factory=list)  # (arrival, pts, stamped index or None)
    audio: list = field(default_factory=list)  # (arrival, pts, float32 mono samples, sample rate)
    video_size: tuple[int, int] | None = None  # (width, height) of the last video frame

    def of_type(self, kind: str) -> list[dict]:
        return [m for _, m in self.messages if m.get("type") == kind]


class CallClient:
    """One call from Python. `await CallClient.open(url, pcm, rate)`; `await close()`."""

    def __init__(self):
        self.received = Received()
        self.pc: RTCPeerConnection | None = None
        self.ws = None
        self.source: RecordingTrack | None = None
        self._tasks: list[asyncio.Task] = []
        self.answer: dict | None = None

    @classmethod
    async def open(cls, ws_url: str, pcm: np.ndarray, rate: int, offer_extra: dict | None = None,
                   origin: str | None = None, read_stamps: bool = True, timeout: float = 20.0,
                   loop: bool = False, video_codecs: list[str] | None = None) -> "CallClient":
        """`video_codecs`: the video codecs to offer, in order of preference (e.g. ["video/H264"]);
        default: all that aiortc has (VP8 first)."""
        self = cls()
        self.read_stamps = read_stamps
        try:
            await self._open(ws_url, pcm, rate, offer_extra, origin, timeout, loop, video_codecs)
        except BaseException:  # refused (an error message, a timeout): leave no socket or peer open
            await self.close()
            raise
        return self

    async def _open(self, ws_url, pcm, rate, offer_extra, origin, timeout, loop, video_codecs) -> None:
        self.ws = await connect(ws_url, origin=origin, max_size=None, open_timeout=timeout, close_timeout=1.0)
        self._tasks.append(asyncio.ensure_future(self._read_messages()))
        self.ready = await self.wait_for("ready", timeout)  # a full server says so here (RuntimeError)
        pc = self.pc = RTCPeerConnection(rtc_configuration(self.ready.get("ice_servers", [])))
        self.source = RecordingTrack(to_48k_mono(pcm, rate), loop)
        pc.addTrack(self.source)
        video = pc.addTransceiver("video", direction="recvonly")
        if video_codecs:
            available = RTCRtpSender.getCapabilities("video").codecs
            video.setCodecPreferences([c for name in [*video_codecs, "video/rtx"] for c in available
                                       if c.mimeType.lower() == name.lower()])
        pc.on("track", self._on_track)
        await pc.setLocalDescription(await pc.createOffer())
        await self.ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp, **(offer_extra or {})}))
        self.answer = await self.wait_for("answer", timeout)
        await pc.setRemoteDescription(RTCSessionDescription(self.answer["sdp"], "answer"))

    async def _read_messages(self) -> None:
        try:
            async for raw in self.ws:
                self.received.messages.append((time.monotonic(), json.loads(raw)))
        except Exception:  # the socket closing ends the reader
            pass

    async def wait_for(self, kind: str, timeout: float = 10.0, count: int = 1) -> dict:
        """The count-th message of this type (an error message arriving meanwhile raises instead)."""
        deadline = time.monotonic() + timeout
        errors_before = len(self.received.of_type("error"))
        while time.monotonic() < deadline:
            found = self.received.of_type(kind)
            if len(found) >= count:
                return found[count - 1]
            errors = self.received.of_type("error")
            if len(errors) > errors_before and kind != "error":
                raise RuntimeError(f"server error: {errors[-1]}")
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no {kind!r} message within {timeout} s")

    def _on_track(self, track) -> None:
        self._tasks.append(asyncio.ensure_future(self._record(track)))

    async def _record(self, track) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if track.kind == "video":
                index = read_index(frame.to_ndarray(format="rgb24")) if self.read_stamps else None
                self.received.video.append((now, frame.pts, index))
                self.received.video_size = (frame.width, frame.height)
            else:
                pcm = frame.to_ndarray().astype(np.float32) / 32768.0
                mono = pcm.reshape(-1, len(frame.layout.channels)).mean(axis=1) if pcm.ndim else pcm
                self.received.audio.append((now, frame.pts, mono, frame.sample_rate))

    async def send(self, msg: dict) -> None:
        await self.ws.send(json.dumps(msg))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()
