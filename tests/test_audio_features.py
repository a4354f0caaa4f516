import numpy as np
import torch

from models.audio_features import MelEncoder, decode_audio_file, latent_token_window, lookahead_seconds


def test_tokens_depend_only_on_their_span():
    enc = MelEncoder(40)
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, 16000).astype(np.float32)

    def tokens(j0, j1):
        s0, s1 = enc.token_span(j0, j1)
        padded = np.concatenate([np.zeros(max(-s0, 0), np.float32), audio[max(s0, 0):s1]])
        return enc.encode(padded, j1 - j0)

    whole = tokens(0, 40)
    assert whole.shape == (40, 40)
    torch.testing.assert_close(torch.cat([tokens(0, 13), tokens(13, 40)]), whole, atol=1e-4, rtol=1e-4)


def test_loud_tokens_are_higher_than_silent_ones_on_a_fixed_scale():
    enc = MelEncoder(40)
    n = 4
    s0, s1 = enc.token_span(0, n)
    silent = enc.encode(np.zeros(s1 - s0, np.float32), n)
    noise = np.random.default_rng(0).normal(0, 0.1, s1 - s0).astype(np.float32)
    loud = enc.encode(noise, n)
    assert loud.mean() > silent.mean() + 1.0
    assert silent.max() <= -1.9 and loud.max() < 3.0  # on the scale, not clipped


def test_latent_windows_and_lookahead():
    # EchoMimicV3 preview: 17 tokens per latent frame (5 before, 8 own, 4 after)
    j0, j1 = latent_token_window(2, 4, 2, behind=5, ahead=4)
    assert (j0, j1) == (16 - 5, 24 + 4)
    assert abs(lookahead_seconds(MelEncoder(), 4) - (4 * 320 + 160) / 16000) < 1e-9


def test_audio_files_are_decoded_to_16k_mono(tmp_path):
    import av

    rate, seconds = 44100, 0.5
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((tone * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    pcm = decode_audio_file(path)
    assert pcm.dtype == np.float32 and len(pcm) == 8000  # 0.5 s at 16 kHz, the resampler flushed
    spectrum = np.abs(np.fft.rfft(pcm[1000:7000]))
    assert abs(np.argmax(spectrum) * 16000 / 6000 - 440) < 5
    assert abs(np.sqrt(np.mean(pcm[1000:7000] ** 2)) - 0.3 / np.sqrt(2)) < 0.003  # the level kept
