"""Outgoing tracks paced by the call's media clock.

aiortc sends a frame as soon as recv() returns, so recv() sleeps until each frame is due. Both
tracks take their timestamps from the same clock (video 90 kHz, voice at the timeline's 16 kHz),
so the receiver's A/V sync keeps the lips on the voice. A track that finds itself more than
LATE_JUMP_S behind its clock (the process was paused) jumps to what is due now instead of sending
the backlog in a burst; both tracks jump on the same clock, so they stay in sync.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import AUDIO_PTIME, VIDEO_CLOCK_RATE, MediaStreamError, MediaStreamTrack

from avatar.audio import AudioTimeline
from avatar.video import yuv420_frame

from .buffers import FrameBuffer
from .clock import MediaClock

LATE_JUMP_S = 0.5  # more behind than any event-loop hiccup: only a pause of the process gets here
GRACE_POLL_S = 0.002  # how often a frame past its due time is looked for, until its deadline


async def _sleep_until(due: float) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class PacedVideoTrack(MediaStreamTrack):
    """Frame i leaves at clock.frame_due(i) with pts i * 90000 / fps, or as soon as it comes before
    clock.frame_deadline(i). A frame that is not ready by then is replaced by the last one shown
    (counted as repeated); the stream never stalls."""

    kind = "video"

    def __init__(self, clock: MediaClock, frames: FrameBuffer, placeholder: np.ndarray,
                 decorate=None):
        super().__init__()
        if VIDEO_CLOCK_RATE % clock.fps:
            raise ValueError(f"{clock.fps} fps does not divide the 90 kHz video clock")
        self.clock = clock
        self.frames = frames
        self.decorate = decorate  # optional (image, index) -> image, e.g. the frame-index stamp
        self._last = placeholder
        self._next: int | None = None
        self._ticks = VIDEO_CLOCK_RATE // clock.fps
        self.sent = 0
        self.repeated = 0
        self.skipped = 0  # frames never sent because the track was paused past them
        self.first_index: int | None = None
        self.outputs: list = []  # streaming.outputs.MediaOutput: each gets every frame sent, with its index

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._next is None:
            self._next = max(self.clock.frame_playing(), 0)
            self.first_index = self._next
        elif time.monotonic() - self.clock.frame_due(self._next) > LATE_JUMP_S:
            now = self.clock.frame_playing()
            self.skipped += now - self._next
            self._next = now
        index = self._next
        self._next += 1
        await _sleep_until(self.clock.frame_due(index))
        frame = self.frames.take(index)
        deadline = self.clock.frame_deadline(index)
        while frame is None and time.monotonic() < deadline:
            await asyncio.sleep(GRACE_POLL_S)
            frame = self.frames.take(index)
        if frame is None:
            self.repeated += 1
        else:
            self._last = frame.image
        image = self._last if self.decorate is None else self.decorate(self._last, index)
        for output in self.outputs:
            output.video(image, index)
        out = yuv420_frame(image)
        out.pts = index * self._ticks
        out.time_base = Fraction(1, VIDEO_CLOCK_RATE)
        self.sent += 1
        return out


def _upsampling_kernel(factor: int, taps_per_phase: int) -> np.ndarray:
    """A symmetric (zero-delay) windowed-sinc low-pass for integer upsampling."""
    n = np.arange(-factor * taps_per_phase, factor * taps_per_phase + 1)
    return (np.sinc(n / factor) * np.blackman(len(n) + 2)[1:-1]).astype(np.float32)


class DelayedVoiceTrack(MediaStreamTrack):
    """The caller's voice, sample s of the 16 kHz timeline leaving at clock.sample_due(s), sent as
    48 kHz mono 20 ms frames: the rate and frame size aiortc's Opus encoder takes without buffering
    (any other makes its resampler hold back one frame, 20 ms of A/V offset). The upsampling filter
    is symmetric and reads ahead in the (delayed) timeline, so it adds no delay either."""

    kind = "audio"
    OUT_RATE = 48000
    TAPS = 8  # input samples each side

    def __init__(self, clock: MediaClock, voice: AudioTimeline):
        super().__init__()
        if self.OUT_RATE % clock.sample_rate:
            raise ValueError(f"{clock.sample_rate} Hz does not divide {self.OUT_RATE} Hz")
        self.clock = clock
        self.voice = voice
        self._factor = self.OUT_RATE // clock.sample_rate
        self._kernel = _upsampling_kernel(self._factor, self.TAPS)
        self._samples = int(round(clock.sample_rate * AUDIO_PTIME))  # per frame, timeline rate
        self._next: int | None = None
        self.sent = 0
        self.outputs: list = []  # streaming.outputs.MediaOutput: each gets the voice sent, at OUT_RATE

    def _upsample(self, position: int) -> np.ndarray:
        n, f, k = self._samples, self._factor, self.TAPS
        source = self.voice.read(position - k, position + n + k)
        stuffed = np.zeros(len(source) * f, np.float32)
        stuffed[::f] = source
        full = np.convolve(stuffed, self._kernel, mode="same")
        return full[k * f:(k + n) * f]

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = self._samples
        if self._next is None or time.monotonic() - self.clock.sample_due(self._next) > LATE_JUMP_S:
            now_s = (time.monotonic() - self.clock.start() - self.clock.delay_s) * self.clock.sample_rate
            self._next = max(int(now_s) // n * n, 0)
        position = self._next
        self._next += n
        await _sleep_until(self.clock.sample_due(position))
        pcm = self._upsample(position)
        self.voice.discard_before(position + n - self.TAPS)
        pcm = np.clip(pcm, -1.0, 1.0)
        for output in self.outputs:
            output.audio(pcm, position * self._factor)
        samples = (pcm * 32767.0).astype(np.int16)
        out = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        out.sample_rate = self.OUT_RATE
        out.pts = position * self._factor
        out.time_base = Fraction(1, self.OUT_RATE)
        self.sent += 1
        return out
