"""Each signaling socket's watcher: frees the caller's slot once the caller is gone without saying so.

The server's own keep-alive (streaming/signaling_socket.py) pings the socket; the watcher also sees
the call end and the signaling deadline pass. A closed or reset socket ends the message loop instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Awaitable, Callable

from .config import ServerConfig
from .signaling_socket import Closed, SignalingSocket

if TYPE_CHECKING:
    from .signaling import Link

log = logging.getLogger("streaming.server")  # its lines are the server's, as before it was a module

CLOSE_POLICY = 1008
WATCH_POLL_S = 0.1  # how often a socket's watcher looks at its call and deadline
PONG_GRACE_S = 0.1


async def watch_caller(ws: SignalingSocket, link: "Link", send, cfg: ServerConfig,
                       release: Callable[["Link", str], Awaitable[None]]) -> None:
    """Frees the slot as soon as the caller is gone: its call ended (hang-up, ICE or DTLS failure),
    its websocket stopped answering pings, or it has no connected call by the signaling deadline.
    A release is shielded: the message loop ending meanwhile cancels this watcher, and must not cut a
    call's tear-down short."""
    deadline = asyncio.get_running_loop().time() + cfg.signaling_timeout_s
    pings = asyncio.ensure_future(unanswered_ping(ws, cfg))
    try:
        while not pings.done():
            call = link.call
            if call is not None and call.closed.is_set():
                await asyncio.shield(release(link, "call ended"))
                await send({"type": "close", "reason": "the call ended"})
                await ws.close()
                return
            if (call is None or not call.connected.is_set()) and asyncio.get_running_loop().time() > deadline:
                log.warning("call=%s event=refused reason=timeout", link.call_id)
                await asyncio.shield(release(link, "signaling timeout"))
                await send({"type": "error", "code": "timeout",
                            "message": f"no connected call within {cfg.signaling_timeout_s:g} s"})
                await ws.close(CLOSE_POLICY, "signaling timeout")
                return
            await asyncio.wait([pings], timeout=WATCH_POLL_S)
        if pings.result():
            await asyncio.shield(release(link, "no answer to pings"))
            ws.abort()
    except asyncio.CancelledError:
        pass
    finally:
        pings.cancel()


async def unanswered_ping(ws: SignalingSocket, cfg: ServerConfig) -> bool:
    """True once a ping goes unanswered for ping_timeout_s; False if the socket closes first.
    After a timeout the pong gets a short grace: if our own loop stalled past the timeout, a pong
    already received is read only after the timer has fired."""
    while True:
        await asyncio.sleep(cfg.ping_interval_s)
        try:
            pong = await ws.ping()
        except Closed:
            return False
        for timeout in (cfg.ping_timeout_s, PONG_GRACE_S):
            done, _ = await asyncio.wait([pong], timeout=timeout)
            if done:
                break
        else:
            return True
        if not pong.result():  # the socket closed
            return False
