"""The websocket signaling endpoint, GET /ws.

Per websocket: the token and origin are checked in the HTTP handshake (streaming/signaling_socket.py,
before any work), then a session slot is taken (or the caller is told the server is full), then the
caller sends an offer and gets an answer; control messages (streaming/protocol.py) follow, each
dispatched to the socket's Call. WHIP/WHEP (streaming/whip.py) is the same over plain HTTP requests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from dataclasses import dataclass

from aiohttp import web

from .call import Call
from .http import WS_PATH, quoted
from .protocol import (Bye, Candidate, ChooseAvatar, Interrupt, Message, Offer, Ping, ProtocolError, SetPrompt,
                       parse_message)
from .signaling_socket import Closed, SignalingSocket, accept
from .watch import watch_caller

log = logging.getLogger("streaming.server")  # its lines are the server's, as before it was a module

CLOSE_FULL = 1013  # try again later
_GONE = object()


class WebsocketSignaling:
    def __init__(self, server):
        self.server = server
        self._ids = itertools.count(1)
        self._sockets: set[SignalingSocket] = set()

    async def close_all(self, reason: str) -> None:
        for sock in list(self._sockets):
            await sock.close(1001, reason)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """GET /ws: the gate (streaming/signaling_socket.py), then the signaling."""
        cfg = self.server.config
        response, sock = await accept(request, cfg.token, self.server.origins, cfg.max_message_bytes)
        if sock is not None:
            self._sockets.add(sock)
            try:
                await self._handle(sock)
            finally:
                self._sockets.discard(sock)
        return response

    async def _handle(self, ws: SignalingSocket) -> None:
        async def send(msg: dict) -> None:
            try:
                await ws.send(json.dumps(msg))
            except Closed:
                pass

        if len(self.server.calls) >= self.server.config.max_sessions:
            log.warning("event=refused reason=full sessions=%d", len(self.server.calls))
            self.server.metrics.refused("full")
            await send({"type": "error", "code": "busy",
                        "message": f"the server is full ({self.server.config.max_sessions} sessions); try again later"})
            await ws.close(CLOSE_FULL, "server full")
            return
        link = Link(f"c{next(self._ids)}")
        self.server.calls[link.call_id] = None
        log.info("call=%s event=open sessions=%d max_sessions=%d", link.call_id, len(self.server.calls),
                 self.server.config.max_sessions)
        watcher = asyncio.ensure_future(watch_caller(ws, link, send, self.server.config, self._release))
        try:
            await send({"type": "ready", "call": link.call_id, "avatars": self.server.avatars.ids(),
                        "profile": self.server.profile.name, "fps": self.server.profile.fps,
                        "ice_servers": list(self.server.config.ice_servers),
                        "limits": {"max_upload_bytes": self.server.config.max_upload_bytes,
                                   "max_image_side": self.server.config.max_image_side}})
            async for raw in ws:
                try:
                    msg = parse_message(raw)
                    if isinstance(msg, Bye):
                        break
                    await self._dispatch(msg, link, send)
                except ProtocolError as exc:
                    log.warning("call=%s event=refused_message code=%s message=%s", link.call_id, exc.code,
                                quoted(exc.message))
                    self.server.metrics.refused(exc.code)
                    await send(exc.to_message())
                except Closed:
                    raise
                except Exception as exc:  # a bug in one call must not end the server
                    log.exception("call=%s event=message_failed", link.call_id)
                    await send({"type": "error", "code": "internal",
                                "message": f"the server failed on this message ({type(exc).__name__}); it is logged"})
        except Closed:
            pass
        finally:
            watcher.cancel()
            await self._release(link, "caller left")
            await ws.close()

    async def _release(self, link: "Link", reason: str) -> None:
        """Free the socket's slot, then end its call (once; never raises). The slot is free at once:
        a call's tear-down may wait for the window its worker is computing."""
        if self.server.calls.pop(link.call_id, _GONE) is not _GONE:
            log.info("call=%s event=slot_freed reason=%s sessions=%d max_sessions=%d", link.call_id,
                     quoted(reason), len(self.server.calls), self.server.config.max_sessions)
        if link.call is not None:
            await self._end(link.call, reason)
            self.server.metrics.call_ended(link.call)

    @staticmethod
    async def _end(call: Call, reason: str) -> None:
        try:
            await call.close(reason)
        except Exception:  # our bug; it must not hide why the call ended, nor keep its slot
            log.exception("call=%s event=close_failed", call.id)

    async def _dispatch(self, msg: Message, link: "Link", send) -> None:
        call = link.call
        match msg:
            case Offer():
                if call is not None:
                    raise ProtocolError("bad_state", "this call already has an offer; renegotiation is not supported")
                if msg.image is not None or msg.avatar is not None:
                    image = self.server.image_from(msg.avatar, msg.image)
                else:
                    image = self.server.image_from(link.avatar, link.image)
                call = self.server.new_call(link.call_id, send)
                watched = self.server.whip.watchable(msg.sdp) if msg.watch else None
                try:
                    answer = await call.start(msg, image, watched)
                except BaseException:
                    await self._end(call, "set-up failed")
                    raise
                if watched is not None:
                    answer["watch"] = self.server.whip.watch_call(watched, call)
                link.call = call
                self.server.metrics.call_started(call)
                if link.call_id in self.server.calls:  # (not if the slot was freed meanwhile: the socket is closing)
                    self.server.calls[link.call_id] = call
                await send(answer)
            case ChooseAvatar(id=avatar_id, image=upload):
                image = self.server.image_from(avatar_id, upload)  # checked now
                if call is None:  # used with the offer
                    link.avatar, link.image = avatar_id, upload
                    await send({"type": "avatar", "ok": True})
                else:  # acknowledged by the call when the new face takes over
                    await call.change_avatar(image)
            case Candidate(candidate=candidate):
                if call is None:
                    raise ProtocolError("bad_state", "send the offer before ICE candidates")
                if link.candidates_ended:
                    raise ProtocolError("bad_state", "no candidates after the end of candidates")
                link.candidates_ended = candidate is None
                await call.add_candidate(candidate)
            case Interrupt() | SetPrompt() if call is None:
                raise ProtocolError("bad_state", "this message needs a call: send the offer first")
            case Interrupt():
                call.interrupt()
            case SetPrompt(text=text):
                call.set_prompt(text)
                await send({"type": "prompt", "ok": True})
            case Ping():
                await send({"type": "pong"})


@dataclass
class Link:
    """One websocket's signaling state: the face chosen before the offer, then the call."""

    call_id: str
    avatar: str | None = None  # None: the library's first
    image: str | None = None  # an upload chosen before the offer
    call: Call | None = None
    candidates_ended: bool = False


def add_routes(app: web.Application, server) -> None:
    app.router.add_get(WS_PATH, server.signaling.websocket)
