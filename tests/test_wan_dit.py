"""The 1.3B DiT's key map (Wan original names <-> ours) and exact, memory-light loading."""

import pytest
import torch
from safetensors.torch import save_file

from models.checkpoints import CheckpointError
from models.profile_config import DitConfig
from models.profile_reader import read_profile
from models.wan_dit import build_dit, load_dit_file, original_to_ours, ours_to_original, random_fill_


def original_layout(dit) -> dict[str, torch.Size]:
    """Original-name keys with shapes, derived from our model through the inverse map."""
    out = {}
    for key, value in dit.state_dict().items():
        original = ours_to_original(key)
        assert original is not None, f"no original name for {key}"
        out[original] = value.shape
    return out


@pytest.fixture(scope="module")
def real_layout():
    dit = build_dit(read_profile("echomimic-v3").dit, "meta")
    return dit, original_layout(dit)


def test_the_map_covers_every_key_of_the_real_config_both_ways(real_layout):
    dit, layout = real_layout
    ours = dit.state_dict()
    assert len(layout) == len(ours)  # injective: no two of our keys share an original name
    assert {original_to_ours(k) for k in layout} == set(ours)
    # The published preview transformer holds 1,076 tensors, 93 of them audio (30 x 3 + 3).
    assert len(layout) == 1076
    assert sum("audio" in k for k in layout) == 93


def test_original_names_are_the_published_ones(real_layout):
    _, layout = real_layout
    expected = {
        "patch_embedding.weight": (1536, 36, 1, 2, 2),
        "text_embedding.0.weight": (1536, 4096),
        "time_projection.1.weight": (9216, 1536),
        "img_emb.proj.0.weight": (1280,),
        "img_emb.proj.1.weight": (1280, 1280),
        "img_emb.proj.3.weight": (1536, 1280),
        "img_emb.proj.4.bias": (1536,),
        "head.head.weight": (64, 1536),
        "head.modulation": (1, 2, 1536),
        "blocks.29.modulation": (1, 6, 1536),
        "blocks.0.self_attn.norm_q.weight": (1536,),
        "blocks.0.cross_attn.k_img.weight": (1536, 1536),
        "blocks.0.cross_attn.norm_k_img.weight": (1536,),
        "blocks.0.norm3.weight": (1536,),  # affine norm before cross-attention
        "blocks.0.ffn.0.weight": (8960, 1536),
        "blocks.0.ffn.2.weight": (1536, 8960),
        "blocks.7.cross_attn.k_audio.weight": (1536, 1536),
        "blocks.7.cross_attn.v_audio.weight": (1536, 1536),
        "blocks.7.cross_attn.norm_k_audio.weight": (1536,),
        "audio2token.proj.weight": (1536, 768),
        "audio2token.norm.bias": (1536,),
    }
    for key, shape in expected.items():
        assert tuple(layout[key]) == shape, key
    assert not any(".norm2." in k for k in layout)  # Wan's norm2 (before the FFN) has no weights
    assert original_to_ours("blocks.3.norm3.bias") == "blocks.3.norm2.bias"


def _save_original(dit, path, drop=(), extra=None):
    tensors = {ours_to_original(k): v.contiguous() for k, v in dit.state_dict().items()}
    for k in drop:
        del tensors[k]
    tensors.update(extra or {})
    save_file(tensors, str(path))


SMALL_CFG = DitConfig(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36,
                      out_channels=16, text_dim=24, freq_dim=32, ffn_dim=48, num_layers=2, image_dim=20,
                      added_kv_proj_dim=32, rope_max_seq_len=64, text_len=512, audio_dim=12, audio_kv_bias=False)


def test_a_small_model_saved_in_original_names_loads_to_the_same_function(tmp_path):
    torch.manual_seed(0)
    source = random_fill_(build_dit(SMALL_CFG, "cpu"), std=0.2).eval()
    _save_original(source, tmp_path / "w.safetensors")
    loaded = load_dit_file(build_dit(SMALL_CFG, "meta"), tmp_path / "w.safetensors", "test", "cpu",
                           torch.float32).eval()
    x, t = torch.randn(1, 36, 3, 8, 8), torch.tensor([600.0])
    text, image, audio = torch.randn(1, 7, 24), torch.randn(1, 257, 20), torch.randn(1, 3, 5, 12)
    with torch.no_grad():
        a = source(x, t, source.prepare_context(text, image), audio)
        b = loaded(x, t, loaded.prepare_context(text, image), audio)
        silent = loaded(x, t, loaded.prepare_context(text, image), None)
    assert torch.equal(a, b)
    assert not torch.allclose(b, silent)  # the audio weights were loaded, not left at zero


def test_diffusers_names_load_too_and_keep_norms_in_float32(tmp_path):
    torch.manual_seed(1)
    source = random_fill_(build_dit(SMALL_CFG, "cpu"))
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "d.safetensors"))
    loaded = load_dit_file(build_dit(SMALL_CFG, "meta"), tmp_path / "d.safetensors", "test", "cpu", torch.bfloat16)
    assert loaded.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert loaded.blocks[0].norm2.weight.dtype == torch.float32
    assert loaded.scale_shift_table.dtype == torch.float32
    assert torch.equal(loaded.blocks[1].ffn.net[2].weight.float(), source.blocks[1].ffn.net[2].weight.bfloat16().float())
    assert loaded.rope.freqs_cos.device.type == "cpu"


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    source = random_fill_(build_dit(SMALL_CFG, "cpu"))
    path = tmp_path / "bad.safetensors"
    _save_original(source, path, drop=["blocks.1.cross_attn.k_audio.weight"],
                   extra={"blocks.1.cross_attn.q_audio.weight": torch.zeros(32, 32)})
    with pytest.raises(CheckpointError) as err:
        load_dit_file(build_dit(SMALL_CFG, "meta"), path, "test", "cpu", torch.float32)
    msg = str(err.value)
    assert "missing keys: blocks.1.attn2.to_k_audio.weight" in msg
    assert "unexpected keys: blocks.1.cross_attn.q_audio.weight" in msg


def test_a_wrong_shape_and_a_missing_file_are_clear_errors(tmp_path):
    source = random_fill_(build_dit(SMALL_CFG, "cpu"))
    path = tmp_path / "shape.safetensors"
    _save_original(source, path, extra={"audio2token.proj.weight": torch.zeros(32, 13)})
    with pytest.raises(CheckpointError, match=r"shape of audio_proj.proj.weight: file \(32, 13\), model \(32, 12\)"):
        load_dit_file(build_dit(SMALL_CFG, "meta"), path, "test", "cpu", torch.float32)
    with pytest.raises(CheckpointError, match="missing weight file .*nothere.safetensors \\(the thing\\)"):
        load_dit_file(build_dit(SMALL_CFG, "meta"), tmp_path / "nothere.safetensors", "the thing", "cpu",
                      torch.float32)
