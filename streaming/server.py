"""The live server: one port (aiohttp, streaming/http.py) for the demo page, the client, /healthz,
/metrics and the /ws signaling endpoint, over HTTP or, with a certificate, HTTPS.

Per websocket: the token and origin are checked in the HTTP handshake (before any work), then a
session slot is taken (or the caller is told the server is full), then the caller sends an offer and
gets an answer; control messages follow. One call's failure is contained to that call.

Other transports add their routes by adding a route module to ROUTE_MODULES (see streaming/http.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from avatar.threads import generation_cores, torch_threads

from .avatars import AvatarLibrary, decode_upload
from .call import Call
from .config import ServerConfig
from .http import add_routes as add_page_routes
from .http import WS_PATH, build_app, quoted, serve, tls_context
from .metrics import ServerMetrics
from .origins import own_origins
from .peer import quiet_library_task_failures
from .protocol import (Bye, Candidate, ChooseAvatar, Interrupt, Message, Offer, Ping, ProtocolError, SetPrompt,
                       parse_message)
from .signaling_socket import Closed, SignalingSocket, accept
from .vad import load_vad_model, single_threaded
from .watch import watch_caller
from .whip import WhipEndpoints
from .whip import add_routes as add_whip_routes

log = logging.getLogger(__name__)

CLOSE_FULL = 1013  # try again later
_GONE = object()


class AvatarServer:
    def __init__(self, config: ServerConfig, profile=None):
        self.config = config
        self.profile = profile
        self.avatars = AvatarLibrary(config.avatars_dir)
        self.calls: dict[str, Call | None] = {}  # a slot is taken from the first message on
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._sockets: set[SignalingSocket] = set()
        # The origins a page may call from: configured ones, then also the server's own once bound.
        self.origins: frozenset[str] = frozenset(config.allowed_origins)
        self._vad_pool = ThreadPoolExecutor(1, thread_name_prefix="vad", initializer=single_threaded)
        self.port = config.port
        self.metrics = ServerMetrics(self)
        self.whip = WhipEndpoints(self)

    # ---- life cycle ---------------------------------------------------------------------------
    async def start(self) -> "AvatarServer":
        self._restore_loop_handler = quiet_library_task_failures(asyncio.get_running_loop())
        if self.profile is None:
            from avatar.profiles import load_profile

            cfg = self.config
            self.profile = await asyncio.get_running_loop().run_in_executor(
                None, load_profile, cfg.profile, cfg.device, cfg.weights)
        cfg = self.config
        self.compute_allowance_s = cfg.compute_allowance_s
        if self.compute_allowance_s is None:
            from .calibrate import compute_allowance

            self.compute_allowance_s = await asyncio.get_running_loop().run_in_executor(
                None, compute_allowance, self.profile, self.torch_threads(running=1))
        self._runner = await serve(build_app(self, ROUTE_MODULES), cfg.host, cfg.port, cfg.tls_cert, cfg.tls_key)
        self.port = self._runner.addresses[0][1]
        self.origins = frozenset(cfg.allowed_origins) | own_origins(cfg.host, self.port, self.scheme)
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls_cert else "http"

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{self.scheme}://{host}:{self.port}/demo/"

    async def stop(self) -> None:
        await self.whip.close_all("server stopping")
        for call in list(self.calls.values()):
            if call is not None:
                await call.close("server stopping")
        for sock in list(self._sockets):
            await sock.close(1001, "server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
        self._vad_pool.shutdown(wait=False)
        self._restore_loop_handler()

    def torch_threads(self, running: int | None = None) -> int:
        """Threads for each generation worker, shared by the calls running now (avatar/threads.py)."""
        if running is None:
            running = sum(call is not None for call in self.calls.values())
        return torch_threads(running)

    def generation_cores(self) -> float:
        """Cores each generation worker may use, shared by the calls running now (avatar/threads.py)."""
        return generation_cores(sum(call is not None for call in self.calls.values()))

    def new_call(self, call_id: str, send, broadcast: bool = False) -> Call:
        return Call(call_id, self.profile, self.config, send, load_vad_model, self._vad_pool,
                    compute_allowance_s=self.compute_allowance_s, torch_threads=self.torch_threads,
                    generation_cores=self.generation_cores, broadcast=broadcast)

    def health(self) -> dict:
        return {"ok": True, "profile": getattr(self.profile, "name", None), "sessions": len(self.calls),
                "max_sessions": self.config.max_sessions}

    # ---- one websocket ------------------------------------------------------------------------
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """GET /ws: the gate (streaming/signaling_socket.py), then the signaling."""
        response, sock = await accept(request, self.config.token, self.origins, self.config.max_message_bytes)
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

        if len(self.calls) >= self.config.max_sessions:
            log.warning("event=refused reason=full sessions=%d", len(self.calls))
            self.metrics.refused("full")
            await send({"type": "error", "code": "busy",
                        "message": f"the server is full ({self.config.max_sessions} sessions); try again later"})
            await ws.close(CLOSE_FULL, "server full")
            return
        link = Link(f"c{next(self._ids)}")
        self.calls[link.call_id] = None
        log.info("call=%s event=open sessions=%d max_sessions=%d", link.call_id, len(self.calls),
                 self.config.max_sessions)
        watcher = asyncio.ensure_future(watch_caller(ws, link, send, self.config, self._release))
        try:
            await send({"type": "ready", "call": link.call_id, "avatars": self.avatars.ids(),
                        "profile": self.profile.name, "fps": self.profile.fps,
                        "ice_servers": list(self.config.ice_servers),
                        "limits": {"max_upload_bytes": self.config.max_upload_bytes,
                                   "max_image_side": self.config.max_image_side}})
            async for raw in ws:
                try:
                    msg = parse_message(raw)
                    if isinstance(msg, Bye):
                        break
                    await self._dispatch(msg, link, send)
                except ProtocolError as exc:
                    log.warning("call=%s event=refused_message code=%s message=%s", link.call_id, exc.code,
                                quoted(exc.message))
                    self.metrics.refused(exc.code)
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
        if self.calls.pop(link.call_id, _GONE) is not _GONE:
            log.info("call=%s event=slot_freed reason=%s sessions=%d max_sessions=%d", link.call_id,
                     quoted(reason), len(self.calls), self.config.max_sessions)
        if link.call is not None:
            await self._end(link.call, reason)
            self.metrics.call_ended(link.call)

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
                    image = self._image_from(msg.avatar, msg.image)
                else:
                    image = self._image_from(link.avatar, link.image)
                call = self.new_call(link.call_id, send)
                try:
                    answer = await call.start(msg, image)
                except BaseException:
                    await self._end(call, "set-up failed")
                    raise
                link.call = call
                self.metrics.call_started(call)
                if link.call_id in self.calls:  # (not if the slot was freed meanwhile: the socket is closing)
                    self.calls[link.call_id] = call
                await send(answer)
            case ChooseAvatar(id=avatar_id, image=upload):
                image = self._image_from(avatar_id, upload)  # checked now
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

    def _image_from(self, avatar_id, upload):
        if upload is not None:
            return decode_upload(upload, self.config.max_upload_bytes, self.config.max_image_side)
        return self.avatars.image(avatar_id or "drawn")


@dataclass
class Link:
    """One websocket's signaling state: the face chosen before the offer, then the call."""

    call_id: str
    avatar: str | None = "drawn"
    image: str | None = None  # an upload chosen before the offer
    call: Call | None = None
    candidates_ended: bool = False


def add_signaling_routes(app: web.Application, server: AvatarServer) -> None:
    app.router.add_get(WS_PATH, server.websocket)


# Each registers its routes on the server's aiohttp application (streaming/http.py says how).
ROUTE_MODULES = (add_page_routes, add_signaling_routes, add_whip_routes)


async def run_server(config: ServerConfig, ready=None) -> None:
    server = await AvatarServer(config).start()
    for note in getattr(server.profile, "notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(f"avatar server: open {server.url}" + ("  (clients must send the token)" if config.token else ""),
          flush=True)
    if ready is not None:
        ready(server)
    try:
        await asyncio.Future()
    finally:
        await server.stop()


def serve_main(args) -> int:
    """`avatar serve`: args has .host .port .profile .max_sessions .token .weights .device."""
    try:
        config = ServerConfig.from_args(args)
    except (ValueError, OSError) as exc:  # OSError: e.g. --record names a directory that cannot be made
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config.tls_cert:
        try:
            tls_context(config.tls_cert, config.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"error: cannot use --tls-cert/--tls-key: {exc}", file=sys.stderr)
            return 2
    for chatty in ("aioice", "aiortc"):  # per-request / per-packet INFO lines
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        import uvloop
    except ImportError:
        uvloop = None
    try:
        if uvloop is not None:
            uvloop.run(run_server(config))
        else:
            asyncio.run(run_server(config))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. the port is taken
        print(f"error: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 2
    return 0
