"""The Wan2.1 causal VAE as a streaming codec (diffusers' AutoencoderKLWan underneath).

A `models.interfaces.Codec`: normalised latents in and out, 4 frames per latent after the first.
The decoder is causal with a per-conv feature cache (2 frames). diffusers' public `decode()` clears
that cache on every call, so decoding runs the decoder loop here, with the cache kept in a
per-stream `VaeStream` state instead of on the (shared) module: sessions sharing one profile never
mix caches. The reference image is the causal first frame: it encodes to one latent, and
`start_stream` decodes it once (its single frame is discarded) so that every later latent decodes
to exactly 4 frames continuing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from torch import nn

from .checkpoints import CheckpointError, load_exact


@dataclass
class VaeStream:
    """Decoder state of one stream: the causal feature cache, one slot per causal conv."""

    feat_map: list


class WanVaeCodec(nn.Module):
    frames_per_latent = 4
    spatial_factor = 8

    def __init__(self, vae: AutoencoderKLWan):
        super().__init__()
        if vae.config.patch_size is not None:
            raise ValueError("patchified (Wan2.2) VAEs are not supported")
        self.vae = vae
        self.latent_channels = vae.config.z_dim
        z = vae.config.z_dim
        self.register_buffer("latents_mean", torch.tensor(vae.config.latents_mean[:z]).view(1, z, 1, 1, 1))
        self.register_buffer("latents_std", torch.tensor(vae.config.latents_std[:z]).view(1, z, 1, 1, 1))
        self._decoder_convs = vae._cached_conv_counts["decoder"]
        self._encoder_convs = vae._cached_conv_counts["encoder"]

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latents_std.to(z) + self.latents_mean.to(z)

    def encode_reference(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, C, 1, h, w): the image as the causal first frame (posterior mean)."""
        cache = [None] * self._encoder_convs  # local: encoding touches no shared state either
        out = self.vae.encoder(image[:, :, None], feat_cache=cache, feat_idx=[0])
        mean = self.vae.quant_conv(out)[:, : self.latent_channels]
        return self.normalise(mean)

    def grey_latents(self, image: torch.Tensor, count: int) -> torch.Tensor:
        """(B, C, count, h, w): `count` latents of mid-grey frames (0 in [-1, 1]) following the image
        (B, 3, H, W) as the causal first frame; the official inpainting pipeline encodes the frames to
        generate so (masked_video = video * (mask < 0.5), posterior mean)."""
        cache = [None] * self._encoder_convs
        self.vae.encoder(image[:, :, None], feat_cache=cache, feat_idx=[0])
        grey = torch.zeros_like(image)[:, :, None].expand(-1, -1, self.frames_per_latent, -1, -1)
        out = torch.cat([self.vae.encoder(grey, feat_cache=cache, feat_idx=[0]) for _ in range(count)], dim=2)
        return self.normalise(self.vae.quant_conv(out)[:, : self.latent_channels])

    def start_stream(self, reference_latent: torch.Tensor, reference_image: torch.Tensor | None = None) -> VaeStream:
        """A stream primed with the reference latent as its first chunk (that 1-frame output is dropped).
        The Wan decoder uses only the latent (the contract lets a codec leave the pixels unused)."""
        state = VaeStream([None] * self._decoder_convs)
        x = self.vae.post_quant_conv(self.denormalise(reference_latent[:, :, :1]))
        self.vae.decoder(x, feat_cache=state.feat_map, feat_idx=[0], first_chunk=True)
        return state

    def decode(self, latents: torch.Tensor, state: VaeStream, audio: torch.Tensor | None = None) -> tuple[torch.Tensor, VaeStream]:
        """(B, C, T, h, w) normalised -> frames (B, 4T, 3, H, W) in [-1, 1], continuing `state`. The Wan
        decoder hears no audio (the contract makes the audio tokens conditioning a codec may ignore)."""
        state = VaeStream(list(state.feat_map))  # the caller's state object is left as it was
        x = self.vae.post_quant_conv(self.denormalise(latents))
        chunks = []
        for i in range(x.shape[2]):
            out = self.vae.decoder(x[:, :, i:i + 1], feat_cache=state.feat_map, feat_idx=[0])
            chunks.append(out)
        frames = torch.cat(chunks, dim=2).clamp(-1.0, 1.0)  # (B, 3, 4T, H, W)
        return frames.transpose(1, 2), state


VAE_FILE = "Wan2.1_VAE.pth"


def load_vae(base: Path, device, dtype: torch.dtype) -> AutoencoderKLWan:
    """The Wan2.1 VAE from `<base>/vae/` (diffusers format) or `<base>/Wan2.1_VAE.pth` (Wan's names)."""
    base = Path(base)
    if (base / "vae" / "config.json").is_file():
        return AutoencoderKLWan.from_pretrained(base / "vae", torch_dtype=dtype).to(device)
    path = base / VAE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"missing weight file {path} (the Wan2.1 VAE from Wan2.1-Fun-V1.1-1.3B-InP; "
            f"or put a diffusers-format VAE in {base / 'vae'})")
    try:
        original = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {path} (the Wan2.1 VAE): {exc}") from exc
    state = convert_wan_vae_to_diffusers(original)
    with torch.device("meta"):
        vae = AutoencoderKLWan()
    load_exact(vae, {k: v.to(device=device, dtype=dtype) for k, v in state.items()}, f"{path} (the Wan2.1 VAE)",
               assign=True)
    return vae


def random_vae(config: dict | None = None) -> AutoencoderKLWan:
    """A random Wan VAE (default: the real Wan2.1 shapes) for random-weight profiles and tests."""
    return AutoencoderKLWan(**(config or {}))
