"""CLIP image tokens of the reference for the 1.3B profiles: ViT-H/14 at 224 px, penultimate layer.

Wan's own `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` is an open_clip checkpoint in
Wan's names; no map to transformers is written here, so the weights come from a Hugging Face-format
`CLIPVisionModel` in `<base>/image_encoder/` (e.g. image_encoder/ of
Wan-AI/Wan2.1-I2V-14B-480P-Diffusers, the same ViT-H/14). A missing directory is a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPVisionModel

from .checkpoints import CheckpointError

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageEncoder:
    """RGB uint8 HxWx3 -> (1, 257, 1280): all tokens of the penultimate transformer layer."""

    def __init__(self, model: CLIPVisionModel):
        self.model = model.eval().requires_grad_(False)

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        # Wan resizes the whole image to 224 x 224 (no crop), bicubic.
        x = F.interpolate(x, size=(CLIP_SIZE, CLIP_SIZE), mode="bicubic", align_corners=False).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        p = next(self.model.parameters())
        pixels = self.preprocess(rgb).to(p.device, p.dtype)
        with torch.inference_mode():
            out = self.model(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[-2].float()


def load_image_encoder(base: Path, device, dtype: torch.dtype) -> ImageEncoder:
    path = Path(base) / "image_encoder"
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"missing {path / 'config.json'}: the CLIP ViT-H/14 image encoder in Hugging Face format "
            f"(CLIPVisionModel, e.g. image_encoder/ of Wan-AI/Wan2.1-I2V-14B-480P-Diffusers); Wan's "
            f"open_clip .pth is not read")
    try:
        model = CLIPVisionModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the CLIP image encoder from {path}: {exc}") from exc
    return ImageEncoder(model.to(device))
