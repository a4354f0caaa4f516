"""GET /metrics: Prometheus' text format (read back with prometheus_client's own parser) from a server
taking a real call: sessions, frames, windows (each observed once), compute and slack, refusals."""

import asyncio
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from streaming.server import AvatarServer


async def scrape(server) -> dict:
    def get():
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            return r.headers["Content-Type"], r.read().decode()

    kind, text = await asyncio.to_thread(get)
    assert kind.startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_follow_a_real_call(tiny_profile, speech_hello):
    server = await AvatarServer(ServerConfig(port=0, token="s3cret", compute_allowance_s=0.2), tiny_profile).start()
    try:
        before = await scrape(server)
        assert value(before, "avatar_sessions") == 0 and value(before, "avatar_frames_total", kind="sent") == 0
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/ws?token=wrong"):
                pass
        except InvalidStatus:
            pass
        client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws?token=s3cret", speech_hello, 16000)
        try:
            await client.wait_for("stats", timeout=15, count=2)
            [call] = [c for c in server.calls.values() if c is not None]
            video, work = call.video, call.worker.stats  # a closed call lets go of its parts
            during = await scrape(server)
            await client.send({"type": "interrupt", "bogus": 1})
            await client.send({"type": "nonsense"})
            await client.wait_for("error", timeout=5)
        finally:
            await client.close()
        deadline = time.monotonic() + 5
        while (server.calls or server.metrics._calls) and time.monotonic() < deadline:  # slot freed, call ended
            await asyncio.sleep(0.05)
        after = await scrape(server)
    finally:
        await server.stop()

    assert value(during, "avatar_sessions") == 1 and value(after, "avatar_sessions") == 0
    assert value(during, "avatar_frames_total", kind="sent") > 0
    assert value(after, "avatar_frames_total", kind="sent") == video.sent  # counted once, kept after the call
    assert value(after, "avatar_frames_total", kind="repeated") == video.repeated
    windows = value(after, "avatar_windows_total", kind="speech") + value(after, "avatar_windows_total", kind="idle")
    assert windows == work.windows > 0  # every window observed exactly once
    assert value(after, "avatar_window_compute_seconds_count") == windows
    assert value(after, "avatar_window_slack_seconds_count") == windows
    assert value(after, "avatar_late_windows_total") == work.late_windows
    assert value(after, "avatar_refusals_total", reason="token") == 1
    assert value(after, "avatar_refusals_total", reason="bad_message") >= 1
