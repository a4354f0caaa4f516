"""How soon a dropped caller's session slot is free again (issue 11, harness c), for every kind of
drop: a goodbye, a closed websocket, a reset TCP connection, a caller that stops answering (no FIN,
no pongs), a caller that closes its peer connection, a caller whose media path dies while its websocket
lives on (the server's media watchdog, streaming/liveness.py: MEDIA_TIMEOUT_S here, 4 s by default), a DTLS failure (a
fingerprint that does not match), and a caller whose peer is gone before connecting (measured from
its ICE failure or the signaling deadline, whichever comes first). A server in this process (tiny-random profile) and real
aiortc callers on loopback:

    python benchmarks/slot_free.py [--repeat 3] [--root CHECKOUT] [--json out.json]

--root imports the server from another checkout (e.g. main's, `git worktree add /tmp/base 168f5b7`).
Prints the seconds from each drop to the slot being free, per kind (worst of --repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DROPS = ("bye", "ws_close", "tcp_reset", "silent", "pc_closed", "media_dead", "dtls_failure", "never_connects")
MEDIA_TIMEOUT_S = 1.0
GIVE_UP_S = 20.0
WRONG_FINGERPRINT = ":".join(["AB"] * 32)


async def _until(predicate, timeout: float = GIVE_UP_S) -> float:
    """The time (monotonic) at which predicate() first held, polled every 10 ms."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.01)
    return time.monotonic()


def _server_call(srv, busy_before: set):
    """The Call of the one slot taken since busy_before."""
    ids = [i for i in srv.calls if i not in busy_before]
    return srv.calls[ids[0]] if ids else None


async def _raw_call(url: str, wrong_fingerprint: bool):
    """A caller built by hand: its own websocket and peer, the answer applied (or not)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack
    from websockets.asyncio.client import connect

    opened_at = time.monotonic()  # the server's signaling deadline runs from a moment after this
    # (max_queue=None: the messages this caller never reads must not stop it from answering pings)
    ws = await connect(url, max_size=None, max_queue=None, close_timeout=1.0)
    assert json.loads(await ws.recv())["type"] == "ready"
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    if wrong_fingerprint:
        lines = [line for line in sdp.split("\r\n") if not line.startswith("a=fingerprint:sha-384")
                 and not line.startswith("a=fingerprint:sha-512")]
        sdp = "\r\n".join(f"a=fingerprint:sha-256 {WRONG_FINGERPRINT}" if line.startswith("a=fingerprint:")
                          else line for line in lines)
    await ws.send(json.dumps({"type": "offer", "sdp": sdp}))
    while (answer := json.loads(await ws.recv()))["type"] != "answer":
        pass
    if wrong_fingerprint:
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return ws, pc, opened_at


async def drop_once(srv, kind: str, pcm) -> float:
    """Seconds from the drop to the slot being free."""
    try:
        from streaming.contrib.pyclient import CallClient
    except ImportError:  # a checkout from before the move (--root)
        from streaming.pyclient import CallClient

    url = f"ws://127.0.0.1:{srv.port}/ws"
    busy = set(srv.calls)
    if kind in ("dtls_failure", "never_connects"):
        ws, pc, opened_at = await _raw_call(url, wrong_fingerprint=kind == "dtls_failure")
        try:
            if kind == "never_connects":  # its peer is gone before answering a single ICE check
                await pc.close()
            deadline = opened_at + srv.config.signaling_timeout_s
            # dropped: when the server's peer connection gives up (ICE or DTLS failed), or at the
            # signaling deadline, whichever comes first
            dropped = await _until(lambda: time.monotonic() >= deadline or (c := _server_call(srv, busy)) is None
                                   or c.pc is None or c.pc.connectionState in ("failed", "closed"))
            freed = await _until(lambda: len(srv.calls) <= len(busy))
        finally:
            await pc.close()
            await ws.close()
        return freed - dropped
    client = await CallClient.open(url, pcm, 16000, read_stamps=False)
    try:
        await _until(lambda: (c := _server_call(srv, busy)) is not None and c.connected.is_set())
        dropped = time.monotonic()
        if kind == "bye":
            await client.send({"type": "bye"})
        elif kind == "ws_close":
            await client.ws.close()
        elif kind == "tcp_reset":
            client.ws.transport.abort()
        elif kind == "silent":
            client.ws.transport.pause_reading()
        elif kind == "pc_closed":
            await client.pc.close()
        elif kind == "media_dead":  # its network path dies: not a packet more either way, no goodbye
            for transceiver in client.pc.getTransceivers():
                for protocol in transceiver.sender.transport.transport.iceGatherer._connection._protocols:
                    protocol.transport.pause_reading()
                    protocol.transport.sendto = lambda *args, **kwargs: None
        freed = await _until(lambda: len(srv.calls) <= len(busy))
    finally:
        await client.close()
    return freed - dropped


async def measure(profile, repeat: int, kinds=DROPS, signaling_timeout_s: float = 10.0) -> dict:
    """{kind: [seconds, ...]} on a fresh in-process server."""
    from avatar.samples import babble
    from streaming.config import ServerConfig
    from streaming.server import AvatarServer

    config = ServerConfig(port=0, compute_allowance_s=0.2, signaling_timeout_s=signaling_timeout_s,
                          media_timeout_s=MEDIA_TIMEOUT_S)
    srv = await AvatarServer(config, profile).start()
    pcm = babble(4.0, 16000, 0)
    results = {}
    try:
        for kind in kinds:
            times = []
            for _ in range(repeat):
                try:
                    times.append(round(await drop_once(srv, kind, pcm), 3))
                except TimeoutError:
                    times.append(None)  # not freed within GIVE_UP_S
                await _until(lambda: not srv.calls)
            results[kind] = times
    finally:
        await srv.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose server is measured")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    from avatar.profiles import load_profile

    results = asyncio.run(measure(load_profile("tiny-random", "cpu"), args.repeat))
    worst = {k: (None if None in v else max(v)) for k, v in results.items()}
    report = {"root": str(args.root), "seconds": results, "worst_s": worst}
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if all(w is not None and w < 2.0 for w in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
