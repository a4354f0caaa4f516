"""The tiny profile's video autoencoder: 8x spatial, 4x temporal compression, streaming decode.

Each latent frame stands for 4 video frames. The decoder runs per latent frame with 2D convolutions
and a temporal memory (the previous latent frame's features at each memory block), so a stream is
decoded window by window with no re-decoding; the memory is the only state carried across windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FRAMES_PER_LATENT = 4


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = _conv(ch, ch)
        self.conv2 = _conv(ch, ch)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class MemoryBlock(nn.Module):
    """Mixes the current latent frame's features with the previous one's."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = _conv(2 * ch, ch)
        self.conv2 = _conv(ch, ch)

    def forward(self, x, past):
        return x + self.conv2(F.relu(self.conv1(torch.cat([x, past], dim=1))))


class TinyEncoder(nn.Module):
    def __init__(self, latent_channels: int, widths: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = [_conv(3 * FRAMES_PER_LATENT, widths[0]), nn.ReLU()]
        cin = widths[0]
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, stride=2, padding=1), nn.ReLU(), ResBlock(w)]
            cin = w
        layers.append(_conv(cin, latent_channels))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 4, 3, H, W) in [-1, 1] -> (B, C, H/8, W/8)."""
        return self.net(frames.flatten(1, 2))


class TinyDecoder(nn.Module):
    def __init__(self, latent_channels: int, widths: tuple[int, ...]):
        super().__init__()
        widths = tuple(reversed(widths))
        self.stem = _conv(latent_channels, widths[0])
        self.memory = nn.ModuleList()
        self.stages = nn.ModuleList()
        cin = widths[0]
        for w in widths:
            self.memory.append(MemoryBlock(cin))
            self.stages.append(nn.Sequential(ResBlock(cin), nn.Upsample(scale_factor=2), _conv(cin, w), nn.ReLU()))
            cin = w
        self.head = _conv(cin, 3 * FRAMES_PER_LATENT)

    def forward(self, z: torch.Tensor, memory: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One latent frame (B, C, h, w) + memory -> 4 frames (B, 4, 3, H, W) in [-1, 1], new memory."""
        x = F.relu(self.stem(z))
        new_memory = []
        for i, (mem, stage) in enumerate(zip(self.memory, self.stages)):
            new_memory.append(x)
            x = mem(x, x if memory is None else memory[i])
            x = stage(x)
        frames = torch.tanh(self.head(x))
        return frames.unflatten(1, (FRAMES_PER_LATENT, 3)), new_memory


class TinyCodec(nn.Module):
    """Encoder + streaming decoder; latents are normalised by `latent_scale` for the DiT."""

    frames_per_latent = FRAMES_PER_LATENT
    spatial_factor = 8

    def __init__(self, latent_channels: int = 16, widths: tuple[int, ...] = (32, 64, 96)):
        super().__init__()
        if len(widths) != 3:
            raise ValueError("the tiny codec has three 2x stages (8x spatial)")
        self.latent_channels = latent_channels
        self.encoder = TinyEncoder(latent_channels, tuple(widths))
        self.decoder = TinyDecoder(latent_channels, tuple(widths))
        self.register_buffer("latent_scale", torch.ones(()))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 3, H, W) in [-1, 1] -> normalised latents (B, C, T, h, w)."""
        b, n = frames.shape[:2]
        if n % FRAMES_PER_LATENT:
            raise ValueError(f"frame count {n} is not a multiple of {FRAMES_PER_LATENT}")
        groups = frames.unflatten(1, (n // FRAMES_PER_LATENT, FRAMES_PER_LATENT)).flatten(0, 1)
        z = self.encoder(groups).unflatten(0, (b, -1)).transpose(1, 2)
        return z / self.latent_scale

    def encode_reference(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, C, 1, h, w): the still image as one latent frame."""
        return self.encode(image[:, None].expand(-1, FRAMES_PER_LATENT, -1, -1, -1))

    def start_stream(self, reference_latent: torch.Tensor) -> list[torch.Tensor]:
        """Decoder state for a new stream, primed with the reference so the first frames continue it."""
        _, memory = self.decoder(reference_latent[:, :, 0] * self.latent_scale, None)
        return memory

    def decode(self, latents: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, T, h, w) -> frames (B, 4T, 3, H, W) in [-1, 1], continuing `state`."""
        frames = []
        for i in range(latents.shape[2]):
            out, state = self.decoder(latents[:, :, i] * self.latent_scale, state)
            frames.append(out)
        return torch.cat(frames, dim=1), state
