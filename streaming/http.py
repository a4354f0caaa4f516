"""Plain HTTP on the websocket port: the demo page and client (static files), /healthz, the avatar
list; and the gate in front of /ws (token, then origin) that runs before any work is done.

A request this server refuses gets a 4xx status and one WARNING log line with a reason code (bytes
that are not an HTTP request at all, such as a bare TCP connect, one INFO line); only a bug of ours
gets a 500 and a traceback."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import mimetypes
import socket
import sys
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import InvalidHandshake, InvalidMessage
from websockets.http11 import Response

from .protocol import ProtocolError

log = logging.getLogger(__name__)

WS_PATH = "/ws"
MAX_SEGMENT_CHARS = 255  # a longer path segment cannot name a file (most file systems' limit)
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html; charset=utf-8",
                 ".css": "text/css", ".json": "application/json", ".ts": "text/plain; charset=utf-8",
                 ".png": "image/png", ".svg": "image/svg+xml", ".wav": "audio/wav"}


class Refused(Exception):
    """A request refused with a 4xx status; `reason` is the code in the log line."""

    def __init__(self, status: int, reason: str, body: str):
        super().__init__(body)
        self.status, self.reason, self.body = status, reason, body


def response(status: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8",
             extra: dict | None = None) -> Response:
    body = body.encode() if isinstance(body, str) else body
    headers = Headers({"Content-Type": content_type, "Content-Length": str(len(body)),
                       "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    for key, value in (extra or {}).items():
        headers[key] = value
    return Response(status, HTTPStatus(status).phrase, headers, body)


def json_response(data, status: int = 200) -> Response:
    return response(status, json.dumps(data), "application/json")


def quoted(value, limit: int = 120) -> str:
    """A client's text for a log line: quoted, escaped (it may hold any byte), cut short."""
    return json.dumps(str(value)[:limit])


def static_file(root: Path, url_path: str) -> Response:
    """A file under root, never outside it (no '..', no hidden files)."""
    parts = [p for p in unquote(url_path).split("/") if p]
    if any(p.startswith(".") or "\\" in p or "\x00" in p or len(p) > MAX_SEGMENT_CHARS for p in parts):
        return response(404, "not found")
    path = root.joinpath(*parts) if parts else root
    try:
        if path.is_dir():
            path = path / "index.html"
        resolved = path.resolve(strict=True)
        resolved.relative_to(root.resolve())
        if not resolved.is_file():
            return response(404, "not found")
        body = resolved.read_bytes()
    except (ValueError, OSError):  # outside the root, missing, unreadable, a name the OS refuses
        return response(404, "not found")
    kind = CONTENT_TYPES.get(resolved.suffix) or mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
    return response(200, body, kind)


def token_ok(expected: str | None, given: str | None) -> bool:
    if not expected:
        return True
    # Header values hold any byte a client sent (non-ASCII ones as surrogate escapes).
    return given is not None and hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def own_origins(host: str, port: int) -> frozenset[str]:
    """The origins of the pages this server serves itself: http on its bound address and port, by
    the names that reach that address (`localhost` for loopback; the machine's own name and
    addresses for a wildcard bind). Never derived from a request's Host header, which a
    DNS-rebinding page sets to its own name."""
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
    origins = {f"http://{name}:{port}" for name in urls}
    if port == 80:
        origins |= {f"http://{name}" for name in urls}
    return frozenset(origins)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_ok(origin: str | None, allowed: frozenset[str] | tuple[str, ...]) -> bool:
    """No Origin (not a browser), one of the server's own origins, or a configured one."""
    return origin is None or origin in allowed or "*" in allowed


def single_header(headers, name: str) -> str | None:
    try:
        return headers.get(name)
    except MultipleValuesError:
        raise Refused(400, "duplicate_header", f"more than one {name} header") from None


class HttpRoutes:
    """websockets' process_request hook: answers plain HTTP, or lets the /ws handshake through."""

    def __init__(self, config, avatars, health, metrics):
        self.config = config
        self.avatars = avatars
        self.health = health  # () -> dict
        self.metrics = metrics  # streaming/metrics.py
        self.origins: frozenset[str] = frozenset(config.allowed_origins)  # + own_origins once bound

    def bind(self, host: str, port: int) -> None:
        self.origins = frozenset(self.config.allowed_origins) | own_origins(host, port)

    def __call__(self, connection, request) -> Response | None:
        try:
            return self._route(request)
        except Refused as refusal:
            log.warning("event=refused reason=%s path=%s", refusal.reason, quoted(request.path))
            self.metrics.refused(refusal.reason)
            return response(refusal.status, refusal.body)
        except Exception:  # our bug: one request fails, the server goes on
            log.exception("event=request_failed path=%s", quoted(request.path))
            return response(500, "the server failed on this request; it is logged")

    def _route(self, request) -> Response | None:
        if any(not value.isascii() for _, value in request.headers.raw_items()):
            raise Refused(400, "non_ascii_header", "header values must be ASCII")
        url = urlsplit(request.path)
        path = url.path
        if path == WS_PATH:
            return self._gate(request, parse_qs(url.query))
        if path == "/healthz":
            return json_response(self.health())
        if path == "/metrics":
            return response(200, self.metrics.render(), self.metrics.content_type)
        if path == "/":
            return response(302, "", extra={"Location": "/demo/"})
        if path == "/avatars.json":
            return json_response({"avatars": self.avatars.ids()})
        if path.startswith("/avatars/") and path.endswith(".png"):
            try:
                return response(200, self.avatars.png(path[len("/avatars/"):-4]), "image/png")
            except ProtocolError:
                return response(404, "unknown avatar")
        return static_file(self.config.static_dir, path)

    def _gate(self, request, query: dict) -> None:
        given = (query.get("token") or [None])[0]
        auth = single_header(request.headers, "Authorization")
        if given is None and auth and auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        if not token_ok(self.config.token, given):
            raise Refused(401, "token", "unauthorized")
        origin = single_header(request.headers, "Origin")
        if not origin_ok(origin, self.origins):
            raise Refused(403, "origin", f"origin not allowed: {quoted(origin)}")
        return None


class HandshakeLog(logging.LoggerAdapter):
    """The logger websockets is given. It logs every failed opening handshake (a bare TCP connect, a
    port scanner, plain HTTP on /ws) as an ERROR with a traceback; those are the client's doing, so
    each becomes one line with a reason code: INFO for bytes that are not an HTTP request at all,
    WARNING for a request refused. Anything else passes through unchanged."""

    def __init__(self):
        super().__init__(logging.getLogger("websockets.server"), {})

    def log(self, level, msg, *args, **kwargs):
        exc = sys.exc_info()[1]
        if msg == "opening handshake failed" and isinstance(exc, (InvalidHandshake, EOFError, ConnectionError)):
            not_http = isinstance(exc, (InvalidMessage, EOFError, ConnectionError))
            cause = exc.__cause__ or exc
            log.log(logging.INFO if not_http else logging.WARNING, "event=refused reason=%s detail=%s",
                    "not_http" if not_http else "bad_handshake", quoted(f"{type(cause).__name__}: {cause}"))
            return
        super().log(level, msg, *args, **kwargs)
