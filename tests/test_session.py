import numpy as np
import pytest
import torch

from avatar.session import Session, stream_file

SR = 16000


def render_offline(profile, image, audio, seed=0):
    s = Session(profile, image, seed=seed)
    s.push_audio(audio, SR)
    return s.step(max_windows=None) + s.finish()


@pytest.fixture(params=["tiny", "portrait"])
def engine(request, tiny_profile, face_image, portrait_profile, photo):
    """The exactness tests hold for both kinds of codec: tiny's latent decoder and portrait's renderer
    (a real photo, 512x512 frames)."""
    return (tiny_profile, face_image) if request.param == "tiny" else (portrait_profile, photo)


def test_streaming_in_20ms_pieces_equals_rendering_at_once(engine, speech_like):
    profile, image = engine
    audio = speech_like(2.5)
    offline = render_offline(profile, image, audio)
    s = Session(profile, image, seed=0)
    streamed = []
    for start in range(0, len(audio), 320):
        s.push_audio(audio[start:start + 320], SR)
        streamed += s.step(max_windows=None)
    streamed += s.finish()
    assert [f.index for f in streamed] == [f.index for f in offline]
    for a, b in zip(streamed, offline):
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1


def test_every_frame_exactly_once_with_contiguous_timestamps(engine, speech_like):
    profile, image = engine
    audio = np.concatenate([speech_like(1.2), np.zeros(SR, np.float32), speech_like(1.3, seed=1)])
    frames = render_offline(profile, image, audio)
    expected = -(-len(audio) // 640)
    assert [f.index for f in frames] == list(range(expected))
    assert np.allclose(np.diff([f.pts for f in frames]), 1 / 25)
    assert frames[0].pts == 0
    windows = [f.window for f in frames]
    assert windows == sorted(windows) and len(set(windows)) == -(-expected // profile.frames_per_window)
    assert {f.image.shape for f in frames} == {profile.resolution + (3,)}
    speech = np.array([f.speech for f in frames])
    assert speech[:25].any() and not speech[40:50].any() and speech[-20:].any()


def test_deliver_gets_each_latent_frames_as_decoded_and_they_are_the_window(tiny_profile, face_image, speech_like):
    """A live stream is handed a latent's frames as soon as they exist: the first ones are shown
    while the rest of the window is decoded. The same frames as a window made without it."""
    audio = speech_like(2.0)
    plain, live = Session(tiny_profile, face_image, seed=0), Session(tiny_profile, face_image, seed=0)
    plain.push_audio(audio, SR)
    live.push_audio(audio, SR)
    fpl = tiny_profile.codec.frames_per_latent
    for _ in range(2):
        handed = []
        result = live.run_window(deliver=lambda frames: handed.append([f.index for f in frames]))
        expected = plain.run_window()
        assert handed == [[f.index for f in result.frames[i:i + fpl]] for i in range(0, len(result.frames), fpl)]
        assert len(handed) == tiny_profile.new_latents
        assert [f.index for f in result.frames] == [f.index for f in expected.frames]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(result.frames, expected.frames))


def test_ten_seconds_make_250_frames(tiny_profile, face_image, speech_like):
    frames = render_offline(tiny_profile, face_image, speech_like(10.0))
    assert len(frames) == 250 and frames[-1].index == 249
    assert frames[0].image.shape == (128, 128, 3) and frames[0].image.dtype == np.uint8


class RecordingDiT(torch.nn.Module):
    """Wraps the real DiT and keeps the inputs of every forward."""

    def __init__(self, dit):
        super().__init__()
        self.dit, self.calls = dit, []

    def prepare_context(self, *a):
        return self.dit.prepare_context(*a)

    def forward(self, hidden, timestep, context, audio, **kwargs):
        self.calls.append((hidden.clone(), timestep.clone()))
        return self.dit(hidden, timestep, context, audio, **kwargs)


def test_context_latents_pass_unchanged_into_the_next_window(tiny_profile, face_image, speech_like):
    from dataclasses import replace

    recorder = RecordingDiT(tiny_profile.dit)
    profile = replace(tiny_profile, dit=recorder)
    decoded = []
    original_decode = profile.codec.decode

    class Codec:
        frames_per_latent = tiny_profile.codec.frames_per_latent
        encode_reference = staticmethod(tiny_profile.codec.encode_reference)
        start_stream = staticmethod(tiny_profile.codec.start_stream)

        @staticmethod
        def decode(latents, state, audio):
            decoded.append(latents.clone())
            return original_decode(latents, state, audio)

    profile = replace(profile, codec=Codec)
    s = Session(profile, face_image, seed=3)
    s.push_audio(speech_like(1.5), SR)
    s.step(2)
    n = profile.new_latents
    assert len(decoded) == 2 * n  # a latent frame at a time
    first_window = torch.cat(decoded[:n], dim=2)
    c = profile.context_latents
    second_window_inputs = [h for h, t in recorder.calls if h.shape[2] == 1 + c + n]
    assert second_window_inputs
    for hidden in second_window_inputs:
        expected = first_window[:, :, -c:].expand(hidden.shape[0], -1, -1, -1, -1)
        torch.testing.assert_close(hidden[:, :16, 1:1 + c], expected, rtol=0, atol=0)
        torch.testing.assert_close(hidden[:, 20:36, 1:1 + c], expected, rtol=0, atol=0)
        assert torch.all(hidden[:, 16:20, :1 + c] == 1) and torch.all(hidden[:, 16:20, 1 + c:] == 0)
    timesteps = [t for h, t in recorder.calls if h.shape[2] == 1 + c + profile.new_latents]
    assert all(torch.all(t[:, :1 + c] == 0) and torch.all(t[:, 1 + c:] > 0) for t in timesteps)


def test_silence_takes_the_cheaper_idle_path(tiny_profile, face_image):
    s = Session(tiny_profile, face_image)
    s.push_audio(np.zeros(SR * 2, np.float32), SR)
    frames = s.step(1)
    assert len(frames) == tiny_profile.frames_per_window and not any(f.speech for f in frames)
    assert s.last_window.idle and s.last_window.forwards == tiny_profile.idle_steps


def test_vad_marks_override_the_energy_gate(tiny_profile, face_image, speech_like):
    s = Session(tiny_profile, face_image)
    s.push_audio(speech_like(1.0), SR, speech=False)
    s.push_audio(np.zeros(SR, np.float32), SR, speech=True)
    frames = s.step(max_windows=None) + s.finish()
    flags = np.array([f.speech for f in frames])
    assert not flags[:25].any() and flags[26:50].all()


def test_speech_marks_given_after_the_audio(tiny_profile, face_image, speech_like):
    # A live caller's audio reaches the session before the VAD's verdict: frames past the last mark
    # follow the energy gate, a mark that comes later overrides it, and speech an interrupt already
    # silenced stays silence when its (late) mark says speech.
    s = Session(tiny_profile, face_image)
    s.push_audio(np.zeros(SR, np.float32), SR)
    s.push_audio(speech_like(1.0), SR)
    s.mark_speech(0, SR // 2, False)
    assert not s._audio.frame_speech(0, 25).any() and s._audio.frame_speech(25, 50).all()
    s.mark_speech(SR // 2, 2 * SR, False)  # the verdict comes: none of it was speech
    assert not s._audio.frame_speech(0, 50).any()
    s.mark_speech(SR, 2 * SR, True)
    assert s._audio.frame_speech(25, 50).all()
    s.interrupt()  # no frames made yet: all of it becomes silence
    s.mark_speech(SR, 2 * SR, True)  # a verdict on audio the interrupt silenced
    s.push_audio(np.zeros(SR, np.float32), SR)
    assert not s._audio.frame_speech(0, 75).any()
    frames = s.step(max_windows=None)
    assert frames and not any(f.speech for f in frames)


def test_interrupt_turns_pending_speech_into_idle(tiny_profile, face_image, speech_like):
    s = Session(tiny_profile, face_image)
    s.push_audio(speech_like(3.0), SR)
    s.step(1)
    assert not s.last_window.idle
    s.interrupt()
    s.step(1)
    assert s.last_window.idle
    frames = s.finish()
    assert not any(f.speech for f in frames)


def test_other_rates_channels_and_formats(tiny_profile, face_image, speech_like):
    audio = speech_like(1.0)
    stereo_44k = np.repeat(np.interp(np.arange(44100) / 44100, np.arange(SR) / SR, audio)[:, None], 2, axis=1)
    s = Session(tiny_profile, face_image)
    s.push_audio((stereo_44k * 32767).astype(np.int16), 44100)
    frames = s.finish()
    assert len(frames) == 25  # 1 s at 25 fps
    s = Session(tiny_profile, face_image)
    bad = audio.copy()
    bad[100:200] = np.nan
    s.push_audio(bad, SR)
    assert len(s.finish()) == 25


def test_empty_and_silent_input(tiny_profile, face_image):
    s = Session(tiny_profile, face_image)
    assert s.finish() == []
    s = Session(tiny_profile, face_image)
    s.push_audio(np.zeros(8000, np.float32), SR)
    frames = s.finish()
    assert len(frames) == 13 and not any(f.speech for f in frames)


def test_a_long_stream_keeps_a_bounded_audio_buffer(tiny_profile, face_image):
    s = Session(tiny_profile, face_image)
    for _ in range(6):
        s.push_audio(np.zeros(SR, np.float32), SR)
        s.step(max_windows=None)
    held = s.timeline.end - s.timeline.start
    assert s.timeline.start > 0 and held < 2 * SR


def test_step_with_no_limit_runs_every_ready_window(tiny_profile, face_image, speech_like):
    s = Session(tiny_profile, face_image)
    s.push_audio(speech_like(2.0), SR)
    ready = s.windows_ready()
    frames = s.step(max_windows=None)
    assert ready >= 2 and len(frames) == ready * tiny_profile.frames_per_window
    assert s.windows_ready() == 0


def test_stream_file_gives_the_frames_of_rendering_at_once(tiny_profile, face_image, speech_like):
    audio = speech_like(2.5)
    offline = render_offline(tiny_profile, face_image, audio)
    streamed = [f for frames in stream_file(Session(tiny_profile, face_image, seed=0), audio) for f in frames]
    assert [f.index for f in streamed] == [f.index for f in offline]
    for a, b in zip(streamed, offline):
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() <= 1


def test_tiny_stays_clean_tokens_and_refuses_inpaint(tiny_profile, face_image):
    from avatar.errors import ProfileError

    assert tiny_profile.conditioning == "clean-tokens"
    with pytest.raises(ProfileError, match="inpaint conditioning needs the Wan VAE"):
        Session(tiny_profile.with_conditioning("inpaint"), face_image)


def test_skip_passes_over_windows_and_goes_on_from_the_next(tiny_profile, face_image, speech_like):
    s = Session(tiny_profile, face_image)
    fpw = tiny_profile.frames_per_window
    s.push_audio(speech_like(4.0), SR)
    first = s.run_window()
    ready = s.windows_ready()
    s.skip(2)
    assert s.windows_ready() == ready - 2
    after = s.run_window()
    assert (first.first_frame, after.first_frame, after.window) == (0, 3 * fpw, 3)
    assert [f.index for f in after.frames] == list(range(3 * fpw, 4 * fpw))
    assert s.interrupt() == 4 * fpw * 640  # speech is dropped from the window after the last made
