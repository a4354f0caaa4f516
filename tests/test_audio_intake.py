import numpy as np
import pytest

from avatar.audio import AudioTimeline, Resampler, load_audio_file, to_float_channels
from avatar.errors import AudioError


def test_formats_become_float_channels():
    assert to_float_channels(np.array([16384, -32768], np.int16)).tolist() == [[0.5, -1.0]]
    out = to_float_channels(np.array([[0.5, 2.0], [np.nan, -0.25]], np.float64))
    assert out.shape == (2, 2) and out.tolist() == [[0.5, 0.0], [1.0, -0.25]]
    with pytest.raises(AudioError, match="sample format"):
        to_float_channels(np.zeros(4, np.uint8))
    with pytest.raises(AudioError, match="shape"):
        to_float_channels(np.zeros((2, 2, 2), np.float32))


def test_streaming_resampler_keeps_length_and_pitch():
    r = Resampler(16000)
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([tone, tone], axis=1)
    out = np.concatenate([r.push(stereo[i:i + 960], 48000) for i in range(0, 48000, 960)] + [r.flush()])
    assert abs(len(out) - 16000) <= 32
    spectrum = np.abs(np.fft.rfft(out[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 3
    with pytest.raises(AudioError, match="sample rate"):
        r.push(tone, 0)


def test_timeline_reads_pad_with_silence_and_discard_old_samples():
    tl = AudioTimeline()
    tl.append(np.arange(1, 11, dtype=np.float32))
    assert tl.read(-2, 3).tolist() == [0, 0, 1, 2, 3]
    assert tl.read(8, 12).tolist() == [9, 10, 0, 0]
    tl.discard_before(5)
    assert tl.start == 5 and tl.read(5, 7).tolist() == [6, 7]
    with pytest.raises(AudioError, match="discarded"):
        tl.read(2, 6)
    tl.silence_from(8)
    assert tl.read(6, 10).tolist() == [7, 8, 0, 0]


def test_audio_files(tmp_path):
    import wave

    path = tmp_path / "a.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(22050)
        w.writeframes((np.random.default_rng(0).normal(0, 3000, (22050, 2))).astype(np.int16).tobytes())
    samples = load_audio_file(path)
    assert abs(len(samples) - 16000) <= 32 and samples.dtype == np.float32
    (tmp_path / "b.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio_file(tmp_path / "b.wav")
    with pytest.raises(AudioError, match="not found"):
        load_audio_file(tmp_path / "missing.wav")
