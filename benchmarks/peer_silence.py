"""How long a live peer stays silent: the largest gap between datagrams arriving from it (what the
media watchdog, streaming/liveness.py, counts), for an aiortc peer that only receives (a WHEP viewer:
RTCP receiver reports only) and one that sends audio (a caller, a WHIP publisher), on loopback; and
what one look at the count costs.

    python benchmarks/peer_silence.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from streaming.liveness import packets_received


async def drain(track) -> None:
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        pass


async def largest_gap(seconds: float, peer_sends_audio: bool) -> dict:
    """`server` sends video and audio; `peer` receives them (and sends audio if asked)."""
    server, peer = RTCPeerConnection(), RTCPeerConnection()
    server.addTransceiver(VideoStreamTrack(), direction="sendonly")
    server.addTransceiver(AudioStreamTrack(), direction="sendrecv" if peer_sends_audio else "sendonly")
    for pc in (server, peer):
        pc.on("track", lambda track: asyncio.ensure_future(drain(track)))
    await server.setLocalDescription(await server.createOffer())
    await peer.setRemoteDescription(server.localDescription)
    if peer_sends_audio:
        peer.addTrack(AudioStreamTrack())  # takes the offer's audio transceiver, sendrecv
    await peer.setLocalDescription(await peer.createAnswer())
    await server.setRemoteDescription(peer.localDescription)
    await asyncio.sleep(2.0)
    last, changed, gaps = await packets_received(server), time.monotonic(), [0.0]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.02)
        count = await packets_received(server)
        if count != last:
            gaps.append(time.monotonic() - changed)
            last, changed = count, time.monotonic()
    started = time.perf_counter()
    for _ in range(200):
        await packets_received(server)
    cost_ms = (time.perf_counter() - started) / 200 * 1000
    await server.close()
    await peer.close()
    return {"largest_gap_s": round(max(gaps), 3), "count_cost_ms": round(cost_ms, 3)}


async def main(seconds: float) -> dict:
    return {"receive_only_peer": await largest_gap(seconds, False),
            "audio_sending_peer": await largest_gap(seconds, True)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    print(json.dumps(asyncio.run(main(parser.parse_args().seconds)), indent=1))
