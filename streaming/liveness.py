"""Is the peer still there? One media-inactivity watchdog for every peer connection the server holds:
a websocket caller's, a WHIP publisher's, a WHEP viewer's.

A peer that vanishes without a word (its process killed, its network gone) is otherwise noticed only
by ICE consent freshness, after about 30 s: aioice checks every 5 s and gives up after 6 failures,
module constants with no per-connection setting. But a live peer never falls silent for long: a
caller or publisher sends audio packets all the time (Opus without DTX, which our answers never ask
for: 50 a second, silence included), and a peer that only receives sends RTCP receiver reports
(aiortc every 0.5-1.5 s, Chromium about every second for video) and congestion feedback. So the
datagrams arriving on the connection's transports (RTP, RTCP and DTLS, as aiortc's public getStats()
counts them; ICE's own STUN checks are not in that count) tell whether the peer is still there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .call_input import closes_within

log = logging.getLogger(__name__)

POLL_S = 0.25


async def packets_received(pc) -> int | None:
    """Datagrams received on the peer connection's transports so far (None: it has closed)."""
    try:
        report = await pc.getStats()
    except Exception:  # a closing connection has no stats
        return None
    counts = {s.id: s.packetsReceived for s in report.values() if getattr(s, "type", None) == "transport"}
    return sum(counts.values()) if counts else None


async def silent_for(pc, timeout_s: float, ended: asyncio.Event) -> bool:
    """Wait until nothing has arrived from the peer for timeout_s (True), or `ended` is set or the
    connection closes first (False). Start it once the connection is up. Time our own loop spent
    stalled (a busy machine) counts as one poll at most: the packets that came meanwhile are still
    queued unread, so a stall alone must not read as silence."""
    last = await packets_received(pc)
    silent_s = 0.0
    polled = time.monotonic()
    while last is not None:
        if await closes_within(ended, POLL_S):
            return False
        count = await packets_received(pc)
        now = time.monotonic()
        if count is None:
            return False
        silent_s = 0.0 if count != last else silent_s + min(now - polled, 2 * POLL_S)
        last, polled = count, now
        if silent_s >= timeout_s:
            return True
    return False


async def end_when_silent(pc, timeout_s: float | None, ended: asyncio.Event, end: Callable[[str], object],
                          who: str) -> None:
    """Run as a task once the connection is up: if the peer falls silent for timeout_s (None: never
    checked), log it and call end(reason), which must not wait for this task (it schedules the end)."""
    if timeout_s is not None and await silent_for(pc, timeout_s, ended):
        log.info("%s event=peer_gone reason=\"no media for %g s\"", who, timeout_s)
        end(f"no media for {timeout_s:g} s")
