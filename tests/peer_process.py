"""A real aiortc peer in a process of its own, for tests that make a peer vanish (SIGKILL, SIGSTOP)
while the test process lives on. Prints one line per event on stdout ("connected", "frames N").

    python tests/peer_process.py media          # a websocket caller's media: prints its offer (JSON),
                                                # reads the answer (JSON) from stdin; the test holds the socket
    python tests/peer_process.py whip URL TOKEN # a WHIP publisher: speech-like audio
    python tests/peer_process.py whep URL TOKEN # a WHEP viewer: counts the frames it receives
"""

from __future__ import annotations

import asyncio
import json
import sys

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from avatar.samples import babble
from streaming.contrib.pyclient import RecordingTrack, to_48k_mono


def say(line: str) -> None:
    print(line, flush=True)


async def count_frames(track, counts: dict) -> None:
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return
        counts[track.kind] = counts.get(track.kind, 0) + 1


async def main(mode: str, url: str | None, token: str | None) -> None:
    pc = RTCPeerConnection()
    counts: dict[str, int] = {}
    tasks = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(count_frames(track, counts))))
    pc.on("connectionstatechange", lambda: say(pc.connectionState))
    if mode in ("media", "whip"):
        pc.addTrack(RecordingTrack(to_48k_mono(babble(4.0, 16000, 0), 16000), loop=True))
    if mode in ("media", "whep"):
        pc.addTransceiver("video", direction="recvonly")
    if mode == "whep":
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    if mode == "media":
        say(json.dumps({"sdp": pc.localDescription.sdp}))
        answer = json.loads(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline))["sdp"]
    else:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=pc.localDescription.sdp, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as res:
                answer = await res.text()
                if res.status != 201:
                    say(f"refused {res.status} {answer}")
                    return
                say(f"location {res.headers['Location']}")
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    while True:
        await asyncio.sleep(0.5)
        say(f"frames {counts.get('video', 0)}")


if __name__ == "__main__":
    args = sys.argv[1:] + [None, None]
    asyncio.run(main(args[0], args[1], args[2]))
