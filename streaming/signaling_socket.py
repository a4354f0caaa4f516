"""One signaling websocket (aiohttp's) as the server's call code uses it: messages in order, our own
keep-alive pings each with a future for its pong, close and abort.

A reader task takes every frame off the socket as it arrives and answers the caller's pings, so a pong
is seen at once even while the server is busy with a message (an offer's set-up, an upload)."""

from __future__ import annotations

import asyncio
import os

from aiohttp import WSMsgType, web

from .http import Refused, check_origin, check_token, single_header

CLOSE_TIMEOUT_S = 1.0  # how long a closing socket waits for the caller's close frame
_END = object()


async def accept(request: web.Request, token: str | None, origins: frozenset[str],
                 max_message_bytes: int) -> tuple[web.WebSocketResponse, "SignalingSocket | None"]:
    """The gate in front of the signaling: the token, then the origin, then a well-formed websocket
    upgrade (GET only), all before any work is done. The response is the handler's to return; the
    socket is None if the caller left during the handshake."""
    check_token(request, token)
    check_origin(single_header(request, "Origin"), origins)
    ws = web.WebSocketResponse(max_msg_size=max_message_bytes, autoping=False, timeout=CLOSE_TIMEOUT_S,
                               compress=False)
    if request.method != "GET" or not ws.can_prepare(request):  # (HEAD shares GET's route)
        if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
            raise Refused(426, "not_websocket", "this path takes a websocket",
                          {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"})
        raise Refused(400, "bad_handshake", "malformed websocket handshake", {"Sec-WebSocket-Version": "13"})
    transport = request.transport
    try:
        await ws.prepare(request)
    except ConnectionError:
        return ws, None
    return ws, SignalingSocket(ws, transport)


class Closed(Exception):
    """The socket is closed (by either side, or lost)."""


class SignalingSocket:
    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None):
        self._ws = ws
        self._transport = transport
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._pongs: dict[bytes, asyncio.Future] = {}
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                msg = await self._ws.receive()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._inbox.put_nowait(msg.data)
                elif msg.type is WSMsgType.PING:
                    await self._ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    waiter = self._pongs.pop(bytes(msg.data), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(True)
                else:  # close, closing, closed, error (a message too large, invalid UTF-8: aiohttp has closed it)
                    break
        except (ConnectionError, RuntimeError):  # written to or read from a socket already gone
            pass
        finally:
            self._inbox.put_nowait(_END)
            for waiter in self._pongs.values():
                if not waiter.done():
                    waiter.set_result(False)
            self._pongs.clear()

    def __aiter__(self):
        return self

    async def __anext__(self) -> str | bytes:
        item = await self._inbox.get()
        if item is _END:
            self._inbox.put_nowait(_END)  # for any later reader
            raise StopAsyncIteration
        return item

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def send(self, text: str) -> None:
        if self._ws.closed:
            raise Closed
        try:
            await self._ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            raise Closed from exc

    async def ping(self) -> asyncio.Future:
        """Sends a ping; the future is done when its pong comes back (True) or the socket closes (False)."""
        if self._reader.done():
            raise Closed
        payload = os.urandom(4)
        waiter = self._pongs[payload] = asyncio.get_running_loop().create_future()
        try:
            await self._ws.ping(payload)
        except (ConnectionError, RuntimeError) as exc:
            self._pongs.pop(payload, None)
            raise Closed from exc
        return waiter

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._ws.close(code=code, message=reason.encode())
        except (ConnectionError, RuntimeError):
            pass
        await asyncio.wait([self._reader], timeout=1.0)

    def abort(self) -> None:
        """Drops the connection at once: for a caller that no longer answers."""
        if self._transport is not None:
            self._transport.abort()
