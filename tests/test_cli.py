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
    assert frames == 250  # every frame written once
    assert abs(audio_s - 10.0) < 0.1


def test_a_file_that_is_not_an_image_is_a_clear_error(tmp_path, speech_like):
    wav, not_image = tmp_path / "s.wav", tmp_path / "x.png"
    write_wav(wav, speech_like(0.5))
    not_image.write_text("hello")
    result = avatar("render", "--image", str(not_image), "--audio", str(wav), "--out", str(tmp_path / "o.mp4"),
                    "--profile", "tiny-random", "--quiet")
    assert result.returncode == 2 and "error: not a supported image (PNG, JPEG" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_audio_file_is_a_clear_error(tmp_path):
    result = avatar("render", "--image", str(tmp_path / "x.png"), "--audio", str(tmp_path / "none.wav"),
                    "--out", str(tmp_path / "o.mp4"), "--quiet")
    assert result.returncode == 2 and f"audio file not found: {tmp_path / 'none.wav'}" in result.stderr


def test_a_missing_weights_directory_is_a_clear_error(tmp_path):
    result = avatar("bench", "--profile", "echomimic-v3", "--weights", str(tmp_path / "missing"))
    assert result.returncode == 2 and f"weights directory not found: {tmp_path / 'missing'}" in result.stderr


def test_an_unknown_profile_is_a_clear_error_listing_the_known_ones():
    result = avatar("bench", "--profile", "nope")
    assert result.returncode == 2
    assert "unknown profile 'nope'; known profiles: echomimic-v3, echomimic-v3-fast" in result.stderr


def test_bench_prints_and_writes_json(tmp_path):
    import json

    out = tmp_path / "bench.json"
    result = avatar("bench", "--profile", "tiny-random", "--seconds", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    for key, value in data.items():
        assert f"{key}: {value}" in result.stdout
    # 1 s at 25 fps needs 25 frames: 4 windows of 8 frames, all measured
    assert data["frames_per_window"] == 8 and data["windows"] == 4 and data["media_s"] == 1.28
    assert data["real_time_factor"] == pytest.approx(data["compute_s"] / data["media_s"], abs=1e-3)
    assert data["fps"] == pytest.approx(32 / data["compute_s"], rel=1e-2)
    # per-window latencies: each window is a part of the whole compute time
    assert data["window_latency_p50_s"] <= data["window_latency_p95_s"] <= data["compute_s"]
    assert data["random_weights"] is True and data["steps"] == 2
