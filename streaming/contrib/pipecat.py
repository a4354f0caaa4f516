"""The avatar as a Pipecat service: a pipeline's TTS audio in, the avatar's frames and the same audio,
re-timed to them, out (`pip install talking-avatar[pipecat]`).

Place it after the TTS service and before the output transport. The TTS audio (which comes in bursts,
faster than real time) becomes a live voice (`TtsVoice`): one frame of 16 kHz audio at a time goes to a
`GenerationWorker` as the media clock goes, as the server feeds a caller's voice, so the engine never
runs ahead of the clock and an interruption has little to throw away. Video frame i is pushed at
`clock.frame_due(i)` (25 fps; the last frame again when one is not ready, never a stall), with the TTS
audio that frame shows, byte for byte as the TTS made it: video and voice leave in sync, `delay_s`
after the TTS made them (the engine's window latency plus the compute allowance). The other frames
keep their place behind that audio (the TTS's words reach the transport, and the assistant's
context, as they are heard; an interruption drops those not heard, as it drops the audio).

An `InterruptionFrame` cuts at the next frame: the TTS audio not yet pushed is dropped, the face holds
still until the engine's windows without that speech come (`Session.interrupt`, through the worker),
and `on_speech_played` says where each utterance stopped, as it does when one plays to its end (the
`played_to`/`cut` of the server's `interrupted` and `speechend` messages).
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from pipecat.frames.frames import (CancelFrame, EndFrame, Frame, InterruptionFrame, OutputImageRawFrame,
                                   StartFrame, SystemFrame, TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.ai_service import AIService
from pipecat.services.settings import ServiceSettings

from avatar.errors import AvatarError
from avatar.threads import torch_threads
from models.audio_features import SAMPLE_RATE, SAMPLES_PER_FRAME

from ..buffers import FrameBuffer
from ..clock import MediaClock
from ..events import Degraded, Failed, Interrupted, WorkerEvent
from ..worker import GenerationWorker
from .tts_voice import Speech, SpeechPlayed, TtsVoice

log = logging.getLogger(__name__)

__all__ = ["AvatarVideoService", "SpeechPlayed"]


class AvatarVideoService(AIService):
    """TTS audio -> avatar video + the same audio re-timed, from an engine `Session`.

    `profile`: a loaded `avatar.profiles.Profile` (`load_profile("tiny")`); `image`: the face (path,
    PIL image or HxWx3 array); `compute_allowance_s`: the output delay beyond the engine's window
    latency (None: measured at start, as the server does); `threads`: torch threads for the worker
    (None: as the server gives one call).
    Event `on_speech_played(service, SpeechPlayed)`: an utterance played out or was cut.
    """

    def __init__(self, *, profile, image, prompt: str | None = None, seed: int = 0,
                 compute_allowance_s: float | None = None, threads: int | None = None, **kwargs):
        super().__init__(settings=ServiceSettings(model=None), **kwargs)  # no model to choose
        self._profile, self._image, self._prompt, self._seed = profile, image, prompt, seed
        self._allowance = compute_allowance_s
        self._threads = torch_threads() if threads is None else threads
        self.clock: MediaClock | None = None
        self.worker: GenerationWorker | None = None
        self._frames: FrameBuffer | None = None
        self._voice: TtsVoice | None = None
        self._task: asyncio.Task | None = None
        self._next_frame = 0  # the next video frame to push
        self._last_image: np.ndarray | None = None
        self._hold: tuple[int, int | None] | None = None  # frames [a, b) held still after a cut (b: not known yet)
        self._asked = self._answered = 0  # interrupts asked of the worker, and answered
        self._hold_answer = 0  # the answer that ends the hold: to the interrupt that started it
        self._register_event_handler("on_speech_played")

    @property
    def delay_s(self) -> float | None:
        return None if self.clock is None else self.clock.delay_s

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, frame: StartFrame):
        await super().start(frame)
        from avatar.remote import open_session

        loop = asyncio.get_running_loop()
        try:
            session = await loop.run_in_executor(None, lambda: open_session(
                self._profile, self._image, prompt=self._prompt, seed=self._seed, threads=self._threads))
        except AvatarError as exc:  # frames pass through untouched; the pipeline is told
            await self.push_error(error_msg=f"the avatar cannot start: {exc}", force_treat_as_permanent=True)
            return
        if self._allowance is None:
            from ..calibrate import compute_allowance

            self._allowance = await loop.run_in_executor(None, compute_allowance, self._profile, self._threads)
        fps = session.fps
        self.clock = MediaClock(session.window_latency_s + self._allowance, fps, SAMPLE_RATE)
        window_s = session.frames_per_window / fps
        self._frames = FrameBuffer(int((self.clock.delay_s + 2 * window_s) * fps) + session.frames_per_window)
        self.worker = GenerationWorker(session, self.clock, self._frames, self._from_worker,
                                       name=f"gen-{self.name}", threads=lambda: self._threads)
        self._voice = TtsVoice(self.worker.push_audio)
        self._last_image = session.reference.image
        self.clock.start()
        self.worker.start()
        self._task = self.create_task(self._pace())
        log.info("service=%s event=started output_delay_s=%.3f", self.name, self.clock.delay_s)

    async def stop(self, frame: EndFrame):
        """Graceful end: what was queued plays out first."""
        await super().stop(frame)
        if self._voice is not None:
            deadline = time.monotonic() + self.clock.delay_s + self._voice.queued_s() + 1.0
            while self._voice.pending and time.monotonic() < deadline:
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
        voice = self._voice
        if direction is not FrameDirection.DOWNSTREAM or voice is None:
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame):  # comes back out re-timed
            try:
                voice.add(frame.audio, frame.sample_rate, frame.num_channels, frame.context_id)
            except AvatarError as exc:
                await self.push_error(error_msg=f"TTS audio dropped: {exc}")
        elif isinstance(frame, InterruptionFrame):
            await self._interrupt()
            await self.push_frame(frame, direction)
        else:
            if isinstance(frame, TTSStartedFrame):
                voice.started(frame.context_id)
            elif isinstance(frame, TTSStoppedFrame):
                voice.stopped(frame.context_id)
            if isinstance(frame, (SystemFrame, EndFrame)) or not voice.follow(frame):
                await self.push_frame(frame, direction)  # else it goes on after the audio before it

    # ---- the clock: feed the engine as a live voice, push frames when due ----------------------------
    async def _pace(self) -> None:
        clock, voice = self.clock, self._voice
        while True:
            now = time.monotonic()
            due_samples = int(clock.media_now(now) * SAMPLE_RATE) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME
            while voice.fed < due_samples:
                voice.feed_frame()
            while clock.frame_due(self._next_frame) <= now:
                await self._push_frame(self._next_frame)
                self._next_frame += 1
            next_feed = clock.sample_due(voice.fed + SAMPLES_PER_FRAME) - clock.delay_s
            await asyncio.sleep(max(min(next_feed, clock.frame_due(self._next_frame)) - time.monotonic(), 0.0))

    async def _push_frame(self, index: int) -> None:
        pts = round(index * 1_000_000_000 / self.clock.fps)
        for item in self._voice.out_for(index):
            if isinstance(item, Speech):
                item = TTSAudioRawFrame(item.audio, item.sample_rate, item.channels, context_id=item.context_id)
                item.pts = pts
            await self.push_frame(item)
        frame = self._frames.take(index)
        hold = self._hold
        held = hold is not None and hold[0] <= index and (hold[1] is None or index < hold[1])
        if frame is not None and not held:
            self._last_image = frame.image
        image = self._last_image
        video = OutputImageRawFrame(image.tobytes(), (image.shape[1], image.shape[0]), "RGB")
        video.pts = pts
        await self.push_frame(video)
        for played in self._voice.ended_by(index):
            await self._report(played)

    # ---- interruption ----------------------------------------------------------------------------
    async def _interrupt(self) -> None:
        """Drop the TTS audio not pushed yet, hold the face still until the engine's windows without it
        come, and say where each utterance stopped."""
        if self.worker is None:
            return
        self.worker.interrupt()
        self._asked += 1
        stopped = self._voice.interrupt(self._next_frame)
        if any(played.cut for played in stopped):  # the frames from here on were made talking
            self._hold, self._hold_answer = (self._next_frame, None), self._asked
        for played in stopped:
            await self._report(played)

    async def _report(self, played: SpeechPlayed) -> None:
        log.info("service=%s event=speech_played context=%s played_to_s=%.3f cut=%s", self.name,
                 played.context_id, played.played_to_s, played.cut)
        await self._call_event_handler("on_speech_played", played)

    # ---- from the worker thread ---------------------------------------------------------------
    def _from_worker(self, event: WorkerEvent) -> None:
        self.get_event_loop().call_soon_threadsafe(self._on_worker_event, event)

    def _on_worker_event(self, event: WorkerEvent) -> None:
        match event:
            case Interrupted(sample, _):  # the engine's frames from this sample on are without the speech
                self._answered += 1
                if self._hold is not None and self._answered == self._hold_answer:
                    self._hold = (self._hold[0], -(-sample // SAMPLES_PER_FRAME))
            case Degraded(reason, behind_s, skipped):
                log.warning("service=%s event=degraded reason=%s behind_s=%.3f skipped_frames=%d",
                            self.name, reason, behind_s, skipped)
            case Failed(message):
                self.create_task(self.push_error(error_msg=f"avatar generation failed: {message}",
                                                 force_treat_as_permanent=True))
