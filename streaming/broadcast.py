"""WHIP in, WHEP out (RFC 9725; draft-ietf-wish-whep), apart from HTTP itself (whip.py).

A broadcast is a call (call.py) whose caller, the WHIP publisher, only sends: its audio is the voice
that drives the avatar. The call's two paced tracks (the avatar's video and the re-timed voice) go
through one aiortc MediaRelay to every WHEP viewer, each on its own peer connection, and to a drain
that keeps them running on the call's clock while nobody watches. A websocket call that opts in
(offer option `watch`) is watched the same way, its caller taking the drain's place. PATCH bodies (trickle ICE
fragments, RFC 8840) are checked here; a refusal is the HTTP layer's `Refused`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field

import av
from aiortc import MediaStreamTrack, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.sdp import SessionDescription

from .http import Refused
from .ice import rtc_configuration
from .liveness import end_when_silent
from .peer import answer_as_dtls_server, discard_track, release_peer
from .protocol import MAX_CANDIDATE_CHARS, ProtocolError, parse_candidate

log = logging.getLogger(__name__)

MAX_FRAGMENT_CHARS = 16 * 1024
MAX_FRAGMENT_CANDIDATES = 64


def new_id() -> str:
    """A resource id: its URL is handed only to the client that made it, so it must not be guessable."""
    return secrets.token_urlsafe(12)


@dataclass
class Fragment:
    """A trickle ICE fragment: the ICE credentials it names, its candidates (None: end of candidates)."""

    ufrag: str | None = None
    pwd: str | None = None
    candidates: list[RTCIceCandidate | None] = field(default_factory=list)


def parse_sdpfrag(text: str) -> Fragment:
    """application/trickle-ice-sdpfrag (RFC 8840): a=ice-ufrag/a=ice-pwd, then m= sections with
    a=mid, a=candidate and a=end-of-candidates lines. Other lines are allowed and ignored."""
    if len(text) > MAX_FRAGMENT_CHARS:
        raise Refused(413, "fragment_too_large", f"a trickle ICE fragment is at most {MAX_FRAGMENT_CHARS} bytes")
    frag = Fragment()
    index, mid = -1, None  # the m= section a candidate is in (one before any m= line counts as the first)
    for line in text.splitlines():
        line = line.strip()
        key, _, value = line.partition(":")
        if line.startswith("m="):
            index, mid = index + 1, None
        elif key == "a=mid":
            mid = value
        elif key == "a=ice-ufrag":
            frag.ufrag = value
        elif key == "a=ice-pwd":
            frag.pwd = value
        elif key == "a=candidate":
            if len(line) > MAX_CANDIDATE_CHARS or len(frag.candidates) >= MAX_FRAGMENT_CANDIDATES:
                raise Refused(400, "bad_fragment", "too many or too long candidates in the fragment")
            try:
                cand = parse_candidate(line[2:])
            except ProtocolError as exc:
                raise Refused(400, "bad_fragment", exc.message) from None
            cand.sdpMid, cand.sdpMLineIndex = mid, max(index, 0)
            frag.candidates.append(cand)
        elif line == "a=end-of-candidates":
            frag.candidates.append(None)
    return frag


class Resource:
    """What PATCH and DELETE act on: one peer connection, its ETag, and the ICE credentials of the
    offer that made it (a fragment with others asks for an ICE restart, which aiortc cannot do)."""

    def __init__(self, offer_sdp: str):
        self.id = new_id()
        self.etag = f'"{secrets.token_hex(8)}"'
        media = SessionDescription.parse(offer_sdp).media
        ice = next((m.ice for m in media if m.ice is not None), None)
        self.ufrag, self.pwd = (ice.usernameFragment, ice.password) if ice else (None, None)
        self.pc: RTCPeerConnection | None = None
        self._ended = False  # the client sent end-of-candidates

    async def trickle(self, body: str, if_match: str | None) -> None:
        """RFC 9725 4.3.1: a PATCH without If-Match gets 428, a stale one 412; a session that trickles
        but cannot restart ICE answers a restart (If-Match "*", or other credentials) with 422 and
        goes on as it was."""
        if if_match is None:
            raise Refused(428, "etag", "a PATCH needs If-Match: the session's ETag (or * for an ICE restart)")
        if if_match.strip() == "*":
            raise Refused(422, "ice_restart", "ICE restarts are not supported: start a new session")
        if if_match.strip() != self.etag:
            raise Refused(412, "etag", "If-Match does not match this session's ETag", {"ETag": self.etag})
        if self.pc is None or self.pc.connectionState == "closed":
            raise Refused(404, "unknown_session", "this session has ended")
        frag = parse_sdpfrag(body)
        if (frag.ufrag is not None and frag.ufrag != self.ufrag) or (frag.pwd is not None and frag.pwd != self.pwd):
            raise Refused(422, "ice_restart", "ICE restarts are not supported: start a new session")
        for cand in frag.candidates:
            if self._ended:
                break
            self._ended = cand is None
            await self.pc.addIceCandidate(cand)


class OwnFrames(MediaStreamTrack):
    """One viewer's copy of a relayed track. aiortc's encoders run in a thread pool and change the
    frame they get (the video one marks key frames, and converts a frame not in yuv420p with the
    frame's own scaler: two viewers' encoders on the relay's one shared frame at once hung in
    libswscale). So each viewer gets frames of its own, copied here on the event loop."""

    def __init__(self, source: MediaStreamTrack):
        super().__init__()
        self.kind = source.kind
        self._source = source

    async def recv(self):
        frame = await self._source.recv()
        if self.kind == "video":
            own = av.VideoFrame.from_ndarray(frame.reformat(format="yuv420p").to_ndarray(), format="yuv420p")
        else:
            own = av.AudioFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name)
            own.sample_rate = frame.sample_rate
        own.pts, own.time_base = frame.pts, frame.time_base
        return own

    def stop(self) -> None:
        super().stop()
        self._source.stop()


class Viewer(Resource):
    """One WHEP viewer: a peer connection that sends the avatar and the voice, receives nothing."""

    def __init__(self, offer_sdp: str, broadcast: "Broadcast"):
        super().__init__(offer_sdp)
        self.broadcast = broadcast
        self.connected = asyncio.Event()
        self.ended = asyncio.Event()

    async def start(self, offer_sdp: str, config, tracks) -> str:
        pc = self.pc = RTCPeerConnection(rtc_configuration(config.ice_servers))
        for track in tracks:
            pc.addTransceiver(track, direction="sendonly")
        pc.on("connectionstatechange", self._on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            answer_as_dtls_server(pc, offer_sdp)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises assorted errors on SDP it cannot use
            raise Refused(400, "bad_sdp", f"the offer could not be used: {type(exc).__name__} {exc}") from None
        return pc.localDescription.sdp

    async def _on_state(self) -> None:
        state = self.pc.connectionState if self.pc else "closed"
        log.info("call=%s viewer=%s event=connection state=%s", self.broadcast.call.id, self.id[:6], state)
        if state == "connected" and not self.connected.is_set():
            self.connected.set()  # and a viewer gone without DELETE (no more RTCP reports) is dropped
            broadcast = self.broadcast
            broadcast._spawn(end_when_silent(
                self.pc, broadcast.config.media_timeout_s, self.ended,
                lambda reason: broadcast._spawn(broadcast.drop_viewer(self.id, reason)),
                f"call={broadcast.call.id} viewer={self.id[:6]}"))
        elif state in ("failed", "closed"):
            await self.broadcast.drop_viewer(self.id, f"connection {state}")

    async def close(self) -> None:
        self.ended.set()
        pc, self.pc = self.pc, None
        if pc is not None:
            await pc.close()
            release_peer(pc)


class Broadcast(Resource):
    """A WHIP publisher's call and its WHEP viewers. `events` keeps the call's latest messages (vad,
    stats, ...) that a websocket caller would have been sent."""

    def __init__(self, offer_sdp: str, config):
        super().__init__(offer_sdp)
        self.watch_id = new_id()  # its WHEP URL's: a viewer must not learn the WHIP resource's (it can end the session)
        self.config = config
        self.call = None  # a started Call (broadcast=True), set by attach()
        self.viewers: dict[str, Viewer] = {}
        self.events: deque = deque(maxlen=50)
        self.closed = asyncio.Event()
        self._relay = MediaRelay()
        self._tasks: set[asyncio.Task] = set()

    async def keep(self, message: dict) -> None:
        """The call's `send`: nobody is on a websocket, so its messages are kept for GET."""
        self.events.append(message)

    def copies(self, voice, video) -> tuple[MediaStreamTrack, MediaStreamTrack]:
        """A consumer's own copies of a call's voice and video through the relay. Video unbuffered: a
        consumer whose sending falls behind skips to the newest frame rather than lagging ever more;
        the voice buffered: each of its frames is needed."""
        return OwnFrames(self._relay.subscribe(voice)), OwnFrames(self._relay.subscribe(video, buffered=False))

    def attach(self, call, on_end, drain: bool = True) -> None:
        """Take over a started call: drain its tracks (unless its caller takes them: a watched
        websocket call), and end (calling on_end) when it ends or does not connect within the
        signaling timeout."""
        self.call, self.pc = call, call.pc
        for track in (call.video, call.voice_track) if drain else ():
            self._spawn(discard_track(self._relay.subscribe(track, buffered=False)))
        self._spawn(self._watch(on_end))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, on_end) -> None:
        call = self.call
        try:
            await asyncio.wait_for(call.connected.wait(), self.config.signaling_timeout_s)
            reason = "publisher left"
        except asyncio.TimeoutError:
            log.warning("call=%s event=refused reason=timeout", call.id)
            reason = "signaling timeout"
        else:
            await call.closed.wait()
        await on_end(self, reason)

    async def add_viewer(self, offer_sdp: str) -> tuple[Viewer, str]:
        """A new viewer and its answer."""
        if self.closed.is_set() or self.call is None or self.call.closed.is_set():
            raise Refused(404, "unknown_session", "this session has ended")
        if len(self.viewers) >= self.config.max_viewers:
            raise Refused(503, "viewers_full", f"this session has its {self.config.max_viewers} viewers; "
                                               "try again later", {"Retry-After": "10"})
        viewer = Viewer(offer_sdp, self)
        self.viewers[viewer.id] = viewer
        try:
            answer = await viewer.start(offer_sdp, self.config, self.copies(self.call.voice_track, self.call.video))
        except BaseException:
            await self.drop_viewer(viewer.id, "set-up failed")
            raise
        self._spawn(self._viewer_deadline(viewer))
        log.info("call=%s viewer=%s event=watching viewers=%d", self.call.id, viewer.id[:6], len(self.viewers))
        return viewer, answer

    async def _viewer_deadline(self, viewer: Viewer) -> None:
        try:
            await asyncio.wait_for(viewer.connected.wait(), self.config.signaling_timeout_s)
        except asyncio.TimeoutError:
            await self.drop_viewer(viewer.id, "signaling timeout")

    async def drop_viewer(self, viewer_id: str, reason: str) -> bool:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return False
        log.info("call=%s viewer=%s event=left reason=\"%s\" viewers=%d", self.call.id, viewer_id[:6], reason,
                 len(self.viewers))
        await viewer.close()
        return True

    async def close(self, reason: str) -> None:
        """Every viewer first, then the call (its tracks end, and with them the relay)."""
        if self.closed.is_set():
            return
        self.closed.set()
        for viewer_id in list(self.viewers):
            await self.drop_viewer(viewer_id, reason)
        if self.call is not None:
            await self.call.close(reason)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self.pc = None

    def status(self) -> dict:
        stats = next((m for m in reversed(self.events) if m.get("type") == "stats"), None)
        call = self.call
        return {"call": call.id if call else None, "connected": bool(call and call.connected.is_set()),
                "viewers": len(self.viewers), "stats": stats,
                "events": [m for m in self.events if m.get("type") != "stats"]}
