"""Speech targets: espeak-ng phoneme times -> visemes with coarticulation, closures, silence, blinks."""
import numpy as np
import pytest

from models.training.metrics import audio_envelope
from models.portrait.motion import INDEX
from models.training.speech import HELD_OUT_VOICES, SpeechSynthesisUnavailable, held_out_utterances
from models.training.portrait.judge import lagged_correlation
from models.training.portrait.targets import FPS, LEAD, blinks, speech_motion, viseme_class


def say(text, voice="en-us", speed=150):
    from models.training.portrait.espeak_events import speak
    try:
        return speak(text, voice, speed)
    except SpeechSynthesisUnavailable as err:
        pytest.skip(str(err))


def gap(motion):   # the inner-lip opening the motion asks for, in face heights (motion.py units)
    return motion[:, INDEX["jaw_open"]] * 0.10 + motion[:, INDEX["lip_gap"]] * 0.04


def test_phoneme_events_are_timed_inside_the_audio():
    said = say("Hello world, how are you?")
    times = [t for t, _ in said.phonemes]
    assert len(times) > 10 and times == sorted(times)
    assert 0 <= times[0] and times[-1] <= len(said.audio) / 16000 + 1e-3
    assert {"h", "w", "aU"} <= {p for _, p in said.phonemes}


@pytest.mark.parametrize("phoneme,cls", [("m", "bilabial"), ("b", "bilabial"), ("f", "labiodental"),
                                         ("A:", "open"), ("i:", "close_front"), ("u:", "close_round"),
                                         ("oU", "mid_round"), ("tS", "postalveolar"), ("t", "alveolar"),
                                         ("_:", "pause"), ("@L", "schwa"), ("'E", "mid")])
def test_viseme_classes(phoneme, cls):
    assert viseme_class(phoneme) == cls


def test_lips_meet_for_m_b_p_and_open_for_vowels():
    said = say("my mom bought a bad map")
    motion = speech_motion(said.phonemes, said.audio, np.random.default_rng(0))
    g = gap(motion)
    starts = [t for t, _ in said.phonemes] + [len(said.audio) / 16000]
    for (t, p), end in zip(said.phonemes, starts[1:]):
        frame = int(round(((t + end) / 2 - LEAD) * FPS - 0.5))   # the frame nearest its centre
        if viseme_class(p) == "bilabial":
            assert g[frame] <= 1e-9, (p, t)
    assert g.max() > 0.05


def test_open_vowel_opens_wider_than_close_vowels():
    ah = speech_motion(*(lambda s: (s.phonemes, s.audio))(say("ah")), np.random.default_rng(0))
    ee = speech_motion(*(lambda s: (s.phonemes, s.audio))(say("ee")), np.random.default_rng(0))
    oo = speech_motion(*(lambda s: (s.phonemes, s.audio))(say("oo")), np.random.default_rng(0))
    assert gap(ah).max() > 1.5 * gap(ee).max()
    assert ee[:, INDEX["mouth_wide"]].max() > 0.3 and oo[:, INDEX["mouth_round"]].max() > 0.6


def test_silence_shuts_the_mouth_and_speech_follows_loudness():
    first, second = (say(s, HELD_OUT_VOICES[0]) for s in held_out_utterances()[:2])
    pause = np.zeros(16000, np.float32)
    audio = np.concatenate([first.audio, pause, second.audio])
    offset = (len(first.audio) + len(pause)) / 16000
    phonemes = first.phonemes + [(t + offset, p) for t, p in second.phonemes]
    motion = speech_motion(phonemes, audio, np.random.default_rng(0))
    g = gap(motion)
    mid = int((len(first.audio) / 16000 + 0.5) * FPS)
    assert np.abs(g[mid - 5:mid + 5]).max() < 1e-6
    sync = lagged_correlation(g, audio_envelope(audio))
    assert sync["correlation"] > 0.75 and abs(sync["lag_frames"]) <= 1, sync
    assert np.percentile(g, 90) >= 0.05


def test_blinks_are_natural():
    eyes = blinks(25 * 60, np.random.default_rng(1))
    starts = np.flatnonzero((eyes[1:] > 0) & (eyes[:-1] == 0))
    assert 8 <= len(starts) <= 30                     # about 17 a minute
    assert np.diff(starts).min() >= 1.2 * FPS - 1
    peaks = [eyes[s:s + 8].max() for s in starts[:-1]]
    assert min(peaks) > 0.9


def test_training_and_held_out_examples_are_apart_and_aligned():
    from models.training.speech import HELD_OUT_VOICES, training_voices
    from models.training.portrait.dataset import held_out_example, training_example
    say("check")   # skips without espeak-ng
    rng = np.random.default_rng(3)
    for _ in range(2):
        ex = training_example(rng, seconds=3.0)
        assert ex.voice in training_voices() and ex.voice not in HELD_OUT_VOICES
        assert not set(ex.texts) & set(held_out_utterances())
        assert len(ex.audio) / 16000 >= 3.0
        assert len(ex.motion) == int(np.ceil(len(ex.audio) / 16000 * FPS))
        assert ex.phonemes[-1][0] < len(ex.audio) / 16000
    held = held_out_example(1)
    assert held.voice == HELD_OUT_VOICES[1] and set(held.texts) <= set(held_out_utterances())
    # espeak-ng's library carries state from one synthesis to the next (its command line starts
    # fresh each time), so a repeat says the same phonemes within a few milliseconds
    again = held_out_example(1)
    assert [p for _, p in held.phonemes] == [p for _, p in again.phonemes]
    assert max(abs(a - b) for (a, _), (b, _) in zip(held.phonemes, again.phonemes)) < 0.03
