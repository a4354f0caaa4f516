"""Signaling messages over the websocket: JSON objects with a "type". Each is checked here so the
rest of the server only ever sees well-formed ones; anything else becomes a ProtocolError that the
server answers with an error message (the connection stays up)."""

from __future__ import annotations

import json

MAX_SDP_CHARS = 64 * 1024
MAX_PROMPT_CHARS = 2000


class ProtocolError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def to_message(self) -> dict:
        return {"type": "error", "code": self.code, "message": self.message}


def _text(msg: dict, key: str, limit: int, required: bool = True) -> str | None:
    value = msg.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise ProtocolError("bad_message", f"{msg.get('type')!r} needs a string {key!r}")
    if len(value) > limit:
        raise ProtocolError("bad_message", f"{key!r} is longer than {limit} characters")
    return value


def _check_offer(msg: dict) -> dict:
    sdp = _text(msg, "sdp", MAX_SDP_CHARS)
    if "m=audio" not in sdp:
        raise ProtocolError("bad_sdp", "the offer must send audio (an m=audio section)")
    if "m=video" not in sdp:
        raise ProtocolError("bad_sdp", "the offer must receive video (an m=video section)")
    if msg.get("avatar") is not None and msg.get("image") is not None:
        raise ProtocolError("bad_message", "give either 'avatar' (an id) or 'image' (an upload), not both")
    if msg.get("avatar") is not None and not isinstance(msg["avatar"], str):
        raise ProtocolError("bad_message", "'avatar' must be a string id")
    return {"type": "offer", "sdp": sdp, "avatar": msg.get("avatar"), "image": msg.get("image"),
            "prompt": _text(msg, "prompt", MAX_PROMPT_CHARS, required=False)}


def _check_candidate(msg: dict) -> dict:
    cand = msg.get("candidate")
    if cand in (None, ""):
        return {"type": "candidate", "candidate": None}
    if not isinstance(cand, str) or len(cand) > 1024:
        raise ProtocolError("bad_message", "'candidate' must be an ICE candidate string")
    mid = msg.get("sdpMid")
    index = msg.get("sdpMLineIndex")
    if mid is not None and not isinstance(mid, str):
        raise ProtocolError("bad_message", "'sdpMid' must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise ProtocolError("bad_message", "'sdpMLineIndex' must be a non-negative integer")
    return {"type": "candidate", "candidate": cand, "sdpMid": mid, "sdpMLineIndex": index}


def _check_avatar(msg: dict) -> dict:
    if (msg.get("id") is None) == (msg.get("image") is None):
        raise ProtocolError("bad_message", "'avatar' needs exactly one of 'id' or 'image'")
    if msg.get("id") is not None and not isinstance(msg["id"], str):
        raise ProtocolError("bad_message", "'id' must be a string")
    return {"type": "avatar", "id": msg.get("id"), "image": msg.get("image")}


_CHECKS = {
    "offer": _check_offer,
    "candidate": _check_candidate,
    "avatar": _check_avatar,
    "prompt": lambda m: {"type": "prompt", "text": _text(m, "text", MAX_PROMPT_CHARS, required=False) or ""},
    "interrupt": lambda m: {"type": "interrupt"},
    "bye": lambda m: {"type": "bye"},
    "ping": lambda m: {"type": "ping"},
}


def parse_message(raw) -> dict:
    """Raw websocket data -> a checked message dict, or ProtocolError."""
    if isinstance(raw, (bytes, bytearray)):
        raise ProtocolError("bad_message", "messages are JSON text, not binary")
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_message", "message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "a message is a JSON object with a 'type'")
    kind = msg.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise ProtocolError("bad_message", f"unknown message type {kind!r}; known: {', '.join(_CHECKS)}")
    return check(msg)
