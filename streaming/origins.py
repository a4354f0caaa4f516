"""Who may call the server: the token, the origins a browser page may call from, and the CORS headers
that tell a browser so.

The allowed origins are the configured ones (AVATAR_ALLOWED_ORIGINS) and the server's own: its scheme
on its bound address and port. They are never derived from a request's Host header, which a
DNS-rebinding page sets to its own name."""

from __future__ import annotations

import hmac
import ipaddress
import socket

# Methods a page never changes anything with: a foreign origin gets the answer without CORS headers
# (so its page cannot read it); the other methods from a foreign origin are refused outright.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a page on an allowed origin may send and read (WHIP/WHEP: bearer token, SDP, ETag, Location).
CORS_REQUEST_HEADERS = "Authorization, Content-Type, If-Match"
CORS_EXPOSED_HEADERS = "Location, ETag, Link, Accept-Patch"
CORS_MAX_AGE_S = 600


def token_ok(expected: str | None, given: str | None) -> bool:
    if not expected:
        return True
    # Header values hold any byte a client sent (non-ASCII ones as surrogate escapes).
    return given is not None and hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def own_origins(host: str, port: int, scheme: str = "http") -> frozenset[str]:
    """The origins of the pages this server serves itself: its scheme on its bound address and port,
    by the names that reach that address (`localhost` for loopback; the machine's own name and
    addresses for a wildcard bind)."""
    names = {host}
    if host in ("", "0.0.0.0", "::"):
        names = {"127.0.0.1", "::1", "localhost", socket.gethostname()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
    elif host == "localhost":
        names |= {"127.0.0.1", "::1"}
    elif _is_loopback(host):
        names |= {"localhost"}
    urls = {f"[{name}]" if ":" in name else name for name in names}
    origins = {f"{scheme}://{name}:{port}" for name in urls}
    if port == {"http": 80, "https": 443}[scheme]:
        origins |= {f"{scheme}://{name}" for name in urls}
    return frozenset(origins)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_ok(origin: str | None, allowed: frozenset[str] | tuple[str, ...]) -> bool:
    """No Origin (not a browser), one of the server's own origins, or a configured one."""
    return origin is None or origin in allowed or "*" in allowed


def cors_headers(origin: str) -> dict[str, str]:
    """For an answer to an allowed origin's page. The origin is echoed (never `*`), so the answer
    varies with it."""
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": CORS_EXPOSED_HEADERS,
            "Vary": "Origin"}


def preflight_headers(origin: str, methods: str) -> dict[str, str]:
    return {**cors_headers(origin), "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS, "Access-Control-Max-Age": str(CORS_MAX_AGE_S)}
