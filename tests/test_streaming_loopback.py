"""A 20 s call between two aiortc peers over loopback (tiny-random profile): speech and beeps in,
paced video and the delayed voice out. Checks the frame rate, timestamp continuity, lip sync of the
returned voice against the frames it belongs to, and the VAD events' times."""

import asyncio

import numpy as np
import pytest

from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from streaming.server import AvatarServer

RATE = 16000
SECONDS = 20.0
SPEECH_AT = (1.0, 7.0, 13.0)
BEEPS_AT = (5.5, 11.5, 17.5)
BEEP_S = 0.08
# aiortc's receiver (the test's peer) holds media before handing it over: an audio packet until 4
# more have come (JitterBuffer prefetch=4, 20 ms each), a video frame until the next one begins.
# A browser's A/V sync accounts for its own buffers, so the comparison takes these holds out.
RECEIVER_AUDIO_HOLD_S = 4 * 0.020
RECEIVER_VIDEO_HOLD_S = 1 / 25


def call_audio(speech: np.ndarray) -> np.ndarray:
    audio = np.zeros(int((SECONDS + 1.5) * RATE), np.float32)
    for at in SPEECH_AT:
        audio[int(at * RATE):int(at * RATE) + len(speech)] = speech
    t = np.arange(int(BEEP_S * RATE)) / RATE
    for at in BEEPS_AT:
        audio[int(at * RATE):int(at * RATE) + len(t)] = 0.6 * np.sin(2 * np.pi * 1000 * t)
    return audio


def received_audio(client) -> tuple[np.ndarray, int, float]:
    """The received voice laid out by its timestamps, its first pts, and the arrival offset a such
    that the sample with pts p arrived no earlier than a + p / rate (the least-delayed frame)."""
    frames = client.received.audio
    rate = frames[0][3]
    pts0 = frames[0][1]
    end = max(p for _, p, _, _ in frames) - pts0 + 2 * len(frames[0][2])
    out = np.zeros(end, np.float32)
    for _, pts, pcm, _ in frames:
        out[pts - pts0:pts - pts0 + len(pcm)] = pcm
    offset = min(arrival - (pts - pts0) / rate for arrival, pts, _, _ in frames)
    return out, rate, offset


@pytest.mark.slow
async def test_twenty_second_call_is_paced_continuous_and_in_sync(tiny_profile, speech_hello):
    server = await AvatarServer(ServerConfig(port=0, stamp_frames=True), tiny_profile).start()
    client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", call_audio(speech_hello), RATE)
    (call,) = [c for c in server.calls.values() if c is not None]
    timeline = []  # the server's 16 kHz timeline as it goes into the engine (contiguous from 0)
    into_engine = call.worker.push_audio
    call.worker.push_audio = lambda pcm, speech: (timeline.append(pcm), into_engine(pcm, speech))
    try:
        await asyncio.sleep(SECONDS + 1.2)
        stats = client.received.of_type("stats")[-1]
        vad = client.received.of_type("vad")
    finally:
        await client.close()
        await server.stop()
    delay = client.answer["delay_s"]
    video = client.received.video
    arrivals = np.array([a for a, _, _ in video])
    pts = np.array([p for _, p, _ in video])
    stamps = [i for _, _, i in video]

    # 25 fps +- 1 over 20 s, and no timestamp gaps.
    span = arrivals[-1] - arrivals[0]
    assert span > SECONDS - 1
    fps = (len(video) - 1) / span
    assert 24.0 <= fps <= 26.0, fps
    assert set(np.diff(pts).tolist()) == {3600}
    # Frame indices: the stamps agree with the timestamps (every frame, in order, none lost).
    offsets = [s - (p - pts[0]) // 3600 for s, p in zip(stamps, pts) if s is not None]
    first_index = max(set(offsets), key=offsets.count)
    assert offsets.count(first_index) >= 0.98 * len(stamps)
    # The server's own count agrees with what arrived (late generation shows up as repeats, not gaps).
    assert abs(stats["frames_sent"] - len(video)) <= 30
    assert stats["frames_repeated"] <= stats["frames_sent"]

    # Lip sync: each beep's onset in the returned voice against the frame that shows it.
    voice, rate, audio_offset = received_audio(client)
    video_offset = min(a - (p - pts[0]) / 90000 for a, p, _ in video)
    frame_pts = {first_index + (p - pts[0]) // 3600: p for p in pts}
    input_offset = round(stats["input_offset_s"] * RATE)
    server_audio = np.concatenate(timeline)
    started = client.source.started_at
    errors = []
    for at in BEEPS_AT:
        # The beep on the server's timeline: where the engine got it, so the frame that shows it.
        near = input_offset + int(at * RATE)
        loud = np.nonzero(np.abs(server_audio[near - 1600:near + 3200]) > 0.15)[0]
        assert len(loud), f"beep at {at}s not found on the server's timeline"
        sample = near - 1600 + loud[0]
        frame = sample // 640
        # The beep in the returned voice: it leaves the server about `delay` after it was sent.
        lo = max(int((started + at + delay - 0.3 - audio_offset) * rate), 0)
        hi = int((started + at + delay + 0.4 - audio_offset) * rate)
        loud = np.nonzero(np.abs(voice[lo:hi]) > 0.15)[0]
        assert len(loud), f"beep at {at}s not found in the returned voice"
        heard = audio_offset - RECEIVER_AUDIO_HOLD_S + (lo + loud[0]) / rate
        shown = video_offset - RECEIVER_VIDEO_HOLD_S + (frame_pts[frame] - pts[0]) / 90000
        errors.append(shown - (heard - (sample % 640) / RATE))
    assert max(abs(e) for e in errors) < 0.040, errors

    # VAD: a speech start near each spoken phrase (input time), none before the first.
    starts = [m["input_t"] for m in vad if m["event"] == "speechstart"]
    ends = [m["input_t"] for m in vad if m["event"] == "speechend"]
    for at in SPEECH_AT:
        assert any(at - 0.1 <= t <= at + 0.2 for t in starts), (at, starts)
    assert min(starts) >= SPEECH_AT[0] - 0.1
    assert len(ends) >= len(SPEECH_AT) - 1
    speech_s = 3.18
    for at in SPEECH_AT[:-1]:
        assert any(at + speech_s - 0.2 <= t <= at + speech_s + 0.4 for t in ends), (at, ends)
