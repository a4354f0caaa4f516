import subprocess
import sys
import wave

import av
import numpy as np
import pytest
from PIL import Image


def write_wav(path, audio, rate=16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())


def avatar(*args, env=None):
    return subprocess.run([sys.executable, "-m", "streaming.cli", *args], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.slow
def test_render_ten_seconds_gives_250_frames_with_the_audio(tmp_path, face_image, speech_like):
    wav, img, out = tmp_path / "speech.wav", tmp_path / "face.png", tmp_path / "out.mp4"
    # 22.05 kHz in: the engine resamples
    audio16 = speech_like(10.0)
    audio22 = np.interp(np.arange(220500) / 22050, np.arange(160000) / 16000, audio16)
    write_wav(wav, audio22, 22050)
    Image.fromarray(face_image).save(img)
    result = avatar("render", "--image", str(img), "--audio", str(wav), "--out", str(out),
                    "--profile", "tiny-random", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "250 frames" in result.stdout and "real-time factor" in result.stdout
    with av.open(str(out)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == "h264" and vs.average_rate == 25
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(out)) as c:
        audio_s = sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate
    assert abs(frames - 250) <= 1
    assert abs(audio_s - 10.0) < 0.1


def test_bad_inputs_are_clear_errors_not_tracebacks(tmp_path, speech_like):
    wav = tmp_path / "s.wav"
    write_wav(wav, speech_like(0.5))
    not_image = tmp_path / "x.png"
    not_image.write_text("hello")
    result = avatar("render", "--image", str(not_image), "--audio", str(wav), "--out", str(tmp_path / "o.mp4"),
                    "--profile", "tiny-random", "--quiet")
    assert result.returncode == 2 and "error: not a supported image" in result.stderr
    assert "Traceback" not in result.stderr
    result = avatar("render", "--image", str(not_image), "--audio", str(tmp_path / "none.wav"),
                    "--out", str(tmp_path / "o.mp4"), "--quiet")
    assert result.returncode == 2 and "audio file not found" in result.stderr
    result = avatar("bench", "--profile", "echomimic-v3", "--weights", str(tmp_path / "missing"))
    assert result.returncode == 2 and "weights directory not found" in result.stderr
    result = avatar("bench", "--profile", "nope")
    assert result.returncode == 2 and "unknown profile" in result.stderr and "tiny" in result.stderr


def test_bench_prints_and_writes_json(tmp_path):
    import json

    out = tmp_path / "bench.json"
    result = avatar("bench", "--profile", "tiny-random", "--seconds", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for key in ("real_time_factor", "window_latency_p50_s", "window_latency_p95_s", "fps", "peak_rss_mb"):
        assert data[key] > 0 and key in result.stdout
    assert data["random_weights"] is True
