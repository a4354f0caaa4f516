"""WHIP and WHEP endpoints over HTTP (aiohttp routes); the sessions themselves are in broadcast.py.

    POST   /whip?avatar=ID&prompt=TEXT   application/sdp offer -> 201, answer, Location /whip/{id},
                                         ETag, Link rel="alternate" </whep/{watch}> (+ ICE servers)
    PATCH  /whip/{id}                    application/trickle-ice-sdpfrag, If-Match: ETag -> 204 (428, 412; 422 restart)
    GET    /whip/{id}                    the session's status (JSON: viewers, latest stats, VAD events)
    DELETE /whip/{id}                    ends the session, its viewers too, and frees the slot -> 200
    POST   /whep/{watch}                 a viewer's application/sdp offer -> 201, Location /whep/{watch}/{viewer}
    PATCH  /whep/{watch}/{viewer}        trickle -> 204;  DELETE /whep/{watch}/{viewer} -> 200

With a server token, every request needs `Authorization: Bearer <token>` (401 otherwise). A
refusal is the HTTP layer's `Refused` (a 4xx, 503 when full, with a plain-text reason and one
WARNING log line); OPTIONS, CORS and 405 are the HTTP layer's too (streaming/http.py).
"""

from __future__ import annotations

import logging

from aiohttp import web

from .broadcast import Broadcast
from .http import OPTIONS_HEADERS, Refused, check_token, quoted
from .protocol import MAX_PROMPT_CHARS, MAX_SDP_CHARS, WHEP_OFFER, WHIP_OFFER, Offer, ProtocolError, check_offer_sdp

log = logging.getLogger(__name__)

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"


def ice_server_links(servers) -> list[str]:
    """The server's STUN/TURN servers as RFC 9725 Link header values."""
    links = []
    for server in servers:
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if server.get("username"):
                link += f'; username="{server["username"]}"; credential="{server["credential"]}"; ' \
                        'credential-type="password"'
            links.append(link)
    return links


class WhipEndpoints:
    def __init__(self, server):
        self.server = server
        self.config = server.config
        self.broadcasts: dict[str, Broadcast] = {}  # by WHIP resource id
        self.watched: dict[str, Broadcast] = {}  # the same, by WHEP id

    def routes(self) -> list[web.RouteDef]:
        h = self._authorized
        return [web.post("/whip", h(self.publish)), web.get("/whip/{id}", h(self.status)),
                web.patch("/whip/{id}", h(self.trickle_publisher)), web.delete("/whip/{id}", h(self.end)),
                web.post("/whep/{watch}", h(self.watch)),
                web.patch("/whep/{watch}/{viewer}", h(self.trickle_viewer)),
                web.delete("/whep/{watch}/{viewer}", h(self.leave))]

    def _authorized(self, handler):
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                check_token(request, self.config.token)
            except Refused as refusal:  # RFC 9725 names the scheme the client should use
                refusal.headers["WWW-Authenticate"] = 'Bearer realm="avatar"'
                refusal.body = "unauthorized: send Authorization: Bearer <the server's token>"
                raise
            return await handler(request)
        return handle

    async def _body(self, request: web.Request, content_type: str) -> str:
        if request.content_type != content_type:
            raise Refused(415, "content_type", f"the body must be {content_type}, not {request.content_type!r}",
                          {"Accept-Post": SDP} if content_type == SDP else {"Accept-Patch": SDPFRAG})
        if request.content_length is not None and request.content_length > MAX_SDP_CHARS:
            raise Refused(413, "too_large", f"the body is larger than {MAX_SDP_CHARS} bytes")
        raw = await request.read()  # (a chunked body is bounded by aiohttp's client_max_size)
        if len(raw) > MAX_SDP_CHARS:
            raise Refused(413, "too_large", f"the body is larger than {MAX_SDP_CHARS} bytes")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "bad_sdp", "the body is not UTF-8 text") from None

    def _created(self, answer: str, location: str, etag: str, links: list[str]) -> web.Response:
        response = web.Response(status=201, body=answer.encode(), content_type=SDP)
        response.headers["Location"] = location
        response.headers["ETag"] = etag
        response.headers["Accept-Patch"] = SDPFRAG  # trickle ICE is taken (as the WHEP drafts ask)
        for link in links + ice_server_links(self.config.ice_servers):
            response.headers.add("Link", link)
        return response

    # ---- WHIP -------------------------------------------------------------------------------
    async def publish(self, request: web.Request) -> web.Response:
        sdp = await self._body(request, SDP)
        try:
            check_offer_sdp(sdp, WHIP_OFFER, others=True)
            image = self.server.avatars.image(request.query.get("avatar") or self.server.avatars.first)
        except ProtocolError as exc:
            raise Refused(400, exc.code, exc.message) from None
        prompt = request.query.get("prompt")
        if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
            raise Refused(400, "bad_message", f"the prompt is longer than {MAX_PROMPT_CHARS} characters")
        calls = self.server.calls
        if len(calls) >= self.config.max_sessions:
            raise Refused(503, "full", f"the server is full ({self.config.max_sessions} sessions); try again later",
                          {"Retry-After": "10"})
        broadcast = Broadcast(sdp, self.config)
        call_id = f"whip-{broadcast.id[:6]}"
        calls[call_id] = None  # the slot is taken now
        call = self.server.new_call(call_id, broadcast.keep, broadcast=True)
        try:
            answer = await call.start(Offer(sdp, prompt=prompt), image)
        except BaseException as exc:
            calls.pop(call_id, None)
            await call.close("set-up failed")
            if isinstance(exc, ProtocolError):
                raise Refused(400, exc.code, exc.message) from None
            raise
        calls[call_id] = call
        self.server.metrics.call_started(call)
        self.broadcasts[broadcast.id] = self.watched[broadcast.watch_id] = broadcast
        broadcast.attach(call, self._ended)
        log.info("call=%s event=publishing sessions=%d max_sessions=%d", call_id, len(calls), self.config.max_sessions)
        return self._created(answer["sdp"], f"/whip/{broadcast.id}", broadcast.etag,
                             [f'</whep/{broadcast.watch_id}>; rel="alternate"'])

    def _broadcast(self, request: web.Request, by_watch: bool = False) -> Broadcast:
        found = (self.watched if by_watch else self.broadcasts).get(request.match_info["watch" if by_watch else "id"])
        if found is None or found.closed.is_set():
            raise Refused(404, "unknown_session", "no such session (it may have ended)")
        return found

    async def trickle_publisher(self, request: web.Request) -> web.Response:
        broadcast = self._broadcast(request)
        await broadcast.trickle(await self._body(request, SDPFRAG), request.headers.get("If-Match"))
        return web.Response(status=204)

    async def status(self, request: web.Request) -> web.Response:
        broadcast = self._broadcast(request)
        return web.json_response(broadcast.status() | {"whep": f"/whep/{broadcast.watch_id}"})

    async def end(self, request: web.Request) -> web.Response:
        await self._ended(self._broadcast(request), "publisher hung up")
        return web.Response(status=200, text="session ended")

    async def _ended(self, broadcast: Broadcast, reason: str) -> None:
        """Free the slot at once, then end the viewers and the call (once; never raises)."""
        if self.broadcasts.pop(broadcast.id, None) is None:
            return
        self.watched.pop(broadcast.watch_id, None)
        call = broadcast.call
        self.server.calls.pop(call.id, None)
        log.info("call=%s event=slot_freed reason=%s sessions=%d max_sessions=%d", call.id, quoted(reason),
                 len(self.server.calls), self.config.max_sessions)
        try:
            await broadcast.close(reason)
        except Exception:  # our bug; it must not keep the slot
            log.exception("call=%s event=close_failed", call.id)
        self.server.metrics.call_ended(call)

    async def close_all(self, reason: str) -> None:
        for broadcast in list(self.broadcasts.values()):
            await self._ended(broadcast, reason)
        for broadcast in list(self.watched.values()):  # watched websocket calls
            await self._unwatched(broadcast, reason)

    def watchable(self, offer_sdp: str) -> Broadcast:
        """For a websocket call that lets WHEP players watch it: its viewers' Broadcast, to start the
        call with (Call.start(watched=...)), then `watch_call`."""
        return Broadcast(offer_sdp, self.config)

    def watch_call(self, broadcast: Broadcast, call) -> str:
        """Open a started websocket call to WHEP players (until it ends); returns where to watch it.
        The watch id is the capability: only the caller learns it (plus the token, if the server has one)."""
        self.watched[broadcast.watch_id] = broadcast
        broadcast.attach(call, self._unwatched, drain=False)
        log.info("call=%s event=watchable", call.id)
        return f"/whep/{broadcast.watch_id}"

    async def _unwatched(self, broadcast: Broadcast, reason: str) -> None:
        """A watched websocket call ended: its viewers end; its slot is the websocket's to free."""
        if self.watched.pop(broadcast.watch_id, None) is not None:
            await broadcast.close(reason)

    # ---- WHEP -------------------------------------------------------------------------------
    async def watch(self, request: web.Request) -> web.Response:
        broadcast = self._broadcast(request, by_watch=True)
        sdp = await self._body(request, SDP)
        try:
            check_offer_sdp(sdp, WHEP_OFFER, others=True)
        except ProtocolError as exc:
            raise Refused(400, exc.code, exc.message) from None
        viewer, answer = await broadcast.add_viewer(sdp)
        return self._created(answer, f"/whep/{broadcast.watch_id}/{viewer.id}", viewer.etag, [])

    def _viewer(self, request: web.Request):
        viewer = self._broadcast(request, by_watch=True).viewers.get(request.match_info["viewer"])
        if viewer is None:
            raise Refused(404, "unknown_viewer", "no such viewer (it may have left)")
        return viewer

    async def trickle_viewer(self, request: web.Request) -> web.Response:
        await self._viewer(request).trickle(await self._body(request, SDPFRAG), request.headers.get("If-Match"))
        return web.Response(status=204)

    async def leave(self, request: web.Request) -> web.Response:
        viewer = self._viewer(request)
        await viewer.broadcast.drop_viewer(viewer.id, "viewer hung up")
        return web.Response(status=200, text="viewer left")


def add_routes(app: web.Application, server) -> None:
    """The route module (streaming/http.py): the server's WhipEndpoints' routes, and on OPTIONS of a
    path that takes an offer, what it accepts and the ICE servers (RFC 9725's Accept-Post and Links)."""
    app.router.add_routes(server.whip.routes())

    def offer_headers(request: web.Request, methods: set[str]) -> list[tuple[str, str]]:
        if "POST" not in methods or not (request.path == "/whip" or request.path.startswith("/whep/")):
            return []
        try:  # TURN credentials only to whom may publish
            check_token(request, server.config.token)
        except Refused:
            return [("Accept-Post", SDP)]
        return [("Accept-Post", SDP)] + [("Link", link) for link in ice_server_links(server.config.ice_servers)]

    app[OPTIONS_HEADERS].append(offer_headers)
