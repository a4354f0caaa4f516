"""The EchoMimicV3 (preview) inputs as the official pipeline builds them, on the real 1.3B layout
(random weights, reduced block count, tiny grids): face mask, audio slots, official plan, loader."""

import pytest
import torch

from avatar.profiles import _merge, read_profile_config
from models.echomimic_inputs import face_token_mask
from models.wan_dit import build_dit, random_fill_


def real_layout_dit(blocks: int):
    torch.manual_seed(0)
    cfg = _merge(read_profile_config("echomimic-v3"), {"dit": {"num_layers": blocks}})
    dit = random_fill_(build_dit(cfg, "cpu"), std=0.05)
    with torch.no_grad():  # non-zero biases, as real weights have (a zero feature then is not a zero token)
        for name, p in dit.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.05)
    return dit.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def one_block():
    return real_layout_dit(1)


@pytest.fixture(scope="module")
def two_blocks():
    return real_layout_dit(2)


def inputs(dit, rows=3, frames=2, grid=(8, 8), seed=1):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, 36, frames, *grid, generator=g)
    timestep = torch.tensor([937.5, 412.25, 20.0][:rows])
    context = dit.prepare_context(torch.randn(1, 7, 4096, generator=g), torch.randn(1, 257, 1280, generator=g))
    audio = torch.randn(rows, frames, 17, 768, generator=g)
    audio[0] = 0  # the official null-audio row
    return hidden, timestep, context, audio


def per_token(out: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) output -> (B, T, H/2 * W/2, C * 4): one row per DiT token."""
    b, c, t, h, w = out.shape
    out = out.reshape(b, c, t, h // 2, 2, w // 2, 2).permute(0, 2, 3, 5, 1, 4, 6)
    return out.reshape(b, t, (h // 2) * (w // 2), -1)


def test_face_token_mask_floors_the_box_onto_the_16_pixel_grid():
    mask = face_token_mask((20, 40, 70, 100), 128, 128)
    assert mask.shape == (64,)
    rows, cols = torch.nonzero(mask.reshape(8, 8), as_tuple=True)
    assert set(rows.tolist()) == {2, 3, 4, 5} and set(cols.tolist()) == {1, 2, 3}
    assert mask.sum() == 12
    assert face_token_mask((0, 0, 128, 96), 128, 160).reshape(8, 10)[:6, :8].all()
    with pytest.raises(ValueError, match="empty"):
        face_token_mask((10, 10, 10, 20), 64, 64)


def test_the_mask_changes_exactly_the_tokens_outside_the_box_in_every_row(one_block):
    dit = one_block
    hidden, timestep, context, audio = inputs(dit)
    mask = face_token_mask((16, 16, 48, 64), 64, 64)[None]  # 64 px image: 8x8 latents, 4x4 tokens
    inside = mask[0].bool()
    assert 0 < inside.sum() < inside.numel()
    with torch.no_grad():
        free = per_token(dit(hidden, timestep, context, audio))
        masked = per_token(dit(hidden, timestep, context, audio, audio_mask=mask))
        silent = per_token(dit(hidden, timestep, context, audio, audio_mask=torch.zeros_like(mask)))
    # One block: self-attention mixes tokens before the cross-attention, the rest is per token.
    assert torch.equal(masked[:, :, inside], free[:, :, inside])
    assert torch.equal(masked[:, :, ~inside], silent[:, :, ~inside])
    for row in range(3):  # every guidance row, the null-audio row included, is masked
        assert (masked[row][:, ~inside] - free[row][:, ~inside]).abs().amax(-1).min() > 0


def test_the_mask_applies_in_every_block(two_blocks):
    dit = two_blocks
    hidden, timestep, context, audio = inputs(dit, seed=2)
    n = 16
    with torch.no_grad():
        free = dit(hidden, timestep, context, audio)
        ones = dit(hidden, timestep, context, audio, audio_mask=torch.ones(1, n))
        zeros = dit(hidden, timestep, context, audio, audio_mask=torch.zeros(3, n))
        saved = [b.attn2.to_v_audio.weight.clone() for b in dit.blocks]
        for b in dit.blocks:
            b.attn2.to_v_audio.weight.zero_()
        try:
            no_audio_anywhere = dit(hidden, timestep, context, audio)
        finally:
            for b, w in zip(dit.blocks, saved):
                b.attn2.to_v_audio.weight.copy_(w)
    assert torch.equal(ones, free)
    assert torch.equal(zeros, no_audio_anywhere)
    assert not torch.allclose(zeros, free)
    with pytest.raises(ValueError, match="audio_mask must be"):
        dit(hidden, timestep, context, audio, audio_mask=torch.ones(1, n + 1))
