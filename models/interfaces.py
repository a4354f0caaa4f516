"""What the engine needs of a codec and of an audio encoder, written once. A profile's parts are typed
against these (`avatar.profiles.Profile`); `TinyCodec`/`WanVaeCodec` and `MelEncoder`/`Wav2Vec2Encoder`
implement them, and tests check that their signatures match."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Codec(Protocol):
    """A latent video autoencoder that decodes a stream window by window, each frame exactly once.

    Latents are normalised (unit scale), (B, C, T, h, w) with C = `latent_channels`, h = H /
    `spatial_factor`; each latent frame decodes to `frames_per_latent` video frames. The decoder's
    state belongs to one stream (the codec itself is shared by every session of a profile), and
    `decode` never changes the state it is given.
    """

    frames_per_latent: int
    spatial_factor: int
    latent_channels: int

    def encode_reference(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, C, 1, h, w): the reference image as one latent frame."""
        ...

    def start_stream(self, reference_latent: torch.Tensor, reference_image: torch.Tensor) -> Any:
        """The decoder state of a new stream that continues the reference. Both forms of the reference
        are given; a codec may use only the latent (the Wan VAE) or also the pixels (the tiny codec)."""
        ...

    def decode(self, latents: torch.Tensor, state: Any, audio: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(B, C, T, h, w) + the state -> frames (B, T * frames_per_latent, 3, H, W) in [-1, 1] and the
        next state. `audio` is the latents' audio tokens (B, T, K, D), always given: conditioning a
        codec may use (the tiny decoder draws the mouth from it) or ignore (the Wan VAE)."""
        ...


@runtime_checkable
class PhotoCodec(Codec, Protocol):
    """A codec that moves the pixels of the user's whole photo (the portrait profile's). A session fits
    it once per avatar on the photo as given (not the reference tensor), and the fit is the decoder
    state its streams start from; `paste` asks for frames of the whole photo instead of the face crop."""

    def fit_photo(self, photo: np.ndarray, paste: bool = False) -> tuple[Any, list[str]]:
        """HxW, HxWx3 or HxWx4 uint8 -> (the decoder state of this photo's streams, notes on the
        fallbacks taken, e.g. an RGBA photo composited over white). A photo it cannot use raises a
        ValueError whose `reason` names why (no face, a profile view, ...)."""
        ...

    def decode_images(self, latents: torch.Tensor, state: Any,
                      speech: np.ndarray | None = None) -> tuple[list[np.ndarray], Any]:
        """`decode`'s frames as HxWx3 uint8 RGB, without the round trip through [-1, 1], and the
        stream's next decoder state. `speech`: the session's speech flag per frame from the first
        (with its look-ahead), which the codec may use to close the mouth in silence."""
        ...


@runtime_checkable
class AudioEncoder(Protocol):
    """16 kHz mono -> `tokens_per_frame` tokens of `feature_dim` per video frame (640 samples).

    Tokens [j0, j1) are computed from samples `token_span(j0, j1)` only (silence outside the audio),
    so encoding in pieces gives the same tokens as encoding at once; `lookahead_samples` is how far
    the span of a frame's last token reaches past the frame.
    """

    tokens_per_frame: int
    feature_dim: int
    lookahead_samples: int

    def token_span(self, j0: int, j1: int) -> tuple[int, int]:
        """Samples [s0, s1) tokens [j0, j1) are computed from."""
        ...

    def encode(self, samples: np.ndarray | torch.Tensor, n_tokens: int) -> torch.Tensor:
        """The samples of `token_span(j0, j0 + n_tokens)` -> (n_tokens, feature_dim) tokens."""
        ...
