"""The EchoMimicV3 1.3B profiles' models: DiT, Wan VAE codec, wav2vec2, umT5 text and CLIP image encoders.

Weights directory layout (the official EchoMimicV3 README's `preview/`):

    <root>/Wan2.1-Fun-V1.1-1.3B-InP/    Wan2.1_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/,
                                        image_encoder/ (CLIP ViT-H/14, Hugging Face format)
    <root>/wav2vec2-base-960h/          Hugging Face format
    <root>/transformer/diffusion_pytorch_model.safetensors   EchoMimicV3 preview: the full DiT state
                                        dict, Wan's original names (the profile's `transformer_file`)

With `root=None` (random-weight profiles) every model has the real shapes and random weights, and the
text and image encoders give zeros of the real shapes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import CheckpointError
from .profile_config import ProfileConfig
from .wan_audio import Wav2Vec2Encoder, load_wav2vec2
from .wan_dit import build_dit, load_dit_file, random_fill_
from .wan_vae import WanVaeCodec, load_vae, random_vae

BASE_DIR = "Wan2.1-Fun-V1.1-1.3B-InP"
CLIP_TOKENS = 257


def _audio_encoder(cfg: ProfileConfig, root: Path | None, device) -> Wav2Vec2Encoder:
    a = cfg.audio
    if a.encoder != "wav2vec2":
        raise CheckpointError(f"profile {cfg.name!r}: audio encoder {a.encoder!r} is not supported "
                              f"with the Wan components (wav2vec2 only)")
    return Wav2Vec2Encoder(load_wav2vec2(root, device), a.left_context_s, a.right_context_s, a.block_tokens)


def _zeros(shape: tuple[int, ...]):
    return lambda _input: torch.zeros(shape)


def _text_encoder(cfg: ProfileConfig, base: Path | None):
    if cfg.text.encoder != "umt5" or base is None:
        return _zeros((1, cfg.dit.text_len, cfg.dit.text_dim))
    from .wan_text import load_text_encoder

    return load_text_encoder(base)


def _image_encoder(cfg: ProfileConfig, base: Path | None, device, dtype):
    if cfg.image.encoder != "clip" or base is None:
        return _zeros((1, CLIP_TOKENS, cfg.dit.image_dim))
    from .wan_image import load_image_encoder

    return load_image_encoder(base, device, dtype)


def load_components(cfg: ProfileConfig, root: Path | None, device) -> tuple:
    """(dit, codec, audio_encoder, encode_text, encode_image) for a 1.3B profile."""
    device = torch.device(device)
    dtype = cfg.torch_dtype(device)
    if root is None:
        dit = random_fill_(build_dit(cfg.dit, device))
        codec = WanVaeCodec(random_vae(cfg.codec.vae))
        return (dit, codec, _audio_encoder(cfg, None, device), _text_encoder(cfg, None),
                _image_encoder(cfg, None, device, dtype))

    root = Path(root)
    base = root / BASE_DIR
    if not base.is_dir():
        raise CheckpointError(f"missing directory {base} (alibaba-pai/Wan2.1-Fun-V1.1-1.3B-InP: the Wan VAE, "
                              f"umT5 text encoder and tokenizer, CLIP image encoder)")
    transformer = root / cfg.transformer_file
    dit = load_dit_file(build_dit(cfg.dit, "meta"), transformer,
                        "the EchoMimicV3 DiT: a full state dict, Wan's original or diffusers' names", device, dtype)
    codec = WanVaeCodec(load_vae(base, device, dtype))
    return (dit, codec, _audio_encoder(cfg, root, device), _text_encoder(cfg, base),
            _image_encoder(cfg, base, device, dtype))
