import shutil

import numpy as np
import pytest

from models.training.faces import mouth_track, render_clip, render_reference, sample_identity
from models.training.faces.identity import HAIR_STYLES
from models.training.metrics import mouth_opening


def tone_bursts(seconds: float, bursts: list[tuple[float, float]], db: float = -20.0, hz: float = 220.0):
    """Harmonic 'vowels' at `db` dBFS RMS during the given (start, end) seconds, silence elsewhere."""
    t = np.arange(int(seconds * 16000)) / 16000
    voice = sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 8))
    gate = np.zeros_like(t)
    for start, end in bursts:
        gate[(t >= start) & (t < end)] = 1.0
    voice *= 10 ** (db / 20) / np.sqrt(np.mean(voice ** 2))
    return (voice * gate).astype(np.float32)


def test_an_identity_is_a_function_of_the_rng_state():
    assert sample_identity(np.random.default_rng(3)) == sample_identity(np.random.default_rng(3))


def test_identities_cover_every_hair_style_many_skins_and_accessories():
    identities = [sample_identity(np.random.default_rng(s)) for s in range(60)]
    assert len({i.hair_style for i in identities}) == len(HAIR_STYLES)
    assert len({i.skin for i in identities}) > 30
    assert len({i.background for i in identities}) >= 4
    assert any(i.glasses for i in identities) and any(i.hat for i in identities) and any(i.earrings for i in identities)
    assert all(0.6 <= i.frame_fraction <= 0.7 for i in identities)


def test_silence_closes_the_mouth_and_loud_voice_opens_it():
    pcm = tone_bursts(3.0, [(1.0, 2.0)])
    track = mouth_track(pcm)
    assert track.shape == (75, 2) and track.dtype == np.float32
    assert np.all(track[:20, 0] == 0) and np.all(track[-20:, 0] == 0)
    assert np.all(track[30:45, 0] > 0.6)
    assert np.all(np.abs(track[:, 1]) <= 1) and np.all(track[:20, 1] == 0)


def test_openness_uses_an_absolute_loudness_scale():
    quiet = mouth_track(tone_bursts(2.0, [(0.5, 1.5)], db=-35.0))[20:30, 0].mean()
    loud = mouth_track(tone_bursts(2.0, [(0.5, 1.5)], db=-18.0))[20:30, 0].mean()
    very_quiet = mouth_track(tone_bursts(2.0, [(0.5, 1.5)], db=-50.0))[:, 0].max()
    assert 0.1 < quiet < 0.5 < loud
    assert very_quiet == 0


def test_mouth_cannot_jump_open():
    track = mouth_track(tone_bursts(2.0, [(1.0, 1.5)], db=-10.0))[:, 0]
    assert np.max(np.diff(track)) <= 0.5 + 1e-6
    assert np.max(-np.diff(track)) <= 0.35 + 1e-6


def test_mouth_track_looks_ahead_at_most_two_frames():
    rng = np.random.default_rng(0)
    pcm = tone_bursts(4.0, [(0.3, 1.1), (1.5, 2.6), (3.0, 3.8)]) + rng.normal(0, 0.003, 64000).astype(np.float32)
    base = mouth_track(pcm)
    for i in (10, 33, 57, 70):
        changed = pcm.copy()
        changed[640 * (i + 3):] = rng.normal(0, 0.3, len(pcm) - 640 * (i + 3))
        track = mouth_track(changed)
        np.testing.assert_array_equal(track[:i + 1], base[:i + 1])
        assert not np.array_equal(track[i + 1:], base[i + 1:])


def test_vowel_colour_rounds_or_spreads_the_lips():
    t = np.arange(16000) / 16000
    f0 = 2 * np.pi * 130 * t

    def vowel(formants):  # harmonics weighted by resonances at the formant frequencies
        out = np.zeros_like(t)
        for k in range(1, 40):
            gain = sum(1.0 / (1.0 + ((130 * k - f) / 90.0) ** 2) for f in formants)
            out += gain * np.sin(k * f0)
        return (0.1 * out / np.sqrt(np.mean(out ** 2))).astype(np.float32)

    oo = mouth_track(vowel([300, 870]))[5:20, 1].mean()
    ee = mouth_track(vowel([280, 2250, 2900]))[5:20, 1].mean()
    assert oo < -0.3 and ee > 0.3


def test_a_clip_has_one_frame_per_640_samples_begun_at_the_asked_size():
    ident = sample_identity(np.random.default_rng(1))
    pcm = tone_bursts(2.01, [(0.4, 1.6)])  # 32160 samples: 50.25 frames -> 51
    clip = render_clip(ident, pcm, np.random.default_rng(5), size=64)
    assert clip.shape == (51, 64, 64, 3) and clip.dtype == np.uint8


def test_same_rng_state_same_frames_and_another_state_moves_the_head_otherwise():
    ident = sample_identity(np.random.default_rng(1))
    pcm = tone_bursts(2.01, [(0.4, 1.6)])
    a = render_clip(ident, pcm, np.random.default_rng(5))
    assert np.array_equal(a, render_clip(ident, pcm, np.random.default_rng(5)))
    other = render_clip(ident, pcm, np.random.default_rng(6))
    # the mouth follows the audio alone; head motion, blinks and gaze come from the rng
    np.testing.assert_allclose(mouth_opening(other), mouth_opening(a), atol=0.01)  # peak 0.074
    assert not np.array_equal(a, other)


def test_the_head_moves_even_in_silence():
    ident = sample_identity(np.random.default_rng(1))
    frames = render_clip(ident, np.zeros(16000 * 4, np.float32), np.random.default_rng(5))
    still = render_reference(ident)
    away_from_still = np.abs(frames.astype(np.int16) - still.astype(np.int16)).mean(axis=(1, 2, 3))
    assert away_from_still.mean() > 1.0  # levels per pixel, over 4 s of silence


def test_rendered_mouth_opens_with_the_voice_for_every_identity():
    pcm = tone_bursts(2.0, [(0.8, 1.6)])
    rng = np.random.default_rng(2)
    for _ in range(12):
        frames = render_clip(sample_identity(rng), pcm, rng)
        opening = mouth_opening(frames)
        assert opening[28:38].mean() > 0.03
        assert opening[:15].max() < 0.3 * opening[28:38].mean()


def test_reference_is_neutral_and_identities_differ():
    rng = np.random.default_rng(4)
    a, b = sample_identity(rng), sample_identity(rng)
    ref_a = render_reference(a)
    assert ref_a.shape == (128, 128, 3) and ref_a.dtype == np.uint8
    assert np.array_equal(ref_a, render_reference(a))
    assert mouth_opening(ref_a[None])[0] < 0.015
    assert np.abs(ref_a.astype(int) - render_reference(b).astype(int)).mean() > 10
    # the face fills the middle: the centre of the frame is skin
    centre = ref_a[60:70, 58:70].reshape(-1, 3).mean(axis=0)
    assert np.abs(centre - np.array(a.skin)).max() < 30


def test_blinks_close_the_eyes():
    ident = sample_identity(np.random.default_rng(9))
    size = 256
    frames = render_clip(ident, np.zeros(16000 * 14, np.float32), np.random.default_rng(9), size=size)
    ref = render_reference(ident, size)

    def white(pixels):
        return ((pixels.min(axis=-1) > 215) & (np.ptp(pixels, axis=-1) < 25)).sum(axis=(-2, -1))

    top, bottom = int(size * 0.3), int(size * 0.5)
    sclera = white(frames[:, top:bottom])
    assert white(ref[top:bottom]) > 40
    closed = sclera < 0.2 * np.median(sclera)
    assert 2 <= closed.sum() <= 6 * 7  # a few blinks of a few frames each in 14 s
    assert closed.mean() < 0.15


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng")
def test_real_speech_drives_the_mouth():
    from models.training.speech import held_out_audio

    pcm = held_out_audio(0)
    track = mouth_track(pcm)
    assert (track[:, 0] > 0.3).mean() > 0.3 and (track[:, 0] == 0).mean() > 0.05
    assert track[:, 1].std() > 0.15
