"""The 1.3B audio DiT for the EchoMimicV3 profiles: build it, and load the published weights.

The published state dicts (Wan2.1-Fun base, EchoMimicV3 preview transformer) use Wan's original
key names (`blocks.N.self_attn.q`, `blocks.N.cross_attn.k_img`, `audio2token.proj`, ...). `ORIGINAL_TO_OURS`
maps them onto `AudioWanTransformer`'s (diffusers) names; the map follows diffusers'
`convert_wan_transformer_to_diffusers`, with one explicit entry per module instead of substring
rewrites, plus EchoMimicV3's audio keys. Note the swap: Wan's `norm3` (affine, before cross-attention)
is diffusers' `norm2`, and Wan's parameter-free `norm2` (before the FFN) has no weights at all.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
from safetensors import safe_open

from .checkpoints import CheckpointError, check_fit, kept_dtype
from .dit import AudioWanTransformer
from .profile_config import DitConfig

# Module paths outside the blocks: original -> ours. Leaves (weight/bias) carry over unchanged.
TOP_LEVEL = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "head.head": "proj_out",
    "audio2token.proj": "audio_proj.proj",
    "audio2token.norm": "audio_proj.norm",
}
# Whole parameters (no leaf) outside the blocks.
TOP_LEVEL_PARAMS = {"head.modulation": "scale_shift_table"}

# Module paths inside `blocks.N.`.
IN_BLOCK = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "cross_attn.k_audio": "attn2.to_k_audio",
    "cross_attn.v_audio": "attn2.to_v_audio",
    "cross_attn.norm_k_audio": "attn2.norm_k_audio",
    "norm3": "norm2",  # the swap: Wan's affine pre-cross-attention norm
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
IN_BLOCK_PARAMS = {"modulation": "scale_shift_table"}

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")

# Keys a published file may carry that the official EchoMimicV3 model does not use either: its
# WanTransformerAudioMask3DModel (src/wan_transformer3d_audio.py) builds `ref_conv` only with
# add_ref_conv and `control_adapter` only with add_control_adapter, both off in the preview's base
# config, and infer_preview.py loads with strict=False, so such tensors are dropped there too.
KNOWN_UNUSED = ("ref_conv.", "control_adapter.")

log = logging.getLogger(__name__)


def _rename(key: str, modules: dict[str, str], params: dict[str, str]) -> str | None:
    if key in params:
        return params[key]
    module, _, leaf = key.rpartition(".")
    if module in modules:
        return f"{modules[module]}.{leaf}"
    return None


def _invert(table: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


def original_to_ours(key: str) -> str | None:
    """Our name for an original Wan / EchoMimicV3 key, or None if the key is not known."""
    m = _BLOCK.match(key)
    if m:
        inner = _rename(m.group(2), IN_BLOCK, IN_BLOCK_PARAMS)
        return None if inner is None else f"blocks.{m.group(1)}.{inner}"
    return _rename(key, TOP_LEVEL, TOP_LEVEL_PARAMS)


def ours_to_original(key: str) -> str | None:
    """The inverse of `original_to_ours` (used to write files in the original layout, and by tests)."""
    m = _BLOCK.match(key)
    if m:
        inner = _rename(m.group(2), _invert(IN_BLOCK), _invert(IN_BLOCK_PARAMS))
        return None if inner is None else f"blocks.{m.group(1)}.{inner}"
    return _rename(key, _invert(TOP_LEVEL), _invert(TOP_LEVEL_PARAMS))


def _in_diffusers_names(keys) -> bool:
    return any(k.startswith("condition_embedder.") for k in keys)


def target_names(keys) -> dict[str, str]:
    """file key -> model key; keys in diffusers' names pass through, unknown keys keep their name."""
    keys = list(keys)
    if _in_diffusers_names(keys):
        return {k: k for k in keys}
    return {k: original_to_ours(k) or k for k in keys}


def build_dit(config: DitConfig, device: torch.device | str = "meta") -> AudioWanTransformer:
    with torch.device("meta"):
        dit = AudioWanTransformer(**config.kwargs())
    if str(device) != "meta":
        dit = dit.to_empty(device=device)
        _rebuild_rope(dit, device)
    return dit


def _rebuild_rope(dit: AudioWanTransformer, device) -> None:
    """RoPE tables are non-persistent buffers: compute them for real after a meta-device build."""
    c = dit.config
    with torch.device(device):
        dit.rope = WanRotaryPosEmbed(c.attention_head_dim, tuple(c.patch_size), c.rope_max_seq_len)


def random_fill_(dit: AudioWanTransformer, std: float = 0.02) -> AudioWanTransformer:
    """Cheap random init for random-weight profiles: uniform weights of standard deviation `std`
    (uniform_ is about twice as fast as normal_ on a 1.3B model), zero biases, unit norms."""
    bound = std * 3 ** 0.5
    dim = dit.config.num_attention_heads * dit.config.attention_head_dim
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if name.endswith("scale_shift_table"):
                p.uniform_(-(3 / dim) ** 0.5, (3 / dim) ** 0.5)
            elif name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:  # norm gains
                p.fill_(1.0)
            else:
                p.uniform_(-bound, bound)
    return dit


def load_dit_file(dit: AudioWanTransformer, path: Path, what: str, device, dtype: torch.dtype) -> AudioWanTransformer:
    """Load a safetensors state dict (original or diffusers names) into a meta-built DiT, exactly.

    Every model key must be in the file with its shape. A file key the model does not have is an
    error naming it, unless it is one the official model skips too (`KNOWN_UNUSED`): those are listed
    in a warning and skipped.

    Tensors are read one at a time from the memory-mapped file straight to their target device and
    dtype, and assigned (no second copy of the model in memory).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing weight file {path} ({what})")
    own = {k: v.shape for k, v in dit.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            unused = sorted(k for k in f.keys() if k.startswith(KNOWN_UNUSED) and k not in own)
            keys = [k for k in f.keys() if k not in unused]
            if unused:
                log.warning("%s: %d tensors the official model does not use either are skipped: %s",
                            path, len(unused), ", ".join(unused))
            names = target_names(keys)
            shapes = {names[k]: torch.Size(f.get_slice(k).get_shape()) for k in keys}
            check_fit(own, shapes, str(path))
            state = {names[k]: f.get_tensor(k).to(kept_dtype(dit, names[k], dtype)) for k in keys}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises several types for a corrupt file
        raise CheckpointError(f"cannot read {path} ({what}): {exc}") from exc
    dit.load_state_dict(state, strict=True, assign=True)
    _rebuild_rope(dit, device)
    return dit
