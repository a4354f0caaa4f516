"""aiortc specifics: codec choice, the receive buffer, and the failures of aiortc's own tasks.
(The offer itself is checked in protocol.py.)"""

from __future__ import annotations

import logging
import traceback

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpsender import RTCRtpSender

log = logging.getLogger(__name__)


def prefer_vp8(transceiver) -> None:
    """VP8 is the cheapest encoder aiortc has; keep rtx so loss recovery still works."""
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
    transceiver.setCodecPreferences(codecs)


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
