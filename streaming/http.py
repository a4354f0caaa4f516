"""The server's HTTP layer (aiohttp): one application for the demo page and client (static files),
/healthz, /metrics, the avatar list and the /ws signaling socket, with CORS and the refusals.

Adding routes: a route module is a function `add_routes(app, server)` that registers its handlers
with `app.router` (any method); `build_app` takes them in order and adds the static files last, so
no path a module registers is shadowed. A handler reaches the server as `request.app[SERVER]`,
checks the shared secret with `check_token(request, server.config.token)` (Bearer or ?token=) and
refuses a request by raising `Refused(status, reason, body)`: the middleware answers it and logs one
WARNING line with the reason code. It also answers OPTIONS (CORS preflights included) for every path,
405 with an Allow header for a method a path does not take, adds the CORS headers for the allowed
origins and refuses a state-changing method (POST, PATCH, DELETE...) from any other origin.
Only a bug of ours gets a 500 and a traceback."""

from __future__ import annotations

import json
import logging
import mimetypes
import ssl
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError

from .origins import SAFE_METHODS, cors_headers, origin_ok, preflight_headers, token_ok
from .protocol import ProtocolError

log = logging.getLogger(__name__)

WS_PATH = "/ws"
SERVER = web.AppKey("server", object)  # the AvatarServer, for route modules
STATIC = web.AppKey("static", object)  # the static files' catch-all resource, added last
# Route modules' extra OPTIONS headers: callables (request, allowed methods) -> [(name, value)]
OPTIONS_HEADERS = web.AppKey("options_headers", list)
MAX_SEGMENT_CHARS = 255  # a longer path segment cannot name a file (most file systems' limit)
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".html": "text/html; charset=utf-8",
                 ".css": "text/css", ".json": "application/json", ".ts": "text/plain; charset=utf-8",
                 ".png": "image/png", ".svg": "image/svg+xml", ".wav": "audio/wav"}
RouteModule = Callable[[web.Application, object], None]
SHUTDOWN_TIMEOUT_S = 1.0
KEEPALIVE_TIMEOUT_S = 15.0  # an idle keep-alive HTTP connection is closed after this


class Refused(Exception):
    """A request refused with a 4xx status; `reason` is the code in the log line."""

    def __init__(self, status: int, reason: str, body: str, headers: dict | None = None):
        super().__init__(body)
        self.status, self.reason, self.body, self.headers = status, reason, body, headers or {}


def response(status: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8",
             extra: dict | None = None) -> web.Response:
    body = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": content_type, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               **(extra or {})}
    return web.Response(status=status, body=body, headers=headers)


def json_response(data, status: int = 200) -> web.Response:
    return response(status, json.dumps(data), "application/json")


def quoted(value, limit: int = 120) -> str:
    """A client's text for a log line: quoted, escaped (it may hold any byte), cut short."""
    return json.dumps(str(value)[:limit])


def static_file(root: Path, url_path: str) -> web.Response:
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


def single_header(request: web.BaseRequest, name: str) -> str | None:
    values = request.headers.getall(name, [])
    if len(values) > 1:
        raise Refused(400, "duplicate_header", f"more than one {name} header")
    return values[0] if values else None


def url_path(request: web.BaseRequest) -> str:
    return urlsplit(request.raw_path).path


def check_token(request: web.BaseRequest, expected: str | None) -> None:
    """The shared secret, from `?token=` or `Authorization: Bearer`."""
    given = (parse_qs(urlsplit(request.raw_path).query).get("token") or [None])[0]
    auth = single_header(request, "Authorization")
    if given is None and auth and auth.startswith("Bearer "):
        given = auth[len("Bearer "):]
    if not token_ok(expected, given):
        raise Refused(401, "token", "unauthorized")


def check_origin(origin: str | None, allowed: frozenset[str]) -> None:
    if not origin_ok(origin, allowed):
        raise Refused(403, "origin", f"origin not allowed: {quoted(origin)}")


async def allowed_methods(request: web.Request) -> set[str]:
    """The methods the request's path takes (OPTIONS always): those of the routes on that path, and
    GET/HEAD (the static files) only for a path no route module claims."""
    static, routed = set(), set()
    for resource in request.app.router.resources():
        _, methods = await resource.resolve(request)
        (static if resource is request.app[STATIC] else routed).update(methods)
    return ((routed or static) - {"*"}) | {"OPTIONS"}


async def options(request: web.Request, origin: str | None, server) -> web.Response:
    methods = await allowed_methods(request)
    allow = ", ".join(sorted(methods))
    if origin is not None and "Access-Control-Request-Method" in request.headers:  # a CORS preflight
        check_origin(origin, server.origins)
        return response(204, extra={"Allow": allow, **preflight_headers(origin, allow)})
    answer = response(204, extra={"Allow": allow})
    for headers_of in request.app[OPTIONS_HEADERS]:
        for name, value in headers_of(request, methods):
            answer.headers.add(name, value)
    return answer


async def http_error(request: web.Request, exc: web.HTTPException, server) -> web.Response:
    """aiohttp's own refusals: a method the path does not take (or a CONNECT, whose host:port is no
    path) gets 405 with Allow and a log line; the others keep their status."""
    if isinstance(exc, web.HTTPMethodNotAllowed) or (isinstance(exc, web.HTTPNotFound) and
                                                     request.method not in SAFE_METHODS):
        log.warning("event=refused reason=method method=%s path=%s", quoted(request.method, 20),
                    quoted(request.raw_path))
        server.metrics.refused("method")
        allow = ", ".join(sorted(await allowed_methods(request)))
        return response(405, "method not allowed", extra={"Allow": allow})
    if exc.status >= 500:
        raise exc
    return response(exc.status, exc.text or exc.reason,
                    extra={k: v for k, v in exc.headers.items() if k not in ("Content-Type", "Content-Length")})


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    server = request.app[SERVER]
    origin = None
    try:
        if any(not value.isascii() for _, value in request.raw_headers):
            raise Refused(400, "non_ascii_header", "header values must be ASCII")
        origin = single_header(request, "Origin")
        if request.method == "OPTIONS":
            answer = await options(request, origin, server)
        else:
            if request.method not in SAFE_METHODS:
                check_origin(origin, server.origins)
            answer = await handler(request)
    except Refused as refusal:
        log.warning("event=refused reason=%s method=%s path=%s", refusal.reason, quoted(request.method, 20),
                    quoted(request.raw_path))
        server.metrics.refused(refusal.reason)
        answer = response(refusal.status, refusal.body, extra=refusal.headers)
    except web.HTTPException as exc:
        answer = await http_error(request, exc, server)
    except Exception:  # our bug: one request fails, the server goes on
        log.exception("event=request_failed method=%s path=%s", quoted(request.method, 20), quoted(request.raw_path))
        answer = response(500, "the server failed on this request; it is logged")
    if origin is not None and not answer.prepared and origin_ok(origin, server.origins):
        for key, value in cors_headers(origin).items():
            answer.headers.setdefault(key, value)
    return answer


# ---- the routes of the page, the client and the server's state ------------------------------------------------
def add_routes(app: web.Application, server) -> None:
    async def health(request):
        return json_response(server.health())

    async def metrics(request):
        return response(200, server.metrics.render(), server.metrics.content_type)

    async def to_demo(request):
        return response(302, "", extra={"Location": "/demo/"})

    async def avatar_list(request):
        return json_response({"avatars": server.avatars.ids()})

    async def avatar_png(request):
        try:
            return response(200, server.avatars.png(request.match_info["name"]), "image/png")
        except ProtocolError:
            return response(404, "unknown avatar")

    for path, handler in (("/healthz", health), ("/metrics", metrics), ("/", to_demo), ("/avatars.json", avatar_list),
                          ("/avatars/{name}.png", avatar_png)):
        app.router.add_get(path, handler)


async def static(request: web.Request) -> web.Response:
    return static_file(request.app[SERVER].config.static_dir, url_path(request))


def build_app(server, route_modules: tuple[RouteModule, ...]) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[SERVER] = server
    app[OPTIONS_HEADERS] = []
    for add in route_modules:
        add(app, server)
    app[STATIC] = app.router.add_get("/{path:.*}", static).resource
    return app


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(app: web.Application, host: str, port: int, tls_cert: str | None = None,
                tls_key: str | None = None) -> web.AppRunner:
    """Serves the app on host:port (HTTPS with a certificate); the runner's cleanup() stops it."""
    runner = web.AppRunner(app, access_log=None, logger=RequestLog(), shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                           keepalive_timeout=KEEPALIVE_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls_context(tls_cert, tls_key) if tls_cert else None).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class RequestLog(logging.LoggerAdapter):
    """The logger aiohttp's connection handler is given. It logs every request it cannot parse (a
    port scanner, TLS on the plain port, garbled bytes) as an ERROR with a traceback; those are the
    client's doing, so each becomes one line with a reason code: INFO for bytes that are not an HTTP
    request at all, WARNING for a malformed one. Anything else passes through unchanged."""

    def __init__(self):
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def log(self, level, msg, *args, **kwargs):
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            not_http = isinstance(exc, (BadHttpMethod, BadStatusLine))
            log.log(logging.INFO if not_http else logging.WARNING, "event=refused reason=%s detail=%s",
                    "not_http" if not_http else "bad_request", quoted(f"{type(exc).__name__}: {exc.message}"))
            return
        super().log(level, msg, *args, **kwargs)
