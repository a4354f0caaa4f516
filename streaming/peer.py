"""aiortc specifics: checking an offer before any work, codec choice, the receive buffer, dropping
unwanted media, and letting go of a closed peer connection."""

from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import SessionDescription

from .protocol import ProtocolError

log = logging.getLogger(__name__)


def prefer_vp8(transceiver) -> None:
    """VP8 is the cheapest encoder aiortc has; keep rtx so loss recovery still works."""
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
    transceiver.setCodecPreferences(codecs)


def check_offer_sdp(sdp: str) -> None:
    """Parse the offer (cheap) so a bad one is refused before a session is built."""
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser asserts on malformed lines
        raise ProtocolError("bad_sdp", f"the offer is not valid SDP ({type(exc).__name__} {exc})") from None
    kinds = sorted(m.kind for m in parsed.media)
    if kinds != ["audio", "video"]:
        raise ProtocolError("bad_sdp", f"the offer must have one audio and one video section, not {kinds}")
    if not any(m.kind == "audio" and m.direction in ("sendrecv", "sendonly", None) for m in parsed.media):
        raise ProtocolError("bad_sdp", "the offer's audio section must send")


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
