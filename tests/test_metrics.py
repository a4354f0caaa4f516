import shutil

import cv2
import numpy as np
import pytest

from models.training import metrics
from models.training.faces import render_clip, render_reference, sample_identity

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng")


@pytest.fixture(scope="module")
def spoken():
    """Real speech: a held-out sentence and a training mix with pauses, noise and several voices."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs Debian's espeak-ng")
    from models.training.speech import held_out_audio, make_training_audio

    return [np.concatenate([held_out_audio(3), np.zeros(8000, np.float32), held_out_audio(4)]),
            make_training_audio(np.random.default_rng(21), 8.0)]


@pytest.fixture(scope="module")
def talking(spoken):
    rng = np.random.default_rng(13)
    clips = []
    for pcm in spoken:
        for _ in range(3):
            ident = sample_identity(rng)
            clips.append((ident, pcm, render_clip(ident, pcm, rng)))
    return clips


def test_audio_envelope_reads_absolute_loudness():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    pcm = np.concatenate([np.zeros(8000, np.float32), 0.2 * tone, 0.02 * tone, np.zeros(100, np.float32)])
    env = metrics.audio_envelope(pcm)
    assert env.shape == (int(np.ceil(len(pcm) / 640)),)
    assert np.all(env[:12] == 0)
    assert np.all(env[13:37] > 0.9)
    assert np.all((env[38:62] > 0.1) & (env[38:62] < 0.5))


@needs_espeak
def test_ground_truth_frames_are_in_sync(talking):
    for _, pcm, frames in talking:
        result = metrics.lip_sync(frames, pcm)
        assert result["correlation"] >= 0.8
        assert abs(result["lag_frames"]) <= 1


@needs_espeak
def test_delaying_the_video_moves_the_lag(talking):
    _, pcm, frames = talking[0]
    base = metrics.lip_sync(frames, pcm)["lag_frames"]
    late = np.concatenate([np.repeat(frames[:1], 3, axis=0), frames[:-3]])
    early = np.concatenate([frames[2:], np.repeat(frames[-1:], 2, axis=0)])
    assert metrics.lip_sync(late, pcm)["lag_frames"] == base + 3
    assert metrics.lip_sync(early, pcm)["lag_frames"] == base - 2


@needs_espeak
def test_unrelated_audio_is_not_in_sync(talking, spoken):
    _, _, frames = talking[0]
    other = spoken[1][:len(frames) * 640]
    assert metrics.lip_sync(frames[:len(other) // 640], other)["correlation"] < 0.5


@needs_espeak
def test_mouth_opening_survives_blur_and_head_shifts(talking):
    _, _, frames = talking[1]
    sharp = metrics.mouth_opening(frames)
    blurred = metrics.mouth_opening(np.stack([cv2.GaussianBlur(f, (0, 0), 1.2) for f in frames]))
    shifted = metrics.mouth_opening(np.roll(frames, (5, -6), axis=(1, 2)))
    assert np.corrcoef(sharp, blurred)[0, 1] > 0.9
    assert np.corrcoef(sharp, shifted)[0, 1] > 0.95


def test_seam_ratio_is_the_change_at_boundaries_over_the_change_inside():
    steps = np.ones(24)  # each frame one level brighter than the one before ...
    steps[[7, 15]] = 3.0  # ... and three levels across the boundaries at frames 8 and 16
    levels = np.concatenate([[0.0], np.cumsum(steps)])
    frames = np.broadcast_to(levels[:, None, None, None], (25, 4, 4, 3)).astype(np.uint8)
    assert metrics.seam_ratio(frames, [8, 16]) == 3.0
    with pytest.raises(ValueError, match="boundaries inside the clip"):
        metrics.seam_ratio(frames, [0, len(frames) + 3])


def test_splicing_two_takes_at_the_boundaries_shows_as_seams():
    rng = np.random.default_rng(3)
    t = np.arange(int(6.0 * 16000)) / 16000
    pcm = (0.1 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    ident = sample_identity(rng)
    smooth = render_clip(ident, pcm, rng)
    windows = list(range(12, len(smooth), 12))
    other_take = render_clip(ident, pcm, rng)  # same face, different head motion and blinks
    spliced = smooth.copy()
    for k, b in enumerate(windows):
        if k % 2 == 0:
            spliced[b:b + 12] = other_take[b:b + 12]
    # one take measures 0.86, the spliced one 6.4
    assert metrics.seam_ratio(smooth, windows) < 1.0 and metrics.seam_ratio(spliced, windows) > 5.0


@needs_espeak
def test_identity_is_more_similar_to_its_own_reference(talking):
    references = [render_reference(ident) for ident, _, _ in talking]
    for i, (_, _, frames) in enumerate(talking):
        own = metrics.identity_similarity(frames, references[i])
        assert own.shape == (len(frames),) and own.min() > 0.7
        for j, reference in enumerate(references):
            if j != i:
                assert own.mean() > metrics.identity_similarity(frames, reference).mean()


@needs_espeak
def test_colour_drift_grows_with_a_tint(talking):
    ident, _, frames = talking[2]
    reference = render_reference(ident)
    drifts = []
    for amount in (0, 8, 16, 32):
        tinted = np.clip(frames.astype(np.int16) + np.array([amount, 0, -amount]), 0, 255).astype(np.uint8)
        drifts.append(metrics.colour_drift(tinted, reference).mean())
    assert drifts[0] < 3.0
    assert all(a < b for a, b in zip(drifts, drifts[1:]))
    assert drifts[-1] > 5 * drifts[0]


def test_change_by_position_finds_motion_that_comes_in_steps():
    rng = np.random.default_rng(0)
    steady = np.cumsum(rng.normal(0, 1, (33, 8, 8, 3)), axis=0)  # a random walk: even motion
    held = np.repeat(steady[::4], 4, axis=0)[:33]  # each picture held for 4 frames
    even = metrics.change_by_position(steady, 8)
    assert even.shape == (8,) and np.all(np.abs(even - 1) < 0.35)
    steps = metrics.change_by_position(held, 8)
    assert steps[3] > 3 and steps[7] > 3 and steps[0] < 0.01  # all the change at every 4th frame
