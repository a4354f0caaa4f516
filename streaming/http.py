"""Plain HTTP on the websocket port: the demo page and client (static files), /healthz, the avatar
list; and the gate in front of /ws (token, then origin) that runs before any work is done."""

from __future__ import annotations

import hmac
import json
import logging
import mimetypes
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response

from .protocol import ProtocolError

log = logging.getLogger(__name__)

WS_PATH = "/ws"
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html; charset=utf-8",
                 ".css": "text/css", ".json": "application/json", ".ts": "text/plain; charset=utf-8",
                 ".png": "image/png", ".svg": "image/svg+xml", ".wav": "audio/wav"}


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


def static_file(root: Path, url_path: str) -> Response:
    """A file under root, never outside it (no '..', no hidden files)."""
    parts = [p for p in unquote(url_path).split("/") if p]
    if any(p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        return response(404, "not found")
    path = root.joinpath(*parts) if parts else root
    if path.is_dir():
        path = path / "index.html"
    try:
        resolved = path.resolve(strict=True)
        resolved.relative_to(root.resolve())
    except (FileNotFoundError, ValueError, OSError):
        return response(404, "not found")
    if not resolved.is_file():
        return response(404, "not found")
    kind = CONTENT_TYPES.get(resolved.suffix) or mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
    return response(200, resolved.read_bytes(), kind)


def token_ok(expected: str | None, given: str | None) -> bool:
    if not expected:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def origin_ok(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser) or the server's own origin or an allowed one."""
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    netloc = urlsplit(origin).netloc
    return bool(host) and netloc == host


class HttpRoutes:
    """websockets' process_request hook: answers plain HTTP, or lets the /ws handshake through."""

    def __init__(self, config, avatars, health, metrics):
        self.config = config
        self.avatars = avatars
        self.health = health  # () -> dict
        self.metrics = metrics  # streaming/metrics.py

    def __call__(self, connection, request) -> Response | None:
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

    def _gate(self, request, query: dict) -> Response | None:
        given = (query.get("token") or [None])[0]
        auth = request.headers.get("Authorization")
        if given is None and auth and auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        if not token_ok(self.config.token, given):
            log.info("event=refused reason=token")
            self.metrics.refused("token")
            return response(401, "unauthorized")
        origin = request.headers.get("Origin")
        if not origin_ok(origin, request.headers.get("Host"), self.config.allowed_origins):
            log.info("event=refused reason=origin origin=\"%s\"", origin)
            self.metrics.refused("origin")
            return response(403, "origin not allowed")
        return None
