"""The paced tracks' timestamps and hand-over, with synthetic frames. The clock is started in the past
so that every frame is already due: no test here depends on how fast the machine is (the grace test
hands frames over on the loop's timers, 18 ms and more from the track's deadline)."""

import asyncio
import time

import numpy as np
import pytest

from avatar.audio import AudioTimeline
from streaming.buffers import FrameBuffer
from streaming.clock import MediaClock
from streaming.contrib.stamp import read_index, stamp_index
from streaming.tracks import DelayedVoiceTrack, PacedVideoTrack


class F:
    def __init__(self, index):
        self.index = index
        self.image = np.full((32, 32, 3), 10 * (index % 20) + 10, np.uint8)  # apart by more than yuv420p rounds


def index_shown(frame) -> int:
    """The F index a sent frame shows (its grey level, read back through yuv420p)."""
    return round(int(frame.to_ndarray(format="rgb24")[0, 0, 0]) / 10) - 1


def clock_due_long_ago(frames_ago: int) -> MediaClock:
    clock = MediaClock(delay_s=0.5, fps=25, sample_rate=16000)
    clock.start(now=time.monotonic() - 0.5 - frames_ago / 25)
    return clock


async def test_video_pts_are_exact_and_missing_frames_repeat_the_last():
    clock = clock_due_long_ago(0)  # frame 0 is due now
    buf = FrameBuffer(64)
    placeholder = np.zeros((32, 32, 3), np.uint8)
    track = PacedVideoTrack(clock, buf, placeholder)
    buf.put([F(0), F(1), F(3)])  # 2 is missing
    frames = [await track.recv() for _ in range(5)]
    assert [f.pts for f in frames] == [0, 3600, 7200, 10800, 14400]
    assert all(f.time_base.denominator == 90000 for f in frames)
    assert [index_shown(f) for f in frames] == [0, 1, 1, 3, 3]  # 2 and 4 repeat the frame before
    assert track.repeated == 2 and track.sent == 5


async def test_a_frame_made_within_the_grace_is_shown_and_one_past_its_deadline_is_a_repeat():
    clock = clock_due_long_ago(0)  # frame 0 is due now
    buf = FrameBuffer(8)
    track = PacedVideoTrack(clock, buf, np.zeros((32, 32, 3), np.uint8))
    buf.put([F(0)])
    loop = asyncio.get_running_loop()
    loop.call_later(clock.frame_due(1) + 0.002 - time.monotonic(), buf.put, [F(1)])  # just past due
    loop.call_later(clock.frame_deadline(2) + 0.03 - time.monotonic(), buf.put, [F(2)])  # past the grace
    frames = [await track.recv() for _ in range(3)]
    assert [index_shown(f) for f in frames] == [0, 1, 1]
    assert track.repeated == 1 and [f.pts for f in frames] == [0, 3600, 7200]


async def test_video_starting_late_begins_at_the_due_frame_and_drops_stale_ones():
    clock = clock_due_long_ago(100)  # the first recv comes 100 frames after the clock began
    buf = FrameBuffer(256)
    buf.put([F(i) for i in range(95, 110)])
    track = PacedVideoTrack(clock, buf, np.zeros((32, 32, 3), np.uint8))
    first = await track.recv()
    assert track.first_index in (100, 101)
    assert first.pts == track.first_index * 3600
    assert buf.late == track.first_index - 95  # frames older than the first due one are dropped
    second = await track.recv()
    assert second.pts - first.pts == 3600


async def test_video_stamp_decorates_each_frame_with_its_index():
    clock = clock_due_long_ago(0)
    track = PacedVideoTrack(clock, FrameBuffer(8), np.zeros((128, 128, 3), np.uint8), stamp_index)
    got = [read_index((await track.recv()).to_ndarray(format="rgb24")) for _ in range(3)]
    assert got == [0, 1, 2]


def test_video_clock_must_divide_90khz():
    clock = MediaClock(0.5, 7, 16000)
    with pytest.raises(ValueError, match="90 kHz"):
        PacedVideoTrack(clock, FrameBuffer(4), np.zeros((8, 8, 3), np.uint8))


async def test_voice_is_the_timeline_delayed_with_contiguous_pts():
    clock = clock_due_long_ago(0)
    voice = AudioTimeline(10.0)
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    voice.append(tone)
    track = DelayedVoiceTrack(clock, voice)
    frames = [await track.recv() for _ in range(4)]
    assert [f.pts for f in frames] == [0, 960, 1920, 2880]  # 48 kHz, 20 ms each, no gaps
    assert all(f.sample_rate == 48000 and f.samples == 960 and f.time_base.denominator == 48000 for f in frames)
    out = frames[1].to_ndarray().reshape(-1) / 32767.0
    # The original samples come through unchanged (no delay), the ones between are interpolated.
    np.testing.assert_allclose(out[::3], tone[320:640], atol=2e-4)
    expected = 0.5 * np.sin(2 * np.pi * 300 * (320 + np.arange(960) / 3) / 16000)
    np.testing.assert_allclose(out, expected, atol=5e-3)
    assert voice.start == 1280 - DelayedVoiceTrack.TAPS  # what was sent is released


async def test_voice_and_video_share_the_clock():
    clock = clock_due_long_ago(50)
    video = PacedVideoTrack(clock, FrameBuffer(4), np.zeros((16, 16, 3), np.uint8))
    voice = DelayedVoiceTrack(clock, AudioTimeline(2.0))
    v = await video.recv()
    a = await voice.recv()
    # Both start at the media time due now: the same instant on both clocks, to within a frame.
    assert abs(v.pts / 90000 - a.pts / 48000) < 1 / 25 + 1e-9


async def test_after_a_pause_both_tracks_jump_to_now_together():
    clock = clock_due_long_ago(0)
    video = PacedVideoTrack(clock, FrameBuffer(4), np.zeros((16, 16, 3), np.uint8))
    voice = DelayedVoiceTrack(clock, AudioTimeline(2.0))
    await video.recv(), await voice.recv()
    time.sleep(0.8)  # the process stops (the event loop with it)
    v, a = await video.recv(), await voice.recv()
    due_now = clock.frame_playing()
    assert due_now - 1 <= v.pts // 3600 <= due_now and video.skipped == v.pts // 3600 - 1
    assert abs(v.pts / 90000 - a.pts / 48000) <= 0.04  # the voice jumped to the same media time
    v2, a2 = await video.recv(), await voice.recv()
    assert v2.pts - v.pts == 3600 and a2.pts - a.pts == 960  # and both go on from there, contiguous
