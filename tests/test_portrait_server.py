"""The portrait profile over the live server, with real aiortc callers: the built-in photo is the
default face, frames arrive at the profile's 512x512 (or the whole photo's size), and a photo
without a usable face is refused with the upload error codes and the face model's reason."""

import asyncio
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from websockets.asyncio.client import connect

from benchmarks.fuzz_cases import OFFER_SDP
from conftest import started_servers, wait_until
from streaming.contrib.pyclient import CallClient


def data_url(image: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture
async def server(portrait_profile):
    async for start in started_servers(portrait_profile, 0.3):
        yield start


@pytest.mark.slow
async def test_a_call_on_the_default_photo_gets_512_frames_every_one_in_order(server, speech_hello):
    srv = await server()
    audio = np.concatenate([np.zeros(8000, np.float32), speech_hello])
    client = await CallClient.open(f"ws://127.0.0.1:{srv.port}/ws", audio, 16000)
    try:
        assert client.ready["profile"] == "portrait-random" and client.ready["avatars"][0] == "astronaut"
        assert client.answer["resolution"] == [512, 512]
        await wait_until(lambda: len(client.received.video) >= 60, timeout=30)
        (call,) = [c for c in srv.calls.values() if c is not None]
        await wait_until(lambda: call.worker.stats.windows >= 3, timeout=30)  # the engine makes frames
        paused_over = call.video.skipped  # frames the track jumped over when this process was paused
    finally:
        await client.close()
    assert client.received.video_size == (512, 512)
    pts = np.array([p for _, p, _ in client.received.video])
    steps = np.diff(pts) // 3600
    assert (np.diff(pts) % 3600 == 0).all() and (steps >= 1).all()  # contiguous timestamps, but for
    assert (steps - 1).sum() <= paused_over  # the jumps of a paused (overloaded) process, each counted
    stamps = [i for _, _, i in client.received.video]
    offsets = [s - (p - pts[0]) // 3600 for s, p in zip(stamps, pts) if s is not None]
    assert offsets.count(max(set(offsets), key=offsets.count)) >= 0.95 * len(stamps)


@pytest.mark.slow
async def test_photo_output_sends_the_whole_photo(server, speech_hello, photo):
    srv = await server(output_mode="photo")
    wide = np.concatenate([photo, photo[:, :88]], axis=1)  # 600 x 512
    client = await CallClient.open(f"ws://127.0.0.1:{srv.port}/ws", speech_hello, 16000,
                                   offer_extra={"image": data_url(wide)}, read_stamps=False)
    try:
        assert client.answer["resolution"] == [512, 600]
        await wait_until(lambda: len(client.received.video) >= 10, timeout=30)
    finally:
        await client.close()
    assert client.received.video_size == (600, 512)


@pytest.mark.parametrize("image, reason", [
    (skdata.coffee(), "no_face"),
    (np.asarray(Image.fromarray(skdata.astronaut()).resize((160, 160))), "tiny_face")])
async def test_a_photo_without_a_usable_face_is_refused_with_its_reason(server, image, reason):
    srv = await server()
    async with connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
        json.loads(await ws.recv())  # ready
        await ws.send(json.dumps({"type": "offer", "sdp": OFFER_SDP, "image": data_url(image)}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert error["type"] == "error" and error["code"] == "bad_image" and error["reason"] == reason
        assert "photo" in error["message"]
        await ws.send(json.dumps({"type": "ping"}))  # the socket stays up for another try
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}


def test_serve_refuses_photo_output_for_a_profile_that_draws_its_own_crop():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "streaming.cli", "serve", "--profile", "tiny-random",
                             "--output-mode", "photo", "--port", "0"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "error: --output-mode photo needs a profile that animates" in result.stderr
    assert "Traceback" not in result.stderr
