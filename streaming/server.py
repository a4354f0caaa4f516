"""The live server: one port (aiohttp, streaming/http.py) for the demo page, the client, /healthz,
/metrics, the /ws signaling endpoint (streaming/signaling.py) and WHIP/WHEP (streaming/whip.py), over
HTTP or, with a certificate, HTTPS. It owns the profile, the session slots (`calls`) and what calls
share (the VAD's thread, the compute allowance, the cores); one call's failure is contained to it.

Other transports add their routes by adding a route module to ROUTE_MODULES (see streaming/http.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from avatar.errors import AvatarError, ProfileError
from avatar.remote import in_own_process, start_processes
from avatar.threads import generation_cores, torch_threads

from . import process_tuning
from .avatars import AvatarLibrary, decode_upload
from .call import Call
from .config import ServerConfig
from .http import add_routes as add_page_routes
from .http import build_app, serve, tls_context
from .metrics import ServerMetrics
from .origins import own_origins
from .peer import quiet_library_task_failures, use_numpy_audio_level
from .signaling import WebsocketSignaling
from .signaling import add_routes as add_signaling_routes
from .vad import load_vad_model, single_threaded
from .whip import WhipEndpoints
from .whip import add_routes as add_whip_routes

log = logging.getLogger(__name__)


class AvatarServer:
    def __init__(self, config: ServerConfig, profile=None):
        self.config = config
        self.profile = profile
        self.avatars = AvatarLibrary(config.avatars_dir)
        self.calls: dict[str, Call | None] = {}  # a slot is taken from the first message on
        self._made: weakref.WeakSet[Call] = weakref.WeakSet()  # those still held: in a slot, or closing after it
        self._runner: web.AppRunner | None = None
        # The origins a page may call from: configured ones, then also the server's own once bound.
        self.origins: frozenset[str] = frozenset(config.allowed_origins)
        self._vad_pool = ThreadPoolExecutor(1, thread_name_prefix="vad", initializer=single_threaded)
        self.port = config.port
        self.metrics = ServerMetrics(self)
        self.whip = WhipEndpoints(self)
        self.signaling = WebsocketSignaling(self)
        self._tuned = False  # holds the process-wide settings of streaming/process_tuning.py

    # ---- life cycle ---------------------------------------------------------------------------
    async def start(self) -> "AvatarServer":
        self._restore_loop_handler = quiet_library_task_failures(asyncio.get_running_loop())
        process_tuning.take(opencv_threads=torch_threads(self.config.max_sessions))
        self._tuned = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        use_numpy_audio_level()
        if self.profile is None:
            from avatar.profiles import load_profile

            cfg = self.config
            self.profile = await asyncio.get_running_loop().run_in_executor(
                None, load_profile, cfg.profile, cfg.device, cfg.weights, cfg.size)
        cfg = self.config
        photo = getattr(self.profile, "animates_photo", False)
        if cfg.output_mode != "crop" and not photo:
            raise ProfileError(f"--output-mode {cfg.output_mode} needs a profile that animates the photo "
                               f"(portrait), not {self.profile.name!r}")
        self.avatars.first = "astronaut" if photo else "drawn"
        if in_own_process(self.profile):  # the calls' sessions fork from it: started now, not at the first call
            await asyncio.get_running_loop().run_in_executor(None, start_processes)
        self.compute_allowance_s = cfg.compute_allowance_s
        if self.compute_allowance_s is None:
            from .calibrate import compute_allowance

            self.compute_allowance_s = await asyncio.get_running_loop().run_in_executor(
                None, compute_allowance, self.profile, self.torch_threads(running=1))
        process_tuning.freeze_start_up()
        self._runner = await serve(build_app(self, ROUTE_MODULES), cfg.host, cfg.port, cfg.tls_cert, cfg.tls_key)
        self.port = self._runner.addresses[0][1]
        self.origins = frozenset(cfg.allowed_origins) | own_origins(cfg.host, self.port, self.scheme)

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls_cert else "http"

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{self.scheme}://{host}:{self.port}/demo/"

    async def stop(self) -> None:
        await self.whip.close_all("server stopping")
        for call in list(self._made):  # a call whose slot is already free may still be closing: wait for it
            await call.close("server stopping")
        await self.signaling.close_all("server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
        self._vad_pool.shutdown(wait=False)
        self._restore_loop_handler()
        if self._tuned:
            self._tuned = False
            process_tuning.give_back()

    def torch_threads(self, running: int | None = None) -> int:
        """Threads for each generation worker, shared by the calls running now (avatar/threads.py)."""
        if running is None:
            running = sum(call is not None for call in self.calls.values())
        return torch_threads(running)

    def generation_cores(self) -> float:
        """Cores each generation worker may use, shared by the calls running now (avatar/threads.py)."""
        return generation_cores(sum(call is not None for call in self.calls.values()))

    def new_call(self, call_id: str, send, broadcast: bool = False) -> Call:
        call = Call(call_id, self.profile, self.config, send, load_vad_model, self._vad_pool,
                    compute_allowance_s=self.compute_allowance_s, torch_threads=self.torch_threads,
                    generation_cores=self.generation_cores, broadcast=broadcast)
        self._made.add(call)
        return call

    def health(self) -> dict:
        return {"ok": True, "profile": getattr(self.profile, "name", None), "sessions": len(self.calls),
                "max_sessions": self.config.max_sessions}

    def image_from(self, avatar_id, upload):
        if upload is not None:
            return decode_upload(upload, self.config.max_upload_bytes, self.config.max_image_side)
        return self.avatars.image(avatar_id or self.avatars.first)


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
    except AvatarError as exc:  # e.g. the profile's weights are missing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"error: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 2
    return 0
