"""STUN/TURN servers for calls across NATs: given as `--ice-server` (repeatable) or AVATAR_ICE_SERVERS,
used by the server's own peer and handed to clients in "ready" (in the browser's RTCIceServer form)."""

from __future__ import annotations

import re
from urllib.parse import unquote

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcicetransport import parse_stun_turn_uri

ICE_ENV = "AVATAR_ICE_SERVERS"  # the same URLs, separated by commas or spaces
FORM = "stun:HOST[:PORT] or turn:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp] (turns: for TLS)"


def parse_ice_server(text: str) -> dict:
    """One server URL, its credentials (percent-encoded) before '@', as an RTCIceServer dict:
    {"urls": [url], "username": ..., "credential": ...}. Errors never repeat the password."""
    scheme, colon, rest = text.strip().partition(":")
    credentials = {}
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon2, password = userinfo.partition(":")
        if not (colon2 and user and password):
            raise ValueError(f"--ice-server {scheme}:…@{rest}: credentials go as USER:PASSWORD@ ({FORM})")
        credentials = {"username": unquote(user), "credential": unquote(password)}
    url = f"{scheme}:{rest}" if colon else scheme
    try:
        if not colon:
            raise ValueError
        if not 0 < parse_stun_turn_uri(url)["port"] < 65536:
            raise ValueError
    except ValueError:
        raise ValueError(f"--ice-server {url!r} is not a STUN/TURN URL: use {FORM}") from None
    if scheme in ("turn", "turns") and not credentials:
        raise ValueError(f"--ice-server {url}: a TURN server needs a user and password: {FORM}")
    return {"urls": [url], **credentials}


def ice_servers_from(flags: list[str] | None, env: str | None) -> tuple[dict, ...]:
    """The --ice-server flags if any were given, else the environment variable's list."""
    texts = flags or [t for t in re.split(r"[,\s]+", env or "") if t]
    return tuple(parse_ice_server(t) for t in texts)


def rtc_configuration(servers) -> RTCConfiguration:
    """aiortc's configuration from RTCIceServer dicts (ours, or those a server sent in "ready")."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=s["urls"], username=s.get("username"),
                                                     credential=s.get("credential")) for s in servers])
