"""The tiny profile's video autoencoder: 8x spatial, 4x temporal compression, streaming decode.

Each latent frame stands for 4 video frames. The decoder runs per latent frame with 2D convolutions
and a temporal memory (the previous latent frame's features at each memory block), so a stream is
decoded window by window with no re-decoding; its 4 frames are drawn one after the other, each from
the one before (the first from the last frame shown), hearing the latent's audio tokens. It is
anchored on the reference image: features of the reference pixels enter every scale, so fine identity
detail (eyes, hair, texture) comes from the reference and the latents need only carry what moves
(mouth, blinks, head motion). That detail cannot drift over a long stream, and a 16-channel latent at
1/8 scale stays sharp.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .audio_features import MelEncoder, latent_token_window
from .profile_config import ProfileConfig

FRAMES_PER_LATENT = 4


class DecoderState(NamedTuple):
    reference: list[torch.Tensor]  # reference-image features, finest first; fixed for the stream
    memory: list[torch.Tensor]  # the previous latent frame's features at each memory block
    last_frame: torch.Tensor  # (B, 3, H, W) in [-1, 1]: the frame shown last, which the next continues


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
    """Mixes the current latent frame's features with the previous one's and the reference's."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = _conv(3 * ch, ch)
        self.conv2 = _conv(ch, ch)

    def forward(self, x, past, reference):
        return x + self.conv2(F.relu(self.conv1(torch.cat([x, past, reference], dim=1))))


class ReferenceEncoder(nn.Module):
    """Reference image -> features at every decoder scale, finest first."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        self.levels = nn.ModuleList()
        cin = 3
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            self.levels.append(nn.Sequential(nn.Conv2d(cin, w, 3, stride=stride, padding=1), nn.ReLU(), ResBlock(w)))
            cin = w

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features, x = [], image
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


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
    def __init__(self, latent_channels: int, widths: tuple[int, ...], audio_features: int):
        super().__init__()
        coarse_first = tuple(reversed(widths))
        self.stem = _conv(latent_channels, coarse_first[0])
        self.memory = nn.ModuleList()
        self.stages = nn.ModuleList()
        cin = coarse_first[0]
        for w in coarse_first:
            self.memory.append(MemoryBlock(cin))
            self.stages.append(nn.Sequential(ResBlock(cin), nn.Upsample(scale_factor=2), _conv(cin, w), nn.ReLU()))
            cin = w
        # reference features for the memory blocks (at 1/8 .. 1/2 scale) and the full-scale fusion
        self.reference = ReferenceEncoder(tuple(widths) + (widths[-1],))
        self.fuse = nn.Sequential(_conv(2 * cin, cin), nn.ReLU(), _conv(cin, cin), nn.ReLU())
        # lets a latent's first frame continue the last frame shown (why: TINY_MODEL_CARD.md, Decoder)
        self.continuation = nn.Sequential(_conv(cin + 3, cin), nn.ReLU(), _conv(cin, cin))
        self.head = _conv(cin, 3 * FRAMES_PER_LATENT)
        # The chain draws a latent's 4 frames one after the other, each refined from the one before,
        # knowing its place and hearing the latent's audio tokens (why: TINY_MODEL_CARD.md, Decoder).
        self.frame_position = nn.Parameter(torch.zeros(FRAMES_PER_LATENT, cin, 1, 1))
        self.hearing = nn.Sequential(nn.Linear(audio_features, 4 * cin), nn.ReLU(),
                                     nn.Linear(4 * cin, FRAMES_PER_LATENT * cin))
        self.chain = nn.Sequential(_conv(cin + 6, cin), nn.ReLU(), _conv(cin, 3))
        for zero_start in (self.continuation[-1], self.chain[-1]):  # both paths start as no-ops
            nn.init.zeros_(zero_start.weight)
            nn.init.zeros_(zero_start.bias)

    def upsample(self, z: torch.Tensor, memory: list[torch.Tensor] | None,
                 reference: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One latent frame (B, C, h, w) + memory + reference features -> full-scale features and the
        new memory (all a stream's start needs of its reference latent)."""
        x = F.relu(self.stem(z))
        new_memory = []
        coarse_ref = reference[::-1]
        for i, (mem, stage) in enumerate(zip(self.memory, self.stages)):
            new_memory.append(x)
            x = mem(x, x if memory is None else memory[i], coarse_ref[i])
            x = stage(x)
        return x, new_memory

    def forward(self, z: torch.Tensor, memory: list[torch.Tensor] | None, reference: list[torch.Tensor],
                last_frame: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One latent frame (B, C, h, w) + memory + reference features + the last frame shown + its
        audio tokens (B, K, D) -> 4 frames (B, 4, 3, H, W) in [-1, 1] and the new memory."""
        x, new_memory = self.upsample(z, memory, reference)
        x = x + self.fuse(torch.cat([x, reference[0]], dim=1))
        # Every full-scale tensor that enters a concatenation is dense channels-last: one that is not
        # (a frame sliced out of a stack, a tanh of such a slice) makes the concatenation fall back to
        # NCHW, which the next convolution then copies back (a quarter of the decoder's time). Same values.
        previous = last_frame.to(x.dtype).contiguous(memory_format=torch.channels_last)
        x = x + self.continuation(torch.cat([x, previous], dim=1))
        base = _frames_apart(self.head(x))
        squashed = torch.tanh(base)
        heard = self.hearing(audio.flatten(1).to(x.dtype)).unflatten(1, (FRAMES_PER_LATENT, -1))[..., None, None]
        frames = []
        for j in range(FRAMES_PER_LATENT):
            position = self.frame_position[j] + heard[:, j]
            step = self.chain(torch.cat([x + position, previous, squashed[j]], dim=1))
            previous = torch.tanh(base[j] + step)
            frames.append(previous)
        return torch.stack(frames, dim=1), new_memory


def _frames_apart(heads: torch.Tensor) -> torch.Tensor:
    """(B, 4 * 3, H, W) channels-last -> (4, B, 3, H, W), each frame dense channels-last."""
    b, _, h, w = heads.shape
    pixels = heads.permute(0, 2, 3, 1).reshape(b, h, w, FRAMES_PER_LATENT, 3)
    return pixels.permute(3, 0, 1, 2, 4).contiguous().permute(0, 1, 4, 2, 3)


class TinyCodec(nn.Module):
    """Encoder + streaming decoder (a `models.interfaces.Codec`). The encoder's output is divided by `latent_scale` (its spread over the
    training data), so the DiT and the decoder both work on latents of unit scale."""

    frames_per_latent = FRAMES_PER_LATENT
    spatial_factor = 8

    def __init__(self, latent_channels: int = 16, widths: tuple[int, ...] = (32, 64, 96),
                 audio_tokens: tuple[int, int] = (16, 40)):
        super().__init__()
        if len(widths) != 3:
            raise ValueError("the tiny codec has three 2x stages (8x spatial)")
        self.latent_channels = latent_channels
        self.encoder = TinyEncoder(latent_channels, tuple(widths))
        # the decoder hears the (K, D) audio tokens of each latent frame, as the DiT gets them
        self.decoder = TinyDecoder(latent_channels, tuple(widths), audio_tokens[0] * audio_tokens[1])
        self.register_buffer("latent_scale", torch.ones(()))

    @classmethod
    def from_config(cls, cfg: ProfileConfig) -> "TinyCodec":
        """From a profile's config ([codec], and [audio] for the tokens the decoder hears),
        channels-last (oneDNN's fast convolution layout on CPU)."""
        audio = cfg.audio
        j0, j1 = latent_token_window(0, FRAMES_PER_LATENT, MelEncoder.tokens_per_frame, audio.behind_tokens,
                                     audio.ahead_tokens)
        codec = cls(cfg.codec.latent_channels, cfg.codec.widths, (j1 - j0, audio.n_mels))
        return codec.to(memory_format=torch.channels_last)

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

    def start_stream(self, reference_latent: torch.Tensor, reference_image: torch.Tensor) -> DecoderState:
        """Decoder state for a new stream: the reference image's features, and the memory primed with
        the reference latent so the first frames continue it. `reference_image` is (B, 3, H, W) in [-1, 1]."""
        features = self.decoder.reference(reference_image)
        _, memory = self.decoder.upsample(reference_latent[:, :, 0], None, features)
        return DecoderState(features, memory, reference_image)

    def decode(self, latents: torch.Tensor, state: DecoderState, audio: torch.Tensor) -> tuple[torch.Tensor, DecoderState]:
        """(B, C, T, h, w) + their audio tokens (B, T, K, D) -> frames (B, 4T, 3, H, W) in [-1, 1],
        continuing `state`."""
        frames, memory, last = [], state.memory, state.last_frame
        for i in range(latents.shape[2]):
            out, memory = self.decoder(latents[:, :, i], memory, state.reference, last, audio[:, i])
            frames.append(out)
            last = out[:, -1]
        return torch.cat(frames, dim=1), DecoderState(state.reference, memory, last)
