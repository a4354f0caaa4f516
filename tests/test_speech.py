import shutil

import numpy as np
import pytest

from models.audio_features import decode_audio_file
from models.training import speech

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng")


def test_synthesized_speech_decodes_to_16k_mono_speech(tmp_path):
    path = speech.synthesize("Hello there, how are you today?", "en-us+f3", 170, 60, tmp_path / "a.wav")
    pcm = decode_audio_file(path)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert 1.0 < len(pcm) / 16000 < 4.0
    assert 0.02 < np.sqrt(np.mean(pcm ** 2)) < 0.5
    assert np.abs(pcm).max() <= 1.0


def test_slower_speech_lasts_longer(tmp_path):
    text = "The quick brown fox jumps over the lazy dog."
    fast = decode_audio_file(speech.synthesize(text, "en-gb", 250, 50, tmp_path / "f.wav"))
    slow = decode_audio_file(speech.synthesize(text, "en-gb", 110, 50, tmp_path / "s.wav"))
    assert len(slow) > 1.6 * len(fast)


def test_unknown_voice_is_a_clear_error(tmp_path):
    with pytest.raises(speech.SpeechSynthesisUnavailable, match="espeak-ng"):
        speech.synthesize("hello", "xx-nonexistent-voice", path=tmp_path / "x.wav")


def test_missing_espeak_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(speech.SpeechSynthesisUnavailable, match="apt-get install espeak-ng"):
        speech.synthesize("hello")


def test_voices_are_listed_and_training_voices_all_speak(tmp_path):
    voices = speech.list_voices()
    assert "en-us" in voices and "en-gb" in voices
    for language in speech.TRAIN_LANGUAGES:
        assert language in voices
    for voice in speech.training_voices()[::7] + list(speech.HELD_OUT_VOICES):
        speech.synthesize("Testing.", voice, path=tmp_path / "v.wav")


def test_held_out_voices_and_sentences_never_appear_in_training():
    train = set(speech.training_voices())
    train_languages = {v.split("+")[0] for v in train}
    train_variants = {v.split("+")[1] for v in train}
    for voice in speech.HELD_OUT_VOICES:
        language, variant = voice.split("+")
        assert voice not in train and language not in train_languages and variant not in train_variants
    rng = np.random.default_rng(0)
    sentences = {speech.random_utterance(rng) for _ in range(500)}
    assert len(sentences) > 300  # varied
    assert not sentences & set(speech.held_out_utterances())


def test_training_audio_is_a_function_of_the_rng_state():
    a = speech.make_training_audio(np.random.default_rng(7), 2.0)
    assert np.array_equal(a, speech.make_training_audio(np.random.default_rng(7), 2.0))
    assert not np.array_equal(a, speech.make_training_audio(np.random.default_rng(8), 2.0))


def test_training_audio_has_speech_and_pauses_at_the_asked_length():
    seconds = 6.0
    a = speech.make_training_audio(np.random.default_rng(7), seconds)
    assert a.dtype == np.float32 and len(a) == int(seconds * 16000)
    frame_rms = np.sqrt(np.mean(a.reshape(-1, 640) ** 2, axis=1))
    db = 20 * np.log10(frame_rms + 1e-9)
    assert (db > -35).mean() > 0.3  # speech
    assert (db < -50).mean() > 0.05  # pauses


def test_held_out_audio_is_speech():
    pcm = speech.held_out_audio(2)
    assert len(pcm) > 16000 and np.sqrt(np.mean(pcm ** 2)) > 0.02
