"""One call: a peer connection, its audio intake and VAD, a generation worker, paced tracks, stats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from avatar.errors import AvatarError

from .buffers import FrameBuffer, VoiceBuffer
from .clock import MediaClock
from .ice import rtc_configuration
from .intake import AudioIntake
from .peer import check_offer_sdp, prefer_vp8, shorten_audio_prefetch
from .protocol import ProtocolError
from .stamp import stamp_index
from .tracks import DelayedVoiceTrack, PacedVideoTrack
from .vad import SpeechDetector
from .worker import GenerationWorker

log = logging.getLogger(__name__)

STARVED_POLL_S = 0.1  # how often a silent input is checked (and filled with silence)


class Call:
    def __init__(self, call_id: str, profile, config, send, vad_model_factory, executor=None,
                 compute_allowance_s: float = 0.2, torch_threads=None):
        self.id = call_id
        self.profile = profile
        self.config = config
        self.compute_allowance_s = compute_allowance_s
        self._torch_threads = torch_threads  # () -> int, asked before each window
        self._send = send  # async (dict) -> None; never raises
        self._vad_model_factory = vad_model_factory
        self._executor = executor  # runs the VAD off the loop (None: the default pool)
        self.loop = asyncio.get_running_loop()
        self.pc: RTCPeerConnection | None = None
        self.worker: GenerationWorker | None = None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.vad_events: deque = deque(maxlen=100)  # the latest, for stats and tests
        self.intake: AudioIntake | None = None
        self._stats_started = time.monotonic()
        self._last_sent = 0
        self._last_vad_lag: float | None = None
        self._counted = (0, 0)  # frames sent and repeated at the last stats message
        self._late_frames = False  # a late_frames "degraded" was sent and the stream has not recovered

    # ---- set-up -----------------------------------------------------------------------------
    async def start(self, offer: dict, image) -> dict:
        from avatar.session import Session

        cfg = self.config
        check_offer_sdp(offer["sdp"])  # before any work
        try:
            session = await self.loop.run_in_executor(
                None, lambda: Session(self.profile, image, prompt=offer.get("prompt"), seed=cfg.seed))
            vad_model = await self.loop.run_in_executor(None, self._vad_model_factory)
        except AvatarError as exc:
            raise ProtocolError("bad_image", str(exc)) from None
        self.session = session
        self.prompt = offer.get("prompt")
        fps, rate = self.profile.fps, 16000
        self.window_s = session.frames_per_window / fps
        self.clock = MediaClock(session.window_latency_s + self.compute_allowance_s, fps, rate)
        self.frames = FrameBuffer(int((self.clock.delay_s + 2 * self.window_s) * fps) + session.frames_per_window)
        self.voice = VoiceBuffer(self.clock.delay_s + 2.0, rate)
        self.detector = SpeechDetector(vad_model)
        self.intake = AudioIntake(self.clock)
        self.worker = GenerationWorker(session, self.clock, self.frames, self._from_worker, name=f"gen-{self.id}",
                                       threads=self._torch_threads)
        decorate = stamp_index if cfg.stamp_frames else None
        self.video = PacedVideoTrack(self.clock, self.frames, session.reference.image, decorate)
        self.voice_track = DelayedVoiceTrack(self.clock, self.voice)

        pc = self.pc = RTCPeerConnection(rtc_configuration(self.config.ice_servers))
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_state)
        # Our transceivers exist before the offer is applied, so it takes their codecs and directions:
        # voice both ways, video out only (a caller's camera is never asked for, nor decoded).
        pc.addTransceiver(self.voice_track, direction="sendrecv")
        prefer_vp8(pc.addTransceiver(self.video, direction="sendonly"))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        except Exception as exc:  # aiortc raises assorted errors (even AssertionError) on bad SDP
            raise ProtocolError("bad_sdp", f"the offer could not be used: {type(exc).__name__} {exc}") from None
        if cfg.audio_receive_prefetch is not None:
            shorten_audio_prefetch(pc, cfg.audio_receive_prefetch)
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise ProtocolError("bad_sdp", f"no answer could be made for this offer: {type(exc).__name__} {exc}") from None
        self.worker.start()
        self._spawn(self._stats_loop())
        log.info("call=%s event=answered output_delay_s=%.3f", self.id, self.clock.delay_s)
        return {"type": "answer", "sdp": pc.localDescription.sdp, "delay_s": round(self.clock.delay_s, 3),
                "fps": fps, "resolution": list(self.profile.resolution)}

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_track(self, track) -> None:
        if track.kind == "audio":
            self._spawn(self._intake_loop(track))
        else:
            self._spawn(self._discard_loop(track))

    async def _on_state(self) -> None:
        state = self.pc.connectionState if self.pc else "closed"
        log.info("call=%s event=connection state=%s", self.id, state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            await self.close(f"connection {state}")

    async def add_candidate(self, msg: dict) -> None:
        if self.pc is None:
            return
        if msg["candidate"] is None:  # the caller has no more: ICE may now report failure
            await self.pc.addIceCandidate(None)
            return
        try:
            cand = candidate_from_sdp(msg["candidate"].removeprefix("candidate:"))
        except (ValueError, IndexError) as exc:
            raise ProtocolError("bad_message", f"bad ICE candidate: {exc}") from None
        cand.sdpMid, cand.sdpMLineIndex = msg["sdpMid"], msg["sdpMLineIndex"]
        await self.pc.addIceCandidate(cand)

    # ---- media in -------------------------------------------------------------------------------
    async def _intake_loop(self, track) -> None:
        self.clock.start()
        ended = False
        while not self.closed.is_set():
            if ended:  # no more input: silence keeps the face idling until the call closes
                await asyncio.sleep(STARVED_POLL_S)
                await self._take_audio(self.intake.fill_silence())
                continue
            try:
                frame = await asyncio.wait_for(track.recv(), STARVED_POLL_S)
            except asyncio.TimeoutError:
                await self._take_audio(self.intake.fill_silence())
                continue
            except MediaStreamError:
                ended = True
                continue
            await self._take_audio(self.intake.push(frame))

    async def _take_audio(self, pcm) -> None:
        if not len(pcm):
            return
        self.voice.append(pcm)
        chunks, events = await self.loop.run_in_executor(self._executor, self.detector.push, pcm)
        for chunk in chunks:
            self.worker.push_audio(chunk.pcm, chunk.speech)
        for event in events:
            self._report_vad(event)

    def _report_vad(self, event) -> None:
        offset = self.intake.input_offset or 0
        now_media = self.clock.media_now()
        self._last_vad_lag = now_media - event.seconds if event.kind == "speechstart" else self._last_vad_lag
        msg = {"type": "vad", "event": event.kind, "t": round(event.seconds, 3),
               "input_t": round((event.sample - offset) / 16000, 3),
               "frame": event.sample // 640, "shows_in_s": round(self.clock.sample_due(event.sample) - time.monotonic(), 3)}
        self.vad_events.append(msg)
        self._spawn(self._send(msg))

    async def _discard_loop(self, track) -> None:
        while not self.closed.is_set():
            try:
                await track.recv()
            except MediaStreamError:
                return

    # ---- control --------------------------------------------------------------------------------
    def interrupt(self) -> None:
        self.worker.interrupt()

    def set_prompt(self, text: str) -> None:
        self.prompt = text
        self.worker.set_prompt(text)

    async def change_avatar(self, image) -> None:
        """A new session for the new image (built off the loop), taken over at the next window."""
        from avatar.session import Session

        try:
            session = await self.loop.run_in_executor(
                None, lambda: Session(self.profile, image, prompt=self.prompt, seed=self.config.seed))
        except AvatarError as exc:
            raise ProtocolError("bad_image", str(exc)) from None
        self.worker.swap_session(session)

    def _from_worker(self, kind: str, payload: dict) -> None:
        """Called from the worker thread: hop onto the loop."""
        self.loop.call_soon_threadsafe(self._on_worker_event, kind, payload)

    def _on_worker_event(self, kind: str, payload: dict) -> None:
        if kind == "interrupted":
            self.voice.mute_from(payload["sample"])
            self._spawn(self._send({"type": "interrupted", "t": round(payload["sample"] / 16000, 3)}))
        elif kind == "avatar":
            self._spawn(self._send({"type": "avatar", "ok": True, "frame": payload["frame"]}))
        elif kind == "degraded":
            self._spawn(self._send({"type": "degraded", **payload}))
        elif kind == "failed":
            self._spawn(self._send({"type": "error", "code": "generation_failed", "message": payload["message"]}))
            self._spawn(self.close("generation failed"))

    # ---- stats ---------------------------------------------------------------------------------
    def stats(self) -> dict:
        with self.worker.lock:
            work = self.worker.stats.snapshot()
        now = time.monotonic()
        elapsed = max(now - self._stats_started, 1e-6)
        sent = self.video.sent
        fps = (sent - self._last_sent) / elapsed
        self._stats_started, self._last_sent = now, sent
        s = self.session
        return {
            "type": "stats",
            "fps": round(fps, 2),
            "frames_sent": sent,
            "frames_repeated": self.video.repeated,
            "frames_dropped": self.frames.overflowed,  # a late frame is counted once, as its slot's repeat
            "queued_frames": len(self.frames),
            "speaking": self.detector.speaking,
            "input_offset_s": None if self.intake.input_offset is None else round(self.intake.input_offset / 16000, 4),
            "input_gaps": self.intake.gaps,
            "latency": {  # the budget, term by term (seconds)
                "window_s": round(self.window_s, 3),
                "lookahead_s": round(s.lookahead_s, 3),
                "compute_allowance_s": round(self.compute_allowance_s, 3),
                "output_delay_s": round(self.clock.delay_s, 3),
                "compute_last_s": work["compute_last_s"],
                "compute_p95_s": work["compute_p95_s"],
                "slack_min_s": work["slack_min_s"],
                "vad_onset_s": None if self._last_vad_lag is None else round(self._last_vad_lag, 3),
            },
            "engine": {k: work[k] for k in ("windows", "idle_windows", "fewer_steps", "catch_ups", "late_windows")},
        }

    async def _network_rtt(self) -> float | None:
        """Round-trip time the caller reports for our video (RTCP receiver reports), if any yet."""
        try:
            report = await self.pc.getStats()
        except Exception:  # stats are best effort; a closing connection has none
            return None
        rtts = [s.roundTripTime for s in report.values()
                if type(s).__name__ == "RTCRemoteInboundRtpStreamStats" and s.kind == "video"
                and s.roundTripTime is not None]
        return round(rtts[0], 4) if rtts else None

    async def _stats_loop(self) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(self.config.stats_interval_s)
            if self.clock.started and not self.closed.is_set():
                try:
                    stats = self.stats()
                    stats["latency"]["network_rtt_s"] = await self._network_rtt()
                except Exception:  # stats must never end the call
                    log.exception("call=%s event=stats_failed", self.id)
                    continue
                await self._send(stats)
                await self._report_late_frames(stats)

    async def _report_late_frames(self, stats: dict) -> None:
        """One "degraded" when too many frames since the last stats were repeats; again after a good interval."""
        sent = stats["frames_sent"] - self._counted[0]
        repeated = stats["frames_repeated"] - self._counted[1]
        self._counted = (stats["frames_sent"], stats["frames_repeated"])
        late = sent > 0 and repeated / sent > self.config.degraded_repeat_share
        if late and not self._late_frames:
            share = round(repeated / sent, 3)
            log.info("call=%s event=degraded reason=late_frames repeated_share=%.3f", self.id, share)
            await self._send({"type": "degraded", "reason": "late_frames", "repeated_share": share,
                              "behind_s": round(max(0.0, -(stats["latency"]["slack_min_s"] or 0.0)), 3)})
        self._late_frames = late

    # ---- tear-down ----------------------------------------------------------------------------
    async def close(self, reason: str = "closed") -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        log.info("call=%s event=closing reason=\"%s\"", self.id, reason)
        if self.worker is not None:
            worker = self.worker
            await self.loop.run_in_executor(None, worker.stop)
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self.pc is not None:
            await self.pc.close()
