"""The EchoMimicV3 (preview) inputs as the official pipeline builds them, on the real 1.3B layout
(random weights, reduced block count, tiny grids): face mask, audio slots, official plan, loader."""

from dataclasses import replace

import pytest
import torch

from avatar.profiles import read_profile_config
from models.echomimic_inputs import face_token_mask, official_audio_window
from models.wan_dit import build_dit, random_fill_


def layout(blocks: int):
    """The published 1.3B [dit] table with `blocks` blocks."""
    return replace(read_profile_config("echomimic-v3").dit, num_layers=blocks)


def real_layout_dit(blocks: int):
    torch.manual_seed(0)
    dit = random_fill_(build_dit(layout(blocks), "cpu"), std=0.05)
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
    assert inside.sum() == 6  # rows 1-3, columns 1-2 of the 4x4 grid: tokens on both sides of the box
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


class IndexEncoder:
    """Token j is the number j (1-d feature): shows which token sits in which slot."""

    tokens_per_frame = 2
    feature_dim = 1

    def token_span(self, j0, j1):
        return j0 * 320, j1 * 320

    def encode(self, samples, n):
        assert len(samples) == n * 320
        return torch.as_tensor(samples[::320], dtype=torch.float32)[:, None] / 320


def read_sample_numbers(s0, s1):
    import numpy as np

    return np.arange(s0, s1, dtype=np.float64)


def official_chunk_windows(latents: int) -> list[tuple[int, int]]:
    """The official windows (inclusive chunk-local token ranges) of a chunk of 1 + latents latents:
    latent 0 (the reference frame) [-11, 5], latent i >= 1 [8i - 11, 8i + 5]; the chunk holds
    2 * (4 * latents + 1) tokens, slots outside them are zeros (split_tensor_with_padding)."""
    return [(-11, 5)] + [(8 * i - 11, 8 * i + 5) for i in range(1, latents + 1)]


@pytest.mark.parametrize("first", [0, 1, 7])
def test_window_audio_follows_the_official_chunk_layout(first):
    count = 5  # [reference | 2 context | 3 new]
    features, slots = official_audio_window(IndexEncoder(), read_sample_numbers, first, count, 4, 5, 4)
    assert features.shape == (1 + count, 17, 1) and slots.shape == (1 + count, 17)
    chunk_tokens = 2 * (4 * count + 1)
    offset = 8 * first - 2  # chunk-local token 0 is the reference's frame, just before latent `first`
    for row, (a, b) in enumerate(official_chunk_windows(count)):
        local = torch.arange(a, b + 1)
        ours = local + offset
        expected_slots = (local >= 0) & (local < chunk_tokens) & (ours >= 0)  # and nothing before the stream
        assert torch.equal(slots[row], expected_slots), row
        assert torch.equal(features[row, :, 0], torch.where(expected_slots, ours.float(), 0.0)), row
    # the reference: its own frame's and the next two frames' tokens, 11 zero slots (13 at the stream's start)
    assert int((~slots[0]).sum()) == (13 if first == 0 else 11)
    assert int((~slots[1]).sum()) == (5 if first == 0 else 3)
    assert not slots[-1, -4:].any() and slots[-1, :-4].all()  # no look-ahead past the window


def test_zero_slots_are_zero_tokens_after_the_projection(one_block):
    dit = one_block
    hidden, timestep, context, audio = inputs(dit, seed=3)
    slots = torch.ones(1, 2, 17, dtype=torch.bool)
    slots[:, 0, :11] = False
    slots[:, 1, -4:] = False
    other = audio.clone()
    other[:, ~slots[0]] = torch.randn_like(other[:, ~slots[0]])
    zero_features = audio.clone()
    zero_features[:, ~slots[0]] = 0
    with torch.no_grad():
        a = dit(hidden, timestep, context, audio, audio_slots=slots)
        b = dit(hidden, timestep, context, other, audio_slots=slots)
        before = dit(hidden, timestep, context, zero_features)
    assert torch.equal(a, b)  # what a zero slot holds never reaches the DiT
    assert (a - before).abs().max() > 1e-3  # zeros before the projection are LayerNorm-bias tokens, not zeros
    with pytest.raises(ValueError, match="audio_slots must be"):
        dit(hidden, timestep, context, audio, audio_slots=slots[:, :1])


def test_the_loader_skips_only_keys_the_official_model_skips_too(one_block, tmp_path, caplog):
    from safetensors.torch import save_file

    from models.checkpoints import CheckpointError
    from models.wan_dit import load_dit_file, ours_to_original

    official = {ours_to_original(k): v.contiguous() for k, v in one_block.state_dict().items()}
    assert len(official) == 1076 - 29 * 35  # the published 30-block file has 35 tensors a block
    unused = {"ref_conv.weight": torch.randn(1536, 16, 2, 2), "ref_conv.bias": torch.randn(1536),
              "control_adapter.conv.weight": torch.randn(1536, 24, 2, 2)}
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({**official, **unused}, str(path))
    with caplog.at_level("WARNING", logger="models.wan_dit"):
        loaded = load_dit_file(build_dit(layout(1), "meta"), path, "test", "cpu", torch.float32)
    assert "3 tensors the official model does not use either are skipped: control_adapter.conv.weight, " \
           "ref_conv.bias, ref_conv.weight" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), one_block.state_dict().values()))

    save_file({**official, "blocks.0.cross_attn.alpha": torch.zeros(1), "ref_conv.weight": unused["ref_conv.weight"]},
              str(path))
    with pytest.raises(CheckpointError, match=r"unexpected keys: blocks\.0\.cross_attn\.alpha$"):
        load_dit_file(build_dit(layout(1), "meta"), path, "test", "cpu", torch.float32)
