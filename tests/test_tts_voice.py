"""TTS audio as a live voice (streaming/contrib/tts_voice.py), without a framework or a model: the
engine gets whole frames of 16 kHz audio, speech marked, silence when nothing is queued; the TTS
audio comes back byte for byte, filed under the frames that show it; utterances say where they
stopped; bad audio is refused and loses nothing."""

import numpy as np
import pytest

from avatar.errors import AudioError
from streaming.contrib.tts_voice import TtsVoice


def tone(seconds: float, rate: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 3000, int(seconds * rate)).clip(-32768, 32767)).astype(np.int16).tobytes()


class Engine:
    def __init__(self):
        self.pushes = []

    def __call__(self, pcm, speech):
        self.pushes.append((len(pcm), speech))

    def samples(self, speech=None):
        return sum(n for n, s in self.pushes if speech is None or s == speech)


def run_frames(voice, frames):
    """Feed and give out `frames` frames, as the service's clock does (here without a delay)."""
    out, played = {}, []
    for index in range(frames):
        voice.feed_frame()
        out[index] = voice.out_for(index)
        played += voice.ended_by(index)
    return out, played


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 48000])
def test_tts_audio_is_fed_in_whole_frames_and_comes_back_byte_for_byte(rate):
    engine = Engine()
    voice = TtsVoice(engine)
    run_frames(voice, 5)  # silence before the TTS speaks
    first, second = tone(0.5, rate, 1), tone(0.73, rate, 2)
    voice.started("ctx")
    for chunk in (first[i:i + 882] for i in range(0, len(first), 882)):  # 441-sample chunks
        voice.add(chunk, rate, 1, "ctx")
    assert voice.follow("first words")
    voice.add(second, rate, 1, "ctx")
    voice.stopped("ctx")
    assert voice.follow("stopped")
    out, played = run_frames(voice, 60)
    # what followed the audio comes out right after it
    items = [item for i in sorted(out) for item in out[i]]
    words, stopped = items.index("first words"), items.index("stopped")
    assert b"".join(p.audio for p in items[:words]) == first and stopped == len(items) - 1
    out = {i: [p for p in pieces if not isinstance(p, str)] for i, pieces in out.items()}
    assert engine.samples() == voice.fed == 65 * 640
    assert all(n <= 640 for n, _ in engine.pushes)
    assert abs(engine.samples(speech=True) - 1.23 * 16000) < 64
    pieces = [(i, p) for i in sorted(out) for p in out[i]]
    assert b"".join(p.audio for _, p in pieces) == first + second
    assert {(p.sample_rate, p.channels, p.context_id) for _, p in pieces} == {(rate, 1, "ctx")}
    frames = sorted({i for i, _ in pieces})
    assert frames == list(range(5, 5 + len(frames)))  # after the silence, every frame, no gap
    assert len(pieces) == len(frames) + 1  # one piece each, two where the words came between
    assert abs(len(frames) - 1.23 * 25) <= 1
    [report] = played
    assert report.context_id == "ctx" and not report.cut and abs(report.played_to_s - 1.23) < 0.01
    assert not voice.pending
    assert not voice.follow("nothing queued: goes on now")


def test_an_interrupt_drops_the_rest_and_says_where_the_utterance_stopped():
    engine = Engine()
    voice = TtsVoice(engine)
    voice.started("a")
    voice.add(tone(3.0, 24000), 24000, 1, "a")
    voice.follow("words never heard")
    for index in range(10):
        voice.feed_frame()
        voice.out_for(index)
    voice.feed_frame()  # fed ahead of what was given out (the engine's delay)
    [report] = voice.interrupt(10)
    assert report.cut and report.played_to_s == pytest.approx(0.4) and report.at_s == pytest.approx(0.4)
    assert voice.out_for(10) == [] and not voice.pending
    before = engine.samples(speech=True)
    voice.feed_frame()
    assert engine.samples(speech=True) == before  # silence from here
    # an utterance that had played out before the cut is not called cut
    voice.started("b")
    voice.add(tone(0.2, 24000), 24000, 1, "b")
    voice.stopped("b")
    start = voice.fed // 640
    for index in range(start, start + 6):
        voice.feed_frame()
        voice.out_for(index)
    [report] = voice.interrupt(start + 6)
    assert not report.cut and report.played_to_s == pytest.approx(0.2)


def test_bad_tts_audio_is_refused_and_loses_nothing():
    voice = TtsVoice(Engine())
    good = tone(0.1, 16000)
    voice.add(good, 16000, 1, None)
    with pytest.raises(AudioError, match="not whole"):
        voice.add(b"\x00\x01\x02", 16000, 1, None)
    with pytest.raises(AudioError, match="not whole"):
        voice.add(b"\x00\x01", 16000, 0, None)
    with pytest.raises(AudioError, match="sample rate"):
        voice.add(good, 123, 1, None)
    out, _ = run_frames(voice, 5)
    assert b"".join(p.audio for i in sorted(out) for p in out[i]) == good
