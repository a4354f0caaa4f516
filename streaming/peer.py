"""aiortc specifics: codec choice and the receive buffer. (The offer itself is checked in protocol.py.)"""

from __future__ import annotations

import logging

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
