import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

from models.dit import AudioWanTransformer, phase_weight

SMALL = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
             text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=64)


def small_model(**kw):
    torch.manual_seed(0)
    return AudioWanTransformer(**{**SMALL, "image_dim": 8, "added_kv_proj_dim": 24, "text_len": 512,
                                  "audio_dim": 10, **kw}).eval()


def randomise_audio_branch(model):
    with torch.no_grad():
        for block in model.blocks:
            torch.nn.init.normal_(block.attn2.to_k_audio.weight, std=0.3)
            torch.nn.init.normal_(block.attn2.to_v_audio.weight, std=0.3)


def test_without_audio_it_computes_exactly_what_diffusers_wan_computes():
    model = small_model()
    reference = WanTransformer3DModel(**SMALL, image_dim=8, added_kv_proj_dim=24).eval()
    _, unexpected = reference.load_state_dict(model.state_dict(), strict=False)
    assert all("audio" in k for k in unexpected)
    x, t = torch.randn(1, 36, 3, 8, 8), torch.tensor([700.0])
    text, image = torch.randn(1, 512, 16), torch.randn(1, 257, 8)
    with torch.no_grad():
        ours = model(x, t, model.prepare_context(text, image), audio=torch.randn(1, 3, 5, 10))
        theirs = reference(x, t, text, image).sample
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_short_prompts_are_padded_not_shifted_and_long_ones_refused():
    model = small_model()
    x, t = torch.randn(1, 36, 2, 8, 8), torch.tensor([500.0])
    text = torch.randn(1, 7, 16)
    padded = torch.cat([text, torch.zeros(1, 505, 16)], dim=1)
    image = torch.randn(1, 257, 8)
    with torch.no_grad():
        a = model(x, t, model.prepare_context(text, image))
        b = model(x, t, model.prepare_context(padded, image))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="at most 512"):
        model.prepare_context(torch.randn(1, 513, 16), image)


def test_per_frame_timesteps_equal_a_shared_timestep_when_all_equal():
    model = small_model()
    x = torch.randn(2, 36, 3, 8, 8)
    ctx = model.prepare_context(torch.randn(1, 4, 16))
    with torch.no_grad():
        a = model(x, torch.tensor([300.0, 600.0]), ctx)
        b = model(x, torch.tensor([[300.0] * 3, [600.0] * 3]), ctx)
    torch.testing.assert_close(a, b)


def test_per_frame_timesteps_compute_what_diffusers_computes_with_per_token_timesteps():
    model = small_model()
    reference = WanTransformer3DModel(**SMALL, image_dim=8, added_kv_proj_dim=24).eval()
    reference.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(1, 36, 3, 8, 8)
    per_frame = torch.tensor([[0.0, 300.0, 700.0]])  # a clean frame beside two noisy ones
    per_token = per_frame.repeat_interleave(4 * 4, dim=1)  # 4x4 patches per latent frame
    text, image = torch.randn(1, 512, 16), torch.randn(1, 257, 8)
    with torch.no_grad():
        ours = model(x, per_frame, model.prepare_context(text, image))
        theirs = reference(x, per_token, text, image).sample
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_audio_cross_attention_is_frame_local():
    model = small_model()
    randomise_audio_branch(model)
    attn = model.blocks[0].attn2
    frames, per_frame = 3, 16
    x = torch.randn(1, frames * per_frame, 24)
    ctx = model.prepare_context(torch.randn(1, 4, 16), torch.randn(1, 257, 8))
    audio = torch.randn(1, frames, 5, 10)
    shape = torch.Size((1, 36, frames, 8, 8))  # 4x4 patches of 2x2: 16 tokens per frame
    with torch.no_grad():
        steps = model.step_conditions(torch.tensor([500.0]), shape)

        def run(a):
            return model._cross_attention(attn, 0, x, ctx, model.audio_context(a, shape), steps)
        base = run(audio)
        changed = audio.clone()
        changed[:, 1] = torch.randn(5, 10)
        out = run(changed)
    diff = (out - base).abs().reshape(frames, per_frame, -1).amax(dim=(1, 2))
    assert diff[0] == 0 and diff[2] == 0 and diff[1] > 1e-3


def test_a_new_audio_branch_starts_silent():
    model = small_model()
    x, t = torch.randn(1, 36, 2, 8, 8), torch.tensor([500.0])
    ctx = model.prepare_context(torch.randn(1, 4, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, ctx, torch.randn(1, 2, 5, 10)), model(x, t, ctx, None))


def test_phase_weights_move_between_late_and_early():
    sigma = torch.tensor([0.0, 0.5, 1.0])
    w = phase_weight(sigma, early=1.0, late=0.2, boundary=0.5, width=0.05)
    assert w[0] == pytest.approx(0.2, abs=1e-3) and w[2] == pytest.approx(1.0, abs=1e-3)
    assert w[1] == pytest.approx(0.6, abs=1e-3)
    assert torch.equal(phase_weight(sigma, 0.7, 0.7, 0.5, 0.1), torch.full((3,), 0.7))


def test_phase_weighting_changes_the_audio_contribution_by_timestep():
    model = small_model(audio_weight_early=1.0, audio_weight_late=0.0, phase_width=0.01)
    randomise_audio_branch(model)
    x = torch.randn(1, 36, 2, 8, 8)
    ctx = model.prepare_context(torch.randn(1, 4, 16))
    audio = torch.randn(1, 2, 5, 10)
    full = small_model(audio_weight_early=1.0, audio_weight_late=1.0)  # the same weights, audio always at 1
    full.load_state_dict(model.state_dict())
    with torch.no_grad():
        late_a, late_b = model(x, torch.tensor([50.0]), ctx, audio), model(x, torch.tensor([50.0]), ctx, None)
        early, early_full = model(x, torch.tensor([950.0]), ctx, audio), full(x, torch.tensor([950.0]), ctx, audio)
        early_silent = model(x, torch.tensor([950.0]), ctx, None)
    torch.testing.assert_close(late_a, late_b)  # audio weight 0 in the late phase
    torch.testing.assert_close(early, early_full)  # weight 1 in the early phase
    assert not torch.allclose(early, early_silent)  # and the audio branch is not silent there
