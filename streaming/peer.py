"""aiortc specifics: the receive buffer, dropping unwanted media, letting go of a
closed peer connection, and the failures of aiortc's own tasks. (The offer itself is checked in
protocol.py.)"""

from __future__ import annotations

import asyncio
import logging
import math
import traceback

import numpy as np
from aiortc import RTCPeerConnection, rtp
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

log = logging.getLogger(__name__)


def shorten_audio_prefetch(pc: RTCPeerConnection, prefetch: int) -> None:
    """aiortc has no setting for its audio jitter buffer; replace it while it is still empty.
    Left alone (with a log line) if aiortc's internals are not what this expects."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        receiver = transceiver.receiver
        current = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
        if isinstance(current, JitterBuffer) and current._origin is None:
            receiver._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=current.capacity, prefetch=prefetch)
        else:
            log.info("event=prefetch_unchanged reason=\"aiortc internals differ\"")


def drop_input_backlog(track, keep: int) -> int:
    """aiortc queues every decoded frame of a remote track, without bound: a reader that falls behind
    (a starved process) would hold an ever longer backlog, all of it still to resample and run the
    VAD on. Drop the oldest beyond `keep`; returns how many went (their time becomes a gap the intake
    fills with silence). End of stream (None) is always the last item, so it is never dropped. Does
    nothing if aiortc's internals are not what this expects."""
    queue = getattr(track, "_queue", None)
    if not isinstance(queue, asyncio.Queue):
        return 0
    dropped = 0
    while queue.qsize() > max(keep, 1):
        queue.get_nowait()
        dropped += 1
    return dropped


def answer_as_dtls_server(pc: RTCPeerConnection, offer_sdp: str) -> None:
    """Call after the offer is applied, before the answer is made. aiortc answers an `actpass` offer
    as DTLS client, and its client offers only ECDSA ciphers: a peer whose certificate is RSA
    (GStreamer's webrtcbin: simple-whip-client, whipsink) then finds no shared cipher. As DTLS
    server aiortc picks an ECDSA cipher, which every client offers. An offer that names its own role
    keeps it. (The offer's own text is read: pc.remoteDescription re-serializes the offer, and raises
    on addresses it parsed but cannot write back.)"""
    remote = SessionDescription.parse(offer_sdp)
    if any(media.dtls is None or media.dtls.role != "auto" for media in remote.media):
        return
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is not None and getattr(dtls, "_role", None) == "auto":
            dtls._set_role("server")


def release_peer(pc: RTCPeerConnection) -> None:
    """After close: cut the event handlers that tie a peer connection to its own transports (the
    peer listens to them and they are its own), so it is freed at once, with its codecs and tracks,
    instead of at the next full garbage collection."""
    pc.remove_all_listeners()
    for transceiver in pc.getTransceivers():
        for end in (transceiver.sender, transceiver.receiver):
            dtls = end.transport
            if dtls is not None:
                dtls.remove_all_listeners()
                dtls.transport.remove_all_listeners()
                dtls.transport.iceGatherer.remove_all_listeners()


async def discard_track(track) -> None:
    """Receive and drop what a track sends (a caller's video, never asked for) until it ends. A
    function, not a method of the call: its frame holds no call when it ends in a reference cycle."""
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return


def audio_level_dbov(frame) -> int:
    """aiortc's `rtp.compute_audio_level_dbov` (RFC 6465 Appendix A, the level each outgoing voice
    packet carries), the same figure from the same bytes, summed by numpy instead of a Python loop
    over every sample (~70 us a 20 ms frame, on the event loop). The sum of squares is an exact
    integer either way."""
    samples = np.frombuffer(bytes(frame.planes[0]), np.int16).astype(np.int64)
    rms = math.sqrt(float(np.dot(samples, samples)) / (frame.samples * 32767 * 32767))
    return round(min(max(20 * math.log10(rms), -127), 0)) if rms > 0 else -127


def use_numpy_audio_level() -> None:
    """Make aiortc's senders use `audio_level_dbov` (they look the function up on each frame)."""
    rtp.compute_audio_level_dbov = audio_level_dbov


def quiet_library_task_failures(loop):
    """aiortc and aioice start tasks they never await; one fails when a caller hangs up mid-set-up
    (e.g. a connect cut short). Each such failure becomes one log line instead of asyncio's
    traceback; any other one (our own bugs) goes to the loop's handler as before. Returns a
    function that puts the previous handler back."""
    previous = loop.get_exception_handler()

    def handle(loop, context: dict) -> None:
        exc = context.get("exception")
        frames = traceback.extract_tb(exc.__traceback__) if exc is not None else []
        if frames and any(f"/{lib}/" in frames[-1].filename for lib in ("aiortc", "aioice")):
            log.info("event=library_task_failed error=\"%s: %s\" in=%s", type(exc).__name__, exc, frames[-1].name)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    return lambda: loop.set_exception_handler(previous)
