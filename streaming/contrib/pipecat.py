"""The avatar as a Pipecat service: a pipeline's TTS audio in, the avatar's frames and the same audio,
re-timed to them, out (`pip install talking-avatar[pipecat]`).

Place it after the TTS service and before the output transport. It turns the TTS audio (which comes in
bursts, faster than real time) into a live voice: 16 kHz blocks fed to a `GenerationWorker` as the
media clock goes, as the server feeds a caller's voice, so the engine never runs ahead of the clock
and an interruption has little to throw away. Each video frame i is pushed at `clock.frame_due(i)`
(25 fps, a frame repeated when it is not ready, never a stall), together with the TTS audio that
frame shows, byte for byte as the TTS made it. So the transport gets video and voice in sync, both
delayed by `delay_s` (the engine's window latency plus the compute allowance).

An `InterruptionFrame` cuts at once: the TTS audio not yet pushed is dropped, the face holds still
until the engine's windows without that speech arrive (`Session.interrupt`, through the worker), and
`on_speech_played` reports where the utterance stopped. Each utterance that plays to its end is
reported too (the `played_to`/`cut` of the server's `interrupted` and `speechend` messages).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from pipecat.frames.frames import (CancelFrame, EndFrame, Frame, InterruptionFrame, OutputImageRawFrame,
                                   StartFrame, TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.ai_service import AIService
from pipecat.services.settings import ServiceSettings

from avatar.audio import Resampler
from avatar.errors import AvatarError
from models.audio_features import SAMPLE_RATE, SAMPLES_PER_FRAME

from ..buffers import FrameBuffer
from ..clock import MediaClock
from ..events import Degraded, Failed, Interrupted, WorkerEvent
from ..worker import GenerationWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeechPlayed:
    """Where one TTS utterance stopped playing: `played_to_s` seconds of its audio were pushed (all of
    it unless `cut`), ending at `at_s` on the avatar's media clock."""
    context_id: str | None
    played_to_s: float
    cut: bool
    at_s: float


@dataclass
class _Speech:
    """TTS audio waiting to be fed: its 16 kHz samples for the engine and its own bytes for the output."""
    pcm: np.ndarray  # 16 kHz mono float32
    audio: bytes
    sample_rate: int
    channels: int
    context_id: str | None
    fed: int = 0  # samples of `pcm` fed so far
    sent: int = 0  # samples of `audio` (per channel) handed to the output so far

    def take(self, n: int) -> tuple[np.ndarray, bytes]:
        """The next `n` engine samples and the share of the original audio they cover."""
        width = 2 * self.channels
        total = len(self.audio) // width
        a, b = self.fed, min(self.fed + n, len(self.pcm))
        end = total if b == len(self.pcm) else min(total, round(b * total / len(self.pcm)))
        pcm, audio = self.pcm[a:b], self.audio[self.sent * width:end * width]
        self.fed, self.sent = b, end
        return pcm, audio


@dataclass
class _Utterance:
    context_id: str | None
    start: int | None = None  # timeline sample of its first audio
    end: int | None = None  # one past its last (known once the TTS stopped and that was fed)


class _Mark:
    """In the feed queue: a TTS utterance starts / ends here."""

    def __init__(self, starts: bool, context_id: str | None):
        self.starts, self.context_id = starts, context_id


class AvatarVideoService(AIService):
    """TTS audio -> avatar video + the same audio re-timed, from an engine `Session`.

    `profile`: a loaded `avatar.profiles.Profile` (`load_profile("tiny")`); `image`: the face (path,
    PIL image or HxWx3 array); `compute_allowance_s`: the output delay beyond the engine's window
    latency (None: measured at start, as the server does). Event `on_speech_played(service,
    SpeechPlayed)` fires when an utterance has played out or was cut by an interruption.
    """

    def __init__(self, *, profile, image, prompt: str | None = None, seed: int = 0,
                 compute_allowance_s: float | None = None, threads: int | None = None, **kwargs):
        super().__init__(settings=ServiceSettings(model=None), **kwargs)  # no model to choose
        self._profile, self._image, self._prompt, self._seed = profile, image, prompt, seed
        self._allowance = compute_allowance_s
        self._threads = threads
        self.clock: MediaClock | None = None
        self.worker: GenerationWorker | None = None
        self._frames: FrameBuffer | None = None
        self._task: asyncio.Task | None = None
        self._resampler = Resampler(SAMPLE_RATE)
        self._queue: deque[_Speech | _Mark] = deque()  # TTS audio not fed yet
        self._fed = 0  # timeline samples fed to the engine (whole video frames)
        self._out: dict[int, list[_Speech]] = {}  # video frame -> the TTS audio it shows
        self._next_frame = 0  # the next video frame to push
        self._last_image: np.ndarray | None = None
        self._hold: tuple[int, int | None] | None = None  # frames [a, b) held still after a cut (b: not known yet)
        self._utterance: _Utterance | None = None  # the one being fed
        self._ending: deque[_Utterance] = deque()  # fed to their end, reported once pushed
        self._register_event_handler("on_speech_played")

    @property
    def delay_s(self) -> float | None:
        return None if self.clock is None else self.clock.delay_s

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, frame: StartFrame):
        await super().start(frame)
        from avatar.session import Session

        loop = asyncio.get_running_loop()
        session = await loop.run_in_executor(
            None, lambda: Session(self._profile, self._image, prompt=self._prompt, seed=self._seed))
        if self._allowance is None:
            from ..calibrate import compute_allowance

            self._allowance = await loop.run_in_executor(None, compute_allowance, self._profile, self._threads)
        fps = session.fps
        self.clock = MediaClock(session.window_latency_s + self._allowance, fps, SAMPLE_RATE)
        window_s = session.frames_per_window / fps
        self._frames = FrameBuffer(int((self.clock.delay_s + 2 * window_s) * fps) + session.frames_per_window)
        threads = None if self._threads is None else (lambda: self._threads)
        self.worker = GenerationWorker(session, self.clock, self._frames, self._from_worker,
                                       name=f"gen-{self.name}", threads=threads)
        self._last_image = session.reference.image
        self.clock.start()
        self.worker.start()
        self._task = self.create_task(self._pace())
        log.info("service=%s event=started output_delay_s=%.3f", self.name, self.clock.delay_s)

    async def stop(self, frame: EndFrame):
        """Graceful end: what was queued plays out first."""
        await super().stop(frame)
        if self.clock is not None:
            queued = sum(len(s.pcm) - s.fed for s in self._queue if isinstance(s, _Speech)) / SAMPLE_RATE
            deadline = time.monotonic() + self.clock.delay_s + queued + 1.0
            while (self._queue or self._out or self._ending) and time.monotonic() < deadline:
                await asyncio.sleep(1 / self.clock.fps)
        await self._shut()

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        await self._shut()

    async def cleanup(self):
        await super().cleanup()
        await self._shut()

    async def _shut(self) -> None:
        if self._task is not None:
            await self.cancel_task(self._task)
            self._task = None
        if self.worker is not None:
            worker, self.worker = self.worker, None
            worker.notify = lambda event: None
            await asyncio.get_running_loop().run_in_executor(None, worker.stop)

    # ---- frames in --------------------------------------------------------------------------------
    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction is not FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame):
            await self._take_speech(frame)  # comes back out re-timed
        elif isinstance(frame, TTSStartedFrame):
            self._queue.append(_Mark(True, frame.context_id))
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSStoppedFrame):
            self._append_pcm(self._resampler.flush())
            self._queue.append(_Mark(False, frame.context_id))
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame):
            self._interrupt()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _take_speech(self, frame: TTSAudioRawFrame) -> None:
        if frame.num_channels < 1 or len(frame.audio) % (2 * frame.num_channels):
            await self.push_error(error_msg=f"TTS audio of {len(frame.audio)} bytes is not whole "
                                            f"{frame.num_channels}-channel 16-bit samples; dropped")
            return
        samples = np.frombuffer(frame.audio, np.int16).reshape(-1, frame.num_channels)
        try:
            pcm = self._resampler.push(samples, frame.sample_rate)
        except AvatarError as exc:
            await self.push_error(error_msg=f"TTS audio dropped: {exc}")
            return
        self._queue.append(_Speech(pcm, frame.audio, frame.sample_rate, frame.num_channels, frame.context_id))

    def _append_pcm(self, pcm: np.ndarray) -> None:
        """The resampler's tail, after the audio it belongs to."""
        if not len(pcm):
            return
        last = self._queue[-1] if self._queue else None
        if isinstance(last, _Speech):
            last.pcm = np.concatenate([last.pcm, pcm])
        else:
            self._queue.append(_Speech(pcm, b"", SAMPLE_RATE, 1, None))

    # ---- the clock: feed the engine as a live voice, push frames when due ----------------------------
    async def _pace(self) -> None:
        clock = self.clock
        while True:
            now = time.monotonic()
            due_samples = int(clock.media_now(now) * SAMPLE_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
            while self._fed < due_samples:
                self._feed_frame()
            while clock.frame_due(self._next_frame) <= now:
                await self._push_frame(self._next_frame)
                self._next_frame += 1
            next_feed = clock.sample_due(self._fed + SAMPLES_PER_FRAME) - clock.delay_s
            wake = min(next_feed, clock.frame_due(self._next_frame))
            await asyncio.sleep(max(wake - time.monotonic(), 0.0))

    def _feed_frame(self) -> None:
        """One video frame's worth of timeline audio to the engine: queued TTS audio, else silence."""
        index = self._fed // SAMPLES_PER_FRAME
        missing = SAMPLES_PER_FRAME
        while missing and self._queue:
            item = self._queue[0]
            if isinstance(item, _Mark):
                self._queue.popleft()
                self._mark(item)
                continue
            if self._utterance is None:  # audio without a TTSStartedFrame before it
                self._utterance = _Utterance(item.context_id)
            if self._utterance.start is None:
                self._utterance.start = self._fed
            pcm, audio = item.take(missing)
            if item.fed == len(item.pcm):
                self._queue.popleft()
            if len(pcm):
                self.worker.push_audio(pcm, True)
                self._fed += len(pcm)
                missing -= len(pcm)
            if audio:
                self._out.setdefault(index, []).append(_Speech(pcm, audio, item.sample_rate, item.channels,
                                                                item.context_id))
        if missing:
            self.worker.push_audio(np.zeros(missing, np.float32), False)
            self._fed += missing

    def _mark(self, mark: _Mark) -> None:
        ongoing = self._utterance
        if ongoing is not None and (mark.starts or ongoing.start is not None):
            ongoing.end = self._fed
            if ongoing.start is not None:
                self._ending.append(ongoing)
            self._utterance = None
        if mark.starts:
            self._utterance = _Utterance(mark.context_id)

    async def _push_frame(self, index: int) -> None:
        for piece in self._out.pop(index, []):
            out = TTSAudioRawFrame(piece.audio, piece.sample_rate, piece.channels, context_id=piece.context_id)
            out.pts = self._pts(index)
            await self.push_frame(out)
        frame = self._frames.take(index)
        held = self._hold is not None and self._hold[0] <= index and (self._hold[1] is None or index < self._hold[1])
        if frame is not None and not held:
            self._last_image = frame.image
        image = self._last_image
        out = OutputImageRawFrame(image.tobytes(), (image.shape[1], image.shape[0]), "RGB")
        out.pts = self._pts(index)
        await self.push_frame(out)
        end = (index + 1) * SAMPLES_PER_FRAME
        while self._ending and self._ending[0].end <= end:
            done = self._ending.popleft()
            await self._report(done, done.end, cut=False)

    def _pts(self, index: int) -> int:
        return round(index * 1_000_000_000 / self.clock.fps)

    # ---- interruption ----------------------------------------------------------------------------
    def _interrupt(self) -> None:
        """Drop the TTS audio not pushed yet, hold the face still until the engine's windows without it
        arrive, and report where the utterance stopped."""
        if self.worker is None:
            return
        cut_frame = self._next_frame
        cut = cut_frame * SAMPLES_PER_FRAME
        self._queue.clear()
        self._out.clear()
        self._resampler = Resampler(SAMPLE_RATE)
        self.worker.interrupt()
        stopped = [u for u in (*self._ending, self._utterance) if u is not None and u.start is not None]
        self._ending.clear()
        self._utterance = None
        for utterance in stopped:
            was_cut = utterance.end is None or utterance.end > cut
            if was_cut:  # its speech was in frames not pushed yet
                self._hold = (cut_frame, None)
            at = max(utterance.start, min(cut, utterance.end if utterance.end is not None else cut))
            self.create_task(self._report(utterance, at, was_cut))

    async def _report(self, utterance: _Utterance, at: int, cut: bool) -> None:
        played = SpeechPlayed(utterance.context_id, round((at - utterance.start) / SAMPLE_RATE, 3), cut,
                              round(at / SAMPLE_RATE, 3))
        log.info("service=%s event=speech_played context=%s played_to_s=%.3f cut=%s", self.name,
                 played.context_id, played.played_to_s, cut)
        await self._call_event_handler("on_speech_played", played)

    # ---- from the worker thread ---------------------------------------------------------------
    def _from_worker(self, event: WorkerEvent) -> None:
        self.get_event_loop().call_soon_threadsafe(self._on_worker_event, event)

    def _on_worker_event(self, event: WorkerEvent) -> None:
        match event:
            case Interrupted(sample, _):  # the engine's windows from this frame on are without the speech
                if self._hold is not None and self._hold[1] is None:
                    self._hold = (self._hold[0], -(-sample // SAMPLES_PER_FRAME))
            case Degraded(reason, behind_s, skipped):
                log.warning("service=%s event=degraded reason=%s behind_s=%.3f skipped_frames=%d",
                            self.name, reason, behind_s, skipped)
            case Failed(message):
                self.create_task(self.push_error(error_msg=f"avatar generation failed: {message}", fatal=True))
