"""The 1.3B profiles' components through the session path.

A full echomimic-v3-random window (1.3B DiT in float32 on 2 CPU cores) takes 35-50 s on a quiet
machine and minutes on a busy one, so the default test runs a shrunken config (small DiT and VAE;
the real wav2vec2-base shapes) through the same `load_components` and `Session` code; the full-size
window runs with AVATAR_FULL_1P3B=1.
"""

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from avatar.profiles import Profile, load_profile, read_profile_config
from avatar.session import Session
from models.checkpoints import CheckpointError
from models.echomimic_inputs import face_token_mask
from models.profile_config import ImageConfig, TextConfig
from models.wan_components import load_components
from models.wan_dit import ours_to_original

SMALL_DIT = dict(num_attention_heads=2, attention_head_dim=32, text_dim=32, ffn_dim=128, num_layers=2,
                 image_dim=16, added_kv_proj_dim=64, rope_max_seq_len=64)
SMALL_VAE = dict(base_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1)


def small_cfg(name="echomimic-v3-random", **over):
    cfg = read_profile_config(name)
    return replace(cfg, dit=replace(cfg.dit, **SMALL_DIT), codec=replace(cfg.codec, vae=SMALL_VAE), **over)


def make_profile(cfg, root=None):
    torch.manual_seed(0)
    dit, codec, audio, text, image = load_components(cfg, root, "cpu")
    return Profile(cfg, torch.device("cpu"), torch.float32, dit.eval().requires_grad_(False),
                   codec.eval().requires_grad_(False), audio, text, image)


@pytest.fixture(scope="module")
def small_profile():
    return make_profile(small_cfg())


def run_windows(profile, image, audio, windows):
    session = Session(profile, image, seed=0)
    session.push_audio(audio, 16000)
    frames = []
    for _ in range(windows):
        frames += session.step(1)
    return session, frames


def test_random_components_have_the_real_interfaces(small_profile):
    p = small_profile
    assert p.codec.frames_per_latent == 4 and p.codec.latent_channels == 16 and p.codec.spatial_factor == 8
    assert p.audio_encoder.tokens_per_frame == 2 and p.audio_encoder.feature_dim == 768
    assert p.encode_text("a prompt").shape == (1, 512, 32)
    assert p.encode_image(np.zeros((64, 64, 3), np.uint8)).shape == (1, 257, 16)
    # official slots: no ahead tokens past the window; 0.32 s right context + the receptive field's 5 ms overhang
    assert p.lookahead_s == pytest.approx(0.32 + 0.005)


def test_two_windows_through_the_session(small_profile, face_image, speech_like):
    session, frames = run_windows(small_profile, face_image, speech_like(3.0), 2)
    assert [f.index for f in frames] == list(range(24))
    assert all(f.image.shape == (64, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert session.last_window.context_latents == 2
    assert np.std(np.stack([f.image for f in frames]).astype(np.float32)) > 1.0  # not a flat image


def test_audio_changes_the_frames(small_profile, face_image, speech_like):
    _, speech = run_windows(small_profile, face_image, speech_like(2.0, seed=1), 1)
    _, other = run_windows(small_profile, face_image, speech_like(2.0, seed=2), 1)
    _, again = run_windows(small_profile, face_image, speech_like(2.0, seed=1), 1)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(speech, again))  # deterministic
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(speech, other))


def test_real_weights_path_with_small_files(tmp_path):
    cfg = small_cfg("echomimic-v3", text=TextConfig(encoder="zeros"), image=ImageConfig(encoder="zeros"))
    with pytest.raises(CheckpointError, match="missing directory .*Wan2.1-Fun-V1.1-1.3B-InP"):
        load_components(cfg, tmp_path, "cpu")
    base = tmp_path / "Wan2.1-Fun-V1.1-1.3B-InP"
    base.mkdir()
    with pytest.raises(CheckpointError, match=r"missing weight file .*transformer/diffusion_pytorch_model\.safetensors"):
        load_components(cfg, tmp_path, "cpu")
    source = make_profile(small_cfg())
    (tmp_path / "transformer").mkdir()
    save_file({ours_to_original(k): v.contiguous() for k, v in source.dit.state_dict().items()},
              str(tmp_path / "transformer" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(CheckpointError, match=r"Wan2\.1_VAE\.pth"):
        load_components(cfg, tmp_path, "cpu")
    source.codec.vae.save_pretrained(base / "vae")
    with pytest.raises(CheckpointError, match=r"wav2vec2-base-960h/config\.json"):
        load_components(cfg, tmp_path, "cpu")
    source.audio_encoder.model.save_pretrained(tmp_path / "wav2vec2-base-960h")
    dit, codec, audio, _, _ = load_components(cfg, tmp_path, "cpu")
    for a, b in ((source.dit, dit), (source.codec, codec), (source.audio_encoder.model, audio.model)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_fast_profile_reads_its_own_transformer_file(tmp_path):
    cfg = small_cfg("echomimic-v3-fast")
    (tmp_path / "Wan2.1-Fun-V1.1-1.3B-InP").mkdir()
    with pytest.raises(CheckpointError, match=r"transformer-fast/diffusion_pytorch_model\.safetensors"):
        load_components(cfg, tmp_path, "cpu")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("AVATAR_FULL_1P3B"), reason="set AVATAR_FULL_1P3B=1 (1.3B DiT, ~6 GB, ~45 s)")
def test_one_full_size_window(face_image, speech_like):
    profile = load_profile("echomimic-v3-random", "cpu")
    assert sum(p.numel() for p in profile.dit.parameters()) > 1.3e9
    _, frames = run_windows(profile, face_image, speech_like(2.0), 1)
    assert len(frames) == 12 and frames[0].image.shape == (64, 64, 3)


def recorded(monkeypatch, dit, name: str) -> list[tuple]:
    """The arguments of each call of `dit.<name>` (the session builds a forward's audio keys/values
    and step conditions once, with `audio_context` / `step_conditions`, and hands them to forward)."""
    calls, build = [], getattr(dit, name)

    def record(*args):
        calls.append(args)
        return build(*args)
    monkeypatch.setattr(dit, name, record)
    return calls


def test_the_dit_gets_the_official_audio_slots_and_the_face_mask(small_profile, face_image, speech_like, monkeypatch):
    built = recorded(monkeypatch, small_profile.dit, "audio_context")
    session, _ = run_windows(small_profile, face_image, speech_like(3.0), 2)
    box = session.reference.face_box
    assert box is not None
    assert all(mask is not None for *_, mask in built)
    assert all(not audio.any() for audio, _, slots, _ in built if slots is None)  # the null row's, once
    calls = [(audio, slots, mask) for audio, _, slots, mask in built if slots is not None]
    first_window = [c for c in calls if c[1].shape[1] == 4]  # [reference | 3 new]
    second_window = [c for c in calls if c[1].shape[1] == 6]  # [reference | 2 context | 3 new]
    assert first_window and second_window
    for audio, slots, mask in calls:
        assert torch.equal(mask, face_token_mask(box, 64, 64)[None])  # once per reference, every row
        assert audio.shape[0] == slots.shape[0] or slots.shape[0] == 1
        assert not slots[0, -1, -4:].any()  # no look-ahead past the window's end
    _, slots, _ = first_window[0]
    assert int((~slots[0, 0]).sum()) == 13  # the reference before the stream's first sample
    _, slots, _ = second_window[0]
    assert int((~slots[0, 0]).sum()) == 11 and int((~slots[0, 1]).sum()) == 3  # the official's reference
    audio = second_window[0][0]
    assert (audio[:, 0, 11:].abs().sum(-1) > 0).any()  # the reference hears its own frames' audio


def test_grey_latents_are_the_vae_encoding_of_mid_grey_frames_after_the_reference(small_profile):
    codec = small_profile.codec
    torch.manual_seed(4)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    video = torch.cat([image[:, :, None], torch.zeros(1, 3, 8, 64, 64)], dim=2)  # reference + 2 latents of grey
    with torch.no_grad():
        expected = codec.normalise(codec.vae.encode(video).latent_dist.mean)[:, :, 1:]
        grey = codec.grey_latents(image, 2)
    torch.testing.assert_close(grey, expected, rtol=1e-5, atol=1e-5)
    assert grey.abs().amax() > 0  # mid-grey is not a zero latent


@pytest.mark.parametrize("mode", ["inpaint", "clean-tokens"])
def test_both_conditionings_keep_the_stream_exact(small_profile, face_image, speech_like, mode, monkeypatch):
    profile = small_profile.with_conditioning(mode)
    calls = []
    conditions = recorded(monkeypatch, profile.dit, "step_conditions")
    hook = profile.dit.register_forward_pre_hook(lambda m, args, kw: calls.append(args[0]), with_kwargs=True)
    try:
        session = Session(profile, face_image, seed=0)
        session.push_audio(speech_like(3.0), 16000)
        first = session.step(1)
        kept = session._context.clone()  # the latents the first window made, as the second gets them
        calls.clear()
        second = session.step(1)
    finally:
        hook.remove()
    frames = first + second
    assert [f.index for f in frames] == list(range(24))  # every frame once
    assert [f.pts for f in frames] == [i / 25 for i in range(24)]  # contiguous timestamps
    c, n = profile.context_latents, profile.new_latents
    timesteps = [t for t, _ in conditions]
    assert calls and timesteps
    for hidden in calls:
        assert hidden.shape[2] == 1 + c + n
        assert torch.equal(hidden[:, 16:20, :1 + c], torch.ones_like(hidden[:, 16:20, :1 + c]))
        assert not hidden[:, 16:20, 1 + c:].any()
        assert torch.equal(hidden[:, 20:, 1:1 + c], kept.expand(len(hidden), -1, -1, -1, -1))  # context unchanged
        if mode == "inpaint":
            assert torch.equal(hidden[:, 20:, 1 + c:], session._grey[:, :, c:c + n].expand(len(hidden), -1, -1, -1, -1))
        else:
            assert torch.equal(hidden[:, :16, 1:1 + c], kept.expand(len(hidden), -1, -1, -1, -1))
            assert not hidden[:, 20:, 1 + c:].any()
    for timestep in timesteps:
        if mode == "inpaint":
            assert timestep.ndim == 1 or torch.equal(timestep, timestep[:, :1].expand_as(timestep))  # one a row
        else:
            clean = timestep.shape[1] - n  # the reference (and the context, after the first window)
            assert not timestep[:, :clean].any() and timestep[:, clean:].all()  # clean tokens at t=0
