"""The portrait profile in the engine: MotionCodec, the whole-photo reference fitted once per avatar,
Session's exactness on a real photo, the paste-back output, and every bad photo a clear error."""

import struct
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from avatar import photo as photo_module
from avatar.errors import FaceError, ImageTooLarge, ProfileError
from avatar.session import Session
from models.interfaces import Codec, PhotoCodec
from models.portrait.codec import MOTION_RANGE, MotionCodec
from models.portrait.motion import CHANNELS

SR = 16000


def render_offline(profile, image, audio, **kwargs):
    s = Session(profile, image, seed=0, **kwargs)
    s.push_audio(audio, SR)
    return s.step(max_windows=None) + s.finish()


def test_motion_codec_is_a_photo_codec_with_the_contract_layout(portrait_profile):
    codec = portrait_profile.codec
    assert isinstance(codec, Codec) and isinstance(codec, PhotoCodec)
    assert (codec.latent_channels, codec.frames_per_latent) == (len(CHANNELS), 1) == (15, 1)
    assert [name for name, _ in codec.named_buffers()] == ["motion_mean", "motion_std"]
    codec = MotionCodec()
    codec.motion_mean.copy_(torch.linspace(-1, 1, 15))
    codec.motion_std.copy_(torch.linspace(0.5, 2, 15))
    motion = torch.randn(2, 7, 15)
    latents = codec.encode(motion)
    assert latents.shape == (2, 15, 7, 1, 1)
    assert torch.allclose(codec.motion(latents), motion, atol=1e-6)
    # the reference is the photo itself: the all-zero motion
    assert torch.allclose(codec.motion(codec.encode_reference(torch.zeros(1, 3, 64, 64))), torch.zeros(1, 1, 15),
                          atol=1e-6)


def test_decode_is_decode_images_in_minus_one_to_one_and_extremes_stay_in_the_picture(portrait_profile, photo):
    codec = portrait_profile.codec
    renderer, _ = codec.fit_photo(photo)
    far = torch.tensor(np.stack([MOTION_RANGE[:, 0] * 40, MOTION_RANGE[:, 1] * 40, np.zeros(15)]), dtype=torch.float32)
    latents = codec.encode(far[None])
    images, _ = codec.decode_images(latents, renderer)  # clamped to MOTION_RANGE: renders, no error
    frames, state = codec.decode(latents, renderer, torch.zeros(1, 3, 16, 40))
    assert state.renderer is renderer and frames.shape == (1, 3, 3, 512, 512) and frames.dtype == torch.float32
    back = ((frames[0] + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(back, np.stack(images))
    assert np.array_equal(images[2], renderer.render(np.zeros(15)))


def test_silence_eases_the_mouth_shut_and_speech_opens_it_just_before_the_voice(photo):
    """models/portrait/silence.py: the mouth channels (not blinks, brows or head) go to the photo's
    shut mouth over ~100 ms after the speech flags end, open over the LEAD_FRAMES before they start,
    and a stream decoded latent by latent (the gain carried in the state) is the stream decoded at once."""
    from models.portrait.silence import LEAD_FRAMES, MOUTH, close_in_silence
    motion = np.random.default_rng(0).uniform(0.2, 1.0, (30, 15))
    speech = np.zeros(30 + LEAD_FRAMES, bool)
    speech[0:10] = speech[20:] = True
    shown, gain = close_in_silence(motion, speech, 1.0, 100)
    others = np.setdiff1d(np.arange(15), MOUTH)
    assert np.array_equal(shown[:, others], motion[:, others]) and gain == 1.0
    assert np.array_equal(shown[:10], motion[:10]) and np.array_equal(shown[20:], motion[20:])
    closing = np.abs(shown[10:20, MOUTH] / motion[10:20, MOUTH]).max(1)
    assert list(closing > 0) == [True, True, False, False, False, False, False, False, True, True]
    assert (np.diff(closing[:3]) < 0).all() and 0 < closing[8] < closing[9] < 1   # eased, no jump
    codec = MotionCodec(64, 100)
    renderer, _ = codec.fit_photo(photo)
    latents = codec.encode(torch.from_numpy(motion).float()[None])
    whole, _ = codec.decode_images(latents, renderer, speech)
    state, pieces = renderer, []
    for i in range(0, 30, 2):
        made, state = codec.decode_images(latents[:, :, i:i + 2], state, speech[i:i + 2 + LEAD_FRAMES])
        pieces += made
    assert np.array_equal(np.stack(pieces), np.stack(whole)) and state.mouth_gain == 1.0
    assert not np.array_equal(whole[15], codec.decode_images(latents, renderer)[0][15])   # shut in the pause


def test_the_jaw_is_shown_through_its_curve_closed_stays_shut_small_openings_wider(photo):
    from models.portrait.codec import shown_jaw
    from models.portrait.motion import INDEX
    jaw = INDEX["jaw_open"]
    motion = np.zeros((6, 15))
    motion[:, jaw] = [-0.2, 0.0, 0.02, 0.2, 0.6, 1.0]
    motion[:, INDEX["lip_gap"]] = 0.3
    shown = shown_jaw(motion, (0.3, 0.8))
    assert np.array_equal(np.delete(shown, jaw, 1), np.delete(motion, jaw, 1))   # the jaw alone
    assert shown[0, jaw] == -0.2 and shown[1, jaw] == 0.0 and shown[5, jaw] == pytest.approx(0.8)
    assert np.all(np.diff(shown[1:, jaw]) > 0) and 3.2 < shown[2, jaw] / 0.02 < 3.5   # monotone; small x ~3.3x
    bare, curved = MotionCodec(64, None), MotionCodec(64, None, (0.3, 0.8))
    renderer, _ = bare.fit_photo(photo)
    latents = bare.encode(torch.from_numpy(motion[3:4]).float()[None])
    assert not np.array_equal(bare.decode_images(latents, renderer)[0][0], curved.decode_images(latents, renderer)[0][0])


def test_the_head_turns_are_shown_at_the_profiles_scale(photo):
    from models.portrait.motion import INDEX
    motion = np.zeros((1, 15))
    motion[0, [INDEX["head_yaw"], INDEX["head_pitch"], INDEX["head_roll"], INDEX["head_x"]]] = [4.0, -2.0, 1.0, 0.03125]
    codec = MotionCodec(64, None, None, 0.5)
    renderer, _ = codec.fit_photo(photo)
    shown = codec.decode_images(codec.encode(torch.from_numpy(motion).float()[None]), renderer)[0][0]
    half = motion[0].copy()
    half[[INDEX["head_yaw"], INDEX["head_pitch"], INDEX["head_roll"]]] *= 0.5   # not the shift
    assert np.array_equal(shown, renderer.render(half)) and not np.array_equal(shown, renderer.render(motion[0]))


def test_a_real_photo_moves_at_512x512(portrait_profile, photo, speech_like):
    # (streaming == offline and every frame once: test_session.py, for this profile too)
    frames = render_offline(portrait_profile, photo, speech_like(2.0))
    assert [f.index for f in frames] == list(range(50)) and {f.image.shape for f in frames} == {(512, 512, 3)}
    assert max(np.abs(f.image.astype(int) - frames[0].image).mean() for f in frames) > 0.5


def test_the_photo_is_fitted_once_per_avatar(portrait_profile, photo, monkeypatch):
    photo_module._fits.clear()
    calls = []
    fit = portrait_profile.codec.fit_photo
    monkeypatch.setattr(portrait_profile.codec, "fit_photo", lambda *a: calls.append(1) or fit(*a))
    first, second = Session(portrait_profile, photo), Session(portrait_profile, photo.copy())
    assert len(calls) == 1 and first.reference.fit is second.reference.fit
    Session(portrait_profile, photo, output_mode="photo")  # another output: another fit
    assert len(calls) == 2


def test_photo_output_pastes_the_face_into_the_whole_photo(portrait_profile, photo, speech_like):
    wide = cv2.copyMakeBorder(photo, 10, 9, 40, 47, cv2.BORDER_REFLECT)  # 599 x 531: odd sides
    frames = render_offline(portrait_profile, wide, speech_like(0.6), output_mode="photo")
    assert {f.image.shape for f in frames} == {(530, 598, 3)}  # even sides for 4:2:0 video
    s = Session(portrait_profile, wide, output_mode="photo")
    assert s.reference.image.shape == (530, 598, 3)
    x0, y0, x1, y1 = s.reference.face_box
    assert 40 < x0 < x1 < 598 and 0 < y0 < y1 < 530
    # far from the face, the photo is untouched
    assert np.array_equal(frames[-1].image[:, -20:], wide[:530, 578:598])


def test_photo_output_is_refused_for_a_profile_that_draws_its_own_crop(tiny_profile, face_image):
    with pytest.raises(ProfileError, match="portrait"):
        Session(tiny_profile, face_image, output_mode="photo")


def save(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path)
    return path


@pytest.mark.parametrize("case, reason", [
    ("no_face", "no_face"), ("tiny_face", "tiny_face"), ("side_view", ("profile", "no_face"))])
def test_photos_without_a_usable_face_are_clear_errors(portrait_profile, photo, tmp_path, case, reason):
    image = {"no_face": skdata.coffee(),
             "tiny_face": cv2.resize(photo, (160, 160), interpolation=cv2.INTER_AREA),
             "side_view": np.repeat(skdata.camera()[:, :, None], 3, axis=2)}[case]
    with pytest.raises(FaceError) as err:
        Session(portrait_profile, save(tmp_path, "p.png", image))
    assert err.value.reason in (reason if isinstance(reason, tuple) else (reason,))
    assert "photo" in str(err.value)


def test_an_image_bomb_is_refused_before_decoding(portrait_profile, tmp_path):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    with pytest.raises(ImageTooLarge):
        Session(portrait_profile, bomb)


def test_grayscale_rgba_and_group_photos_take_their_stated_fallbacks(portrait_profile, photo, tmp_path):
    gray = Session(portrait_profile, save(tmp_path, "g.png", cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), "L"))
    assert gray.reference.image.shape == (512, 512, 3)
    assert np.array_equal(gray.reference.image[..., 0], gray.reference.image[..., 2])
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], axis=2)
    rgba[:40, :40, 3] = 0
    cut_out = Session(portrait_profile, save(tmp_path, "a.png", rgba, "RGBA"))
    assert any("RGBA" in note and "white" in note for note in cut_out.reference.notes)
    face = photo[40:240, 120:330]
    group = np.full((420, 700, 3), 200, np.uint8)
    group[10:410, 0:420] = cv2.resize(face, (420, 400))
    group[150:250, 500:605] = cv2.resize(face, (105, 100))
    several = Session(portrait_profile, group)
    assert any("2 faces" in note for note in several.reference.notes)


def test_the_cli_renders_a_photo_cropped_or_pasted_back_and_refuses_a_faceless_one(tmp_path, photo, speech_like):
    import subprocess
    import sys

    import wave

    import av

    wav = tmp_path / "s.wav"
    pcm = (np.clip(speech_like(1.0), -1, 1) * 32767).astype(np.int16)
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SR), w.writeframes(pcm.tobytes())
    wide = save(tmp_path, "wide.png", cv2.copyMakeBorder(photo, 0, 0, 60, 61, cv2.BORDER_REFLECT))

    def render(image, *extra):
        out = tmp_path / f"out{len(extra)}.mp4"
        result = subprocess.run([sys.executable, "-m", "streaming.cli", "render", "--profile", "portrait-random",
                                 "--image", str(image), "--audio", str(wav), "--out", str(out), "--quiet", *extra],
                                capture_output=True, text=True, timeout=300)
        return result, out

    for extra, size in (((), (512, 512)), (("--output-mode", "photo"), (632, 512)), (("--size", "256"), (256, 256))):
        result, out = render(wide, *extra)
        assert result.returncode == 0, result.stderr
        with av.open(str(out)) as c:
            frames = [f for f in c.decode(video=0)]
        assert len(frames) == 25 and (frames[0].width, frames[0].height) == size
    result, _ = render(save(tmp_path, "cup.png", skdata.coffee()))
    assert result.returncode == 2 and "error: no face found in the photo" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_drift_stream_judges_minute_1_the_middle_and_the_last(portrait_profile, photo):
    """`avatar eval`'s drift figures (10 minutes of stream in benchmarks/eval-portrait-cpu.json),
    on a 6-second stream: three parts of 2 s, every 10th frame judged, shifts measured from the first."""
    from avatar.evaluate import _photo_drift
    from models.training.portrait.judge import Judge

    drift = _photo_drift(portrait_profile, photo, Judge(), minutes=0.1, seed=0)
    parts = drift["drift_by_part"]
    assert drift["frames_streamed"] == 150 and [p["from_s"] for p in parts.values()] == [0.0, 2.0, 4.0]
    assert all(p["frames_judged"] == 5 and p["frames_without_face"] == 0 for p in parts.values())
    assert parts["minute_1"]["head_shift_face_heights"] == 0 == parts["minute_1"]["head_scale_change"]
    assert drift["head_shift_face_heights"] == parts["last_minute"]["head_shift_face_heights"] < 0.2
    assert 0.5 < drift["identity_ssim_minute_1"] <= 1 and 0.5 < drift["sharpness_last_minute"] < 2
    assert drift["drift_within_2_percent"] == (drift["head_shift_face_heights"] <= 0.02
                                               and abs(drift["identity_change"]) <= 0.02)
