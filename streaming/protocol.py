"""Signaling messages over the websocket: JSON objects with a "type".

Every message a caller may send is one of the frozen dataclasses below, and `parse_message` is the
one place that checks them: the JSON, each field, the offer's SDP against the offer contract, and
ICE candidates. The rest of the server only ever sees well-formed messages; anything else becomes a
ProtocolError with a code the client can act on (the connection stays up).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from aiortc import RTCIceCandidate
from aiortc.sdp import SessionDescription, candidate_from_sdp

from avatar.video import is_stream_url

MAX_SDP_CHARS = 64 * 1024
MAX_PROMPT_CHARS = 2000
MAX_URL_CHARS = 2048
MAX_CANDIDATE_CHARS = 1024
MAX_MLINE_INDEX = 64

# The fingerprint algorithms aiortc can check, and their digest sizes: an offer needs one of them.
FINGERPRINT_BYTES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
_FINGERPRINT_VALUE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*")
_CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason  # a finer code within `code`, e.g. why a photo has no usable face

    def to_message(self) -> dict:
        msg = {"type": "error", "code": self.code, "message": self.message}
        return msg if self.reason is None else msg | {"reason": self.reason}


# ---- the messages a caller sends ------------------------------------------------------------------
@dataclass(frozen=True)
class Offer:
    sdp: str  # checked against the offer contract: audio sent, video received, DTLS and ICE present
    avatar: str | None = None
    image: str | None = None  # base64 or a data: URL, decoded by the server
    prompt: str | None = None
    rtmp: str | None = None  # push this call to that RTMP URL too (if the server allows it)
    watch: bool = False  # let WHEP players watch this call (the answer names where; broadcast.py)


@dataclass(frozen=True)
class Candidate:
    candidate: RTCIceCandidate | None  # None: the caller has no more candidates


@dataclass(frozen=True)
class ChooseAvatar:
    id: str | None
    image: str | None


@dataclass(frozen=True)
class SetPrompt:
    text: str


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Bye:
    pass


@dataclass(frozen=True)
class Ping:
    pass


Message = Offer | Candidate | ChooseAvatar | SetPrompt | Interrupt | Bye | Ping


# ---- checks ---------------------------------------------------------------------------------------
def _text(msg: dict, key: str, limit: int, required: bool = True) -> str | None:
    value = msg.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ProtocolError("bad_message", f"{msg.get('type')!r} needs a string {key!r}")
    if len(value) > limit:
        raise ProtocolError("bad_message", f"{key!r} is longer than {limit} characters")
    return value


# What each kind of offer must do with each medium ("send" or "receive"): the websocket caller's
# call, a WHIP publisher (its audio is the voice; a video section is allowed and ignored) and a WHEP
# viewer (video received; an audio section, if any, is the voice).
CALL_OFFER = {"audio": "send", "video": "receive"}
WHIP_OFFER = {"audio": "send"}
WHEP_OFFER = {"video": "receive"}
_DIRECTIONS = {"send": ("sendrecv", "sendonly", None), "receive": ("sendrecv", "recvonly", None)}
_HOW = {"send": "send (sendrecv or sendonly, port not 0 unless bundled)",
        "receive": "receive (recvonly or sendrecv, port not 0 unless bundled)"}


def check_offer_sdp(sdp: str, needs: dict[str, str] = CALL_OFFER, others: bool = False) -> None:
    """The offer contract, before any work: one section of each kind in `needs`, sending or receiving
    as it says (no other sections unless `others`), each with a mid, ICE credentials and a DTLS
    fingerprint aiortc can check."""
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser asserts, indexes and int()s its way through the text
        raise ProtocolError("bad_sdp", f"the offer is not valid SDP ({type(exc).__name__})") from None
    kinds = sorted(m.kind for m in parsed.media)
    if not others and kinds != sorted(needs):
        raise ProtocolError("bad_sdp", f"the offer must have one {' and one '.join(sorted(needs))} section, "
                                       f"not {kinds}")
    for kind in needs:
        if kinds.count(kind) != 1:
            raise ProtocolError("bad_sdp", f"the offer must have one {kind} section, not {kinds.count(kind)}")
    mids = [m.rtp.muxId for m in parsed.media]
    bundled = _bundle_only_mids(sdp)
    for media in parsed.media:
        if media.kind not in needs:
            continue
        if not media.rtp.muxId:
            raise ProtocolError("bad_sdp", f"the offer's {media.kind} section has no a=mid")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise ProtocolError("bad_sdp", f"the offer's {media.kind} section has no a=ice-ufrag / a=ice-pwd")
        _check_fingerprints(media)
        if mids.count(media.rtp.muxId) > 1:
            raise ProtocolError("bad_sdp", f"two of the offer's sections have the same a=mid {media.rtp.muxId!r}")
        way = needs[media.kind]
        if (media.port == 0 and media.rtp.muxId not in bundled) or media.direction not in _DIRECTIONS[way]:
            raise ProtocolError("bad_sdp", f"the offer's {media.kind} section must {_HOW[way]}")


def _bundle_only_mids(sdp: str) -> set[str]:
    """A max-bundle offer (GStreamer's, with audio and video) gives every section but the first of its
    BUNDLE group port 0 and a=bundle-only (RFC 8843): they ride on the first one's transport. (Port 0
    without it still means a refused section.) aiortc's parser drops the attribute, so: the text."""
    mids = set()
    for section in re.split(r"\r?\n(?=m=)", sdp)[1:]:
        lines = section.splitlines()
        if "a=bundle-only" in lines:
            mids |= {line[len("a=mid:"):] for line in lines if line.startswith("a=mid:")}
    return mids


def _check_fingerprints(media) -> None:
    usable = 0
    for fingerprint in media.dtls.fingerprints if media.dtls else ():
        size = FINGERPRINT_BYTES.get(fingerprint.algorithm.lower())
        if not _FINGERPRINT_VALUE.fullmatch(fingerprint.value) or (size and len(fingerprint.value) != 3 * size - 1):
            raise ProtocolError("bad_sdp", f"the offer's {media.kind} section has a malformed a=fingerprint")
        usable += size is not None
    if not usable:
        raise ProtocolError("bad_sdp", f"the offer's {media.kind} section needs an a=fingerprint with one of "
                                       f"{', '.join(FINGERPRINT_BYTES)}")


def _check_offer(msg: dict) -> Offer:
    sdp = _text(msg, "sdp", MAX_SDP_CHARS)
    avatar, image = msg.get("avatar"), msg.get("image")
    if avatar is not None and image is not None:
        raise ProtocolError("bad_message", "give either 'avatar' (an id) or 'image' (an upload), not both")
    if avatar is not None and not isinstance(avatar, str):
        raise ProtocolError("bad_message", "'avatar' must be a string id")
    prompt = _text(msg, "prompt", MAX_PROMPT_CHARS, required=False)
    rtmp = _text(msg, "rtmp", MAX_URL_CHARS, required=False)
    if rtmp is not None and not is_stream_url(rtmp):
        raise ProtocolError("bad_message", "'rtmp' must be an rtmp:// or rtmps:// URL")
    watch = msg.get("watch", False)
    if not isinstance(watch, bool):
        raise ProtocolError("bad_message", "'watch' must be true or false")
    check_offer_sdp(sdp)
    return Offer(sdp, avatar, image, prompt, rtmp, watch)


def parse_candidate(line: str) -> RTCIceCandidate:
    """'candidate:<foundation> <component> <protocol> <priority> <ip> <port> typ <type> ...'"""
    bits = line.removeprefix("candidate:").split()
    if len(bits) < 8 or bits[6] != "typ" or bits[7] not in _CANDIDATE_TYPES:
        raise ProtocolError("bad_message", "'candidate' is not an ICE candidate line "
                                           "('candidate:<foundation> <component> <protocol> <priority> <ip> <port> typ <type>')")
    try:
        cand = candidate_from_sdp(" ".join(bits))
    except (ValueError, IndexError):
        raise ProtocolError("bad_message", "an ICE candidate's component, priority and ports are numbers") from None
    if cand.component not in (1, 2) or not 0 <= cand.port <= 65535 or cand.protocol.lower() not in ("udp", "tcp"):
        raise ProtocolError("bad_message", "an ICE candidate needs component 1 or 2, udp or tcp, a port 0-65535")
    return cand


def _check_candidate(msg: dict) -> Candidate:
    line = msg.get("candidate")
    if line in (None, ""):
        return Candidate(None)
    if not isinstance(line, str) or len(line) > MAX_CANDIDATE_CHARS:
        raise ProtocolError("bad_message", "'candidate' must be an ICE candidate string")
    mid, index = msg.get("sdpMid"), msg.get("sdpMLineIndex")
    if mid is not None and (not isinstance(mid, str) or len(mid) > 64):
        raise ProtocolError("bad_message", "'sdpMid' must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                              or not 0 <= index < MAX_MLINE_INDEX):
        raise ProtocolError("bad_message", "'sdpMLineIndex' must be a small non-negative integer")
    if mid is None and index is None:
        raise ProtocolError("bad_message", "a candidate needs 'sdpMid' or 'sdpMLineIndex'")
    cand = parse_candidate(line)
    cand.sdpMid, cand.sdpMLineIndex = mid, index
    return Candidate(cand)


def _check_avatar(msg: dict) -> ChooseAvatar:
    if (msg.get("id") is None) == (msg.get("image") is None):
        raise ProtocolError("bad_message", "'avatar' needs exactly one of 'id' or 'image'")
    if msg.get("id") is not None and not isinstance(msg["id"], str):
        raise ProtocolError("bad_message", "'id' must be a string")
    return ChooseAvatar(msg.get("id"), msg.get("image"))


_CHECKS = {
    "offer": _check_offer,
    "candidate": _check_candidate,
    "avatar": _check_avatar,
    "prompt": lambda m: SetPrompt(_text(m, "text", MAX_PROMPT_CHARS, required=False) or ""),
    "interrupt": lambda m: Interrupt(),
    "bye": lambda m: Bye(),
    "ping": lambda m: Ping(),
}


def parse_message(raw) -> Message:
    """Raw websocket data -> a checked message, or ProtocolError."""
    if isinstance(raw, (bytes, bytearray)):
        raise ProtocolError("bad_message", "messages are JSON text, not binary")
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError):  # ValueError: also numbers past Python's 4300-digit limit
        raise ProtocolError("bad_message", "message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "a message is a JSON object with a 'type'")
    kind = msg.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise ProtocolError("bad_message", f"unknown message type {kind!r}; known: {', '.join(_CHECKS)}")
    return check(msg)
