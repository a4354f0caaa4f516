"""One call: a peer connection, its audio intake and VAD, a generation worker, paced tracks, stats."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCSessionDescription

from avatar.audio import AudioTimeline
from avatar.errors import AvatarError
from avatar.remote import open_session
from models.audio_features import SAMPLE_RATE

from .avatars import image_refused
from .buffers import FrameBuffer
from .call_input import closes_within, input_t, intake_loop
from .clock import MediaClock
from .events import AvatarSwitched, Degraded, Failed, Interrupted, WorkerEvent
from .ice import rtc_configuration
from .intake import AudioIntake
from .liveness import end_when_silent
from .outputs import MediaOutput, check_caller_rtmp, open_outputs
from .peer import answer_as_dtls_server, discard_track, release_peer, shorten_audio_prefetch
from .protocol import Offer, ProtocolError
from .stats import StatsReporter, network_rtt
from .tracks import DelayedVoiceTrack, PacedVideoTrack
from .utterances import Utterances
from .vad import SpeechDetector
from .worker import GenerationWorker

log = logging.getLogger(__name__)

class Call:
    """One caller's call, from the offer to the hang-up.

    `start(offer, image)` builds the parts and returns the answer: an engine `Session` driven by a
    `GenerationWorker` thread, a `MediaClock`, the `AudioIntake` and `SpeechDetector` that turn the
    caller's audio into timeline audio for the worker and the delayed voice, and the two paced
    tracks (video from the `FrameBuffer`, voice from the voice `AudioTimeline`). Control messages
    (`interrupt`, `set_prompt`, `change_avatar`) go to the worker; its events come back as messages
    to the caller via `send`. `close` ends the call and lets go of every part at once.
    """

    def __init__(self, call_id: str, profile, config, send: Callable[[dict], Awaitable[None]],
                 vad_model_factory: Callable[[], object], executor=None, compute_allowance_s: float = 0.2,
                 torch_threads: Callable[[], int] | None = None,
                 generation_cores: Callable[[], float] | None = None, broadcast: bool = False):
        self.id = call_id
        self.broadcast = broadcast  # WHIP: the caller only sends; viewers take the tracks (broadcast.py)
        self.profile = profile
        self.config = config
        self.compute_allowance_s = compute_allowance_s
        self._torch_threads = torch_threads  # asked before each window
        self._generation_cores = generation_cores  # likewise
        self._send = send  # never raises
        self._vad_model_factory = vad_model_factory
        self.executor = executor  # runs the VAD off the loop (None: the default pool)
        self.loop = asyncio.get_running_loop()
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.vad_events: deque = deque(maxlen=100)  # the latest, for stats and tests
        self.last_vad_lag: float | None = None  # media time from a speech start to its VAD event
        self.utterances = Utterances()  # where each utterance stops playing (its end, or a cut)
        self.prompt: str | None = None
        self._stats = StatsReporter()
        self._closing: asyncio.Future | None = None
        # Built by start():
        self.session = None  # avatar.session.Session
        self.window_s = 0.0
        self.clock: MediaClock | None = None
        self.frames: FrameBuffer | None = None
        self.voice: AudioTimeline | None = None
        self.detector: SpeechDetector | None = None
        self.intake: AudioIntake | None = None
        self.worker: GenerationWorker | None = None
        self.video: PacedVideoTrack | None = None
        self.voice_track: DelayedVoiceTrack | None = None
        self.pc: RTCPeerConnection | None = None
        self.outputs: list[MediaOutput] = []  # RTMP pushes and the recording (streaming/outputs.py)

    # ---- set-up -----------------------------------------------------------------------------
    async def start(self, offer: Offer, image, watched=None) -> dict:
        """`watched`: the Broadcast of a call WHEP players may watch; the caller's tracks come from it."""
        cfg = self.config
        check_caller_rtmp(cfg, offer.rtmp)
        try:
            session = await self._open_session(image, offer.prompt)
            vad_model = await self.loop.run_in_executor(None, self._vad_model_factory)
        except AvatarError as exc:
            raise image_refused(exc) from None
        self.session = session
        self.prompt = offer.prompt
        fps = self.profile.fps
        self.window_s = session.frames_per_window / fps
        self.clock = MediaClock(session.window_latency_s + self.compute_allowance_s, fps, SAMPLE_RATE)
        self.frames = FrameBuffer(int((self.clock.delay_s + 2 * self.window_s) * fps) + session.frames_per_window)
        self.voice = AudioTimeline(max_seconds=self.clock.delay_s + 2.0)
        self.detector = SpeechDetector(vad_model)
        self.intake = AudioIntake(self.clock)
        self.worker = GenerationWorker(session, self.clock, self.frames, self._from_worker, name=f"gen-{self.id}",
                                       threads=self._torch_threads, cores=self._generation_cores)
        decorate = None
        if cfg.stamp_frames:
            from .contrib.stamp import stamp_index  # a test aid, not part of the transport

            decorate = stamp_index
        self.video = PacedVideoTrack(self.clock, self.frames, session.reference.image, decorate)
        self.voice_track = DelayedVoiceTrack(self.clock, self.voice)

        pc = self.pc = RTCPeerConnection(rtc_configuration(self.config.ice_servers))
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        # Our transceivers exist before the offer is applied, so it takes their codecs and directions:
        # voice both ways, video out only (a caller's camera is never asked for, nor decoded). No codec
        # preferences: aiortc answers in the caller's order (VP8 or H.264) and sends the first.
        if self.broadcast:
            pc.addTransceiver("audio", direction="recvonly")
        else:
            voice, video = (self.voice_track, self.video) if watched is None else \
                watched.copies(self.voice_track, self.video)
            pc.addTransceiver(voice, direction="sendrecv")
            pc.addTransceiver(video, direction="sendonly")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as exc:  # aiortc raises assorted errors (even AssertionError) on bad SDP
            raise ProtocolError("bad_sdp", f"the offer could not be used: {type(exc).__name__} {exc}") from None
        if cfg.audio_receive_prefetch is not None:
            shorten_audio_prefetch(pc, cfg.audio_receive_prefetch)
        if self.broadcast:  # a WHIP publisher may be GStreamer (an RSA certificate). A signaling caller
            # keeps aiortc's DTLS client role: as server, a caller that closes its peer connection was not
            # seen to go, and kept its slot (tests/test_streaming_hostile.py, the pc_closed drop).
            answer_as_dtls_server(pc, offer.sdp)
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise ProtocolError("bad_sdp", f"no answer could be made for this offer: {type(exc).__name__} {exc}") from None
        self.worker.start()
        self.outputs = open_outputs(cfg, self.id, offer.rtmp, fps, session.reference.image.shape[:2],
                                    DelayedVoiceTrack.OUT_RATE, self._from_output)
        self.video.outputs = self.voice_track.outputs = self.outputs
        self.spawn(self._stats_loop())
        log.info("call=%s event=answered output_delay_s=%.3f", self.id, self.clock.delay_s)
        return {"type": "answer", "sdp": pc.localDescription.sdp, "delay_s": round(self.clock.delay_s, 3),
                "fps": fps, "resolution": list(session.reference.image.shape[:2]),
                "outputs": [output.kind for output in self.outputs]}

    def spawn(self, coro) -> None:
        """Run a coroutine of this call's (the loops, messages out); close waits for them."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def tell(self, msg: dict) -> None:
        """Send the caller a message without waiting for it to go out."""
        self.spawn(self._send(msg))

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self.spawn(intake_loop(self, track))
        else:
            self.spawn(discard_track(track))

    async def _on_state(self) -> None:
        state = self.pc.connectionState if self.pc else "closed"
        log.info("call=%s event=connection state=%s", self.id, state)
        if state == "connected" and not self.connected.is_set():
            self.connected.set()  # and a caller gone without a word ends the call (the close runs apart)
            self.spawn(end_when_silent(self.pc, self.config.media_timeout_s, self.closed,
                                       lambda reason: asyncio.ensure_future(self.close(reason)), f"call={self.id}"))
        elif state in ("failed", "closed"):
            await self.close(f"connection {state}")

    async def add_candidate(self, candidate: RTCIceCandidate | None) -> None:
        """A checked trickle candidate (None: the caller has no more)."""
        if self.pc is not None:
            await self.pc.addIceCandidate(candidate)

    # ---- control --------------------------------------------------------------------------------
    def _live_worker(self) -> GenerationWorker:
        if self.closed.is_set() or self.worker is None:
            raise ProtocolError("bad_state", "the call has ended")
        return self.worker

    def interrupt(self) -> None:
        self._live_worker().interrupt()
        self.utterances.interrupt_asked()

    def set_prompt(self, text: str) -> None:
        self._live_worker().set_prompt(text)
        self.prompt = text

    async def change_avatar(self, image) -> None:
        """A new session for the new image (built off the loop), taken over at the next window."""
        try:
            session = await self._open_session(image, self.prompt)
        except AvatarError as exc:
            raise image_refused(exc) from None
        try:
            self._live_worker().swap_session(session)
        except ProtocolError:  # the call ended meanwhile
            await self.loop.run_in_executor(None, session.close)
            raise

    async def _open_session(self, image, prompt: str | None):
        """The call's session, built off the loop: in a process of its own on a CPU (avatar/remote.py)."""
        cfg = self.config
        return await self.loop.run_in_executor(None, lambda: open_session(
            self.profile, image, prompt=prompt, seed=cfg.seed, output_mode=cfg.output_mode,
            threads=self._torch_threads()))

    def _from_worker(self, event: WorkerEvent) -> None:
        """Called from the worker thread: hop onto the loop."""
        self.loop.call_soon_threadsafe(self._on_worker_event, event)

    def _from_output(self, kind: str, reason: str) -> None:
        """An output stopped (called from its thread or the loop; it has logged why): tell the caller."""
        try:
            self.loop.call_soon_threadsafe(self._on_output_failed, kind, reason)
        except RuntimeError:  # the loop has ended (the server stopped): nobody is listening
            pass

    def _on_output_failed(self, kind: str, reason: str) -> None:
        if not self.closed.is_set():
            self.tell({"type": "output", "output": kind, "ok": False, "reason": reason})

    def _on_worker_event(self, event: WorkerEvent) -> None:
        if self.closed.is_set():  # sent just before the call closed: nobody is listening
            return
        match event:
            case Interrupted(sample, dropped_speech):
                self.voice.silence_from(sample)
                self.tell({"type": "interrupted", "t": round(event.seconds, 3), "input_t": input_t(self, sample),
                           "cut": self.utterances.interrupted(sample, dropped_speech)})
            case AvatarSwitched(frame):
                self.tell({"type": "avatar", "ok": True, "frame": frame})
            case Degraded(reason, behind_s, skipped_frames):
                self.tell({"type": "degraded", "reason": reason, "behind_s": behind_s,
                           "skipped_frames": skipped_frames})
            case Failed(message):
                self.tell({"type": "error", "code": "generation_failed", "message": message})
                self.spawn(self.close("generation failed"))

    # ---- stats ---------------------------------------------------------------------------------
    def stats(self) -> dict:
        return self._stats.message(self)

    async def _stats_loop(self) -> None:
        while not await closes_within(self.closed, self.config.stats_interval_s):
            if self.clock.started:
                try:
                    stats = self.stats()
                    stats["latency"]["network_rtt_s"] = await network_rtt(self.pc)
                except Exception:  # stats must never end the call
                    log.exception("call=%s event=stats_failed", self.id)
                    continue
                await self._send(stats)
                degraded = self._stats.late_frames(stats, self.config.degraded_repeat_share)
                if degraded is not None:
                    log.info("call=%s event=degraded reason=late_frames repeated_share=%.3f", self.id,
                             degraded["repeated_share"])
                    await self._send(degraded)

    # ---- tear-down ----------------------------------------------------------------------------
    async def close(self, reason: str = "closed") -> None:
        """End the call and let go of everything it holds at once: the worker thread and its session,
        the peer connection (and its codecs), the intake's resampler, the buffers. The references
        between the parts (event handlers, the worker's callback) are cut, so no reference cycle
        keeps a finished call's memory until a full garbage collection. Every caller waits until
        that is done (the server frees the slot after it)."""
        if self._closing is None:
            self.closed.set()
            self._closing = asyncio.ensure_future(self._close(reason))
        await asyncio.shield(self._closing)

    async def _close(self, reason: str) -> None:
        log.info("call=%s event=closing reason=\"%s\"", self.id, reason)
        if self._tasks:  # the loops see `closed` and end within call_input.STARVED_POLL_S (a poll)
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        if self.worker is not None:
            await self.loop.run_in_executor(None, self.worker.stop)
            self.worker.notify = lambda event: None
        if self.pc is not None:
            await self.pc.close()
            release_peer(self.pc)
        for track in (self.video, self.voice_track):
            if track is not None:
                track.stop()
        # after the tracks: nothing more comes; the files are finalised, the threads end
        await asyncio.gather(*(self.loop.run_in_executor(None, output.close) for output in self.outputs))
        self.outputs.clear()
        self.session = self.worker = self.pc = self.video = self.voice_track = None
        self.detector = self.intake = self.frames = self.voice = None

