"""Profile config: the schema of a profile's TOML file and its defaults (the reader: profile_reader.py).

Each TOML table becomes a frozen dataclass below; a field's default is the value a profile gets when
its file (and what it `extends`) leaves the key out, and nowhere else holds a default. A loaded
`ProfileConfig` is never changed: an override is a copy (`dataclasses.replace`).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import torch

from .sampler import SCALE_SCHEDULES, SIGMA_SCHEDULES, GuidancePlan

DTYPES = ("float32", "bfloat16", "float16")


class ProfileConfigError(ValueError):
    """A profile file is missing, malformed, or holds a key or value the schema does not take."""


def _one_of(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise ProfileConfigError(f"{key} = {value!r} is not one of {', '.join(choices)}")


@dataclass(frozen=True, kw_only=True)
class DitConfig:
    """[dit]: AudioWanTransformer's arguments. Without `image_dim` and `added_kv_proj_dim` the model has
    no CLIP image branch (the tiny profiles). The phase weights default to the network's own defaults."""

    patch_size: tuple[int, int, int]
    num_attention_heads: int
    attention_head_dim: int
    in_channels: int
    out_channels: int
    text_dim: int
    freq_dim: int
    ffn_dim: int
    num_layers: int
    rope_max_seq_len: int
    text_len: int
    audio_dim: int
    audio_kv_bias: bool
    image_dim: int | None = None
    added_kv_proj_dim: int | None = None
    phase_boundary: float = 0.5
    phase_width: float = 0.1
    audio_weight_early: float = 1.0
    audio_weight_late: float = 1.0
    text_weight_early: float = 1.0
    text_weight_late: float = 1.0

    def kwargs(self) -> dict[str, Any]:
        """AudioWanTransformer(**kwargs)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class AudioConfig:
    """[audio]: the encoder and each latent frame's token window (`behind`/`ahead` its own frames')."""

    encoder: str  # "mel" (tiny) or "wav2vec2" (1.3B)
    behind_tokens: int
    ahead_tokens: int
    tokens_per_frame: int = 2  # both encoders give 2; checked against the encoder when a profile loads
    n_mels: int = 40  # mel only
    left_context_s: float = 2.0  # wav2vec2 only: fixed context each block of tokens is computed with
    right_context_s: float = 0.16
    block_tokens: int = 8
    # "official": a window's audio laid out as EchoMimicV3 lays out a chunk (zero slots after the
    # projection outside its audio, none past its end); "features": every slot holds features
    slots: str = "features"
    face_mask: bool = False  # the DiT's audio output only on the reference's face box (EchoMimicV3)

    def __post_init__(self):
        _one_of(self.encoder, ("mel", "wav2vec2"), "audio.encoder")
        _one_of(self.slots, ("features", "official"), "audio.slots")


@dataclass(frozen=True, kw_only=True)
class CodecConfig:
    """[codec]: the latent autoencoder. `vae` (Wan VAE arguments, random weights only) is for tests."""

    kind: str  # "tiny", "wan-vae" or "portrait" (motion latents rendered by warping the photo)
    latent_channels: int = 16  # tiny and portrait
    widths: tuple[int, ...] = (32, 64, 96)  # tiny only
    # portrait only: ease the mouth shut over this many ms after the session's speech flags end
    # (models/portrait/silence.py); None leaves the mouth to the DiT in silence too
    silence_close_ms: float | None = None
    # portrait only: (k, top): the DiT's jaw opening x > 0 shown as top x (1 + k) / (x + k)
    # (models/portrait/codec.py `shown_jaw`); None shows it as is
    jaw_curve: tuple[float, float] | None = None
    # portrait only: the DiT's head rotation (yaw, pitch, roll) shown at this scale; None: as is
    head_turn_scale: float | None = None
    vae: Mapping[str, Any] | None = None

    def __post_init__(self):
        _one_of(self.kind, ("tiny", "wan-vae", "portrait"), "codec.kind")
        if self.silence_close_ms is not None and (self.kind != "portrait" or not 40 <= self.silence_close_ms <= 1000):
            raise ProfileConfigError("codec.silence_close_ms is for the portrait codec, 40-1000 ms")
        if self.jaw_curve is not None and (self.kind != "portrait" or not 0.05 <= self.jaw_curve[0] <= 10
                                           or not 0.3 <= self.jaw_curve[1] <= 1.5):
            raise ProfileConfigError("codec.jaw_curve is for the portrait codec: [k 0.05-10, top 0.3-1.5]")
        if self.head_turn_scale is not None and (self.kind != "portrait" or not 0 <= self.head_turn_scale <= 1.5):
            raise ProfileConfigError("codec.head_turn_scale is for the portrait codec, 0-1.5")
        if self.vae is not None:
            object.__setattr__(self, "vae", types.MappingProxyType(dict(self.vae)))


@dataclass(frozen=True, kw_only=True)
class TextConfig:
    """[text]: "none" (the model has no text input), "zeros" (zero features of the real shape), "umt5"."""

    encoder: str = "none"
    negative_prompt: str = ""

    def __post_init__(self):
        _one_of(self.encoder, ("none", "zeros", "umt5"), "text.encoder")


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """[image]: "none" (no image branch), "zeros" (zero features of the real shape), "clip"."""

    encoder: str = "none"

    def __post_init__(self):
        _one_of(self.encoder, ("none", "zeros", "clip"), "image.encoder")


@dataclass(frozen=True, kw_only=True)
class WindowConfig:
    """[window]: latents made per window, and clean latents carried over from the window before."""

    new_latents: int
    context_latents: int
    # how the given latents enter the DiT (models.window_input): "clean-tokens" (clean latents at
    # timestep 0 lead the sequence; models trained so) or "inpaint" (Wan-Fun-InP as published: every
    # latent at the row's timestep, the given ones only through the mask and known channels)
    conditioning: str = "clean-tokens"

    def __post_init__(self):
        _one_of(self.conditioning, ("clean-tokens", "inpaint"), "window.conditioning")


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """[sampler]: Euler steps (idle windows: `idle_steps`, default `steps`), sigma shift and schedule
    (models.sampler.flow_sigmas), guidance plan (`guidance` in TOML: a list of {min_sigma,
    <condition> = scale} phases; `guidance_nested` and `guidance_schedule`: see GuidancePlan);
    `noise_scale`: the starting noise's standard deviation (below 1 samples nearer the model's mean)."""

    steps: int
    idle_steps: int | None = None
    shift: float = 1.0
    sigmas: str = "linear"
    guidance: GuidancePlan = GuidancePlan()
    guidance_nested: bool = False
    guidance_schedule: str = "constant"
    noise_scale: float = 1.0

    def __post_init__(self):
        if self.steps < 1:
            raise ProfileConfigError("sampler.steps must be >= 1")
        if not 0 < self.noise_scale <= 1:
            raise ProfileConfigError(f"sampler.noise_scale must be in (0, 1], not {self.noise_scale}")
        if self.idle_steps is None:
            object.__setattr__(self, "idle_steps", self.steps)
        _one_of(self.sigmas, SIGMA_SCHEDULES, "sampler.sigmas")
        _one_of(self.guidance_schedule, SCALE_SCHEDULES, "sampler.guidance_schedule")
        plan = GuidancePlan(self.guidance.phases, self.guidance_nested, self.guidance_schedule)
        object.__setattr__(self, "guidance", plan)


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    """A whole profile file (with what it extends). `name` is the file's stem, not a key."""

    name: str
    resolution: tuple[int, int]
    dit: DitConfig
    audio: AudioConfig
    codec: CodecConfig
    window: WindowConfig
    sampler: SamplerConfig
    text: TextConfig = TextConfig()
    image: ImageConfig = ImageConfig()
    description: str = ""
    random_weights: bool = False
    weights: str | None = None  # tiny: a file in models/weights/ (or a path); 1.3B: the weights directory
    weights_env: str | None = None  # environment variable naming the weights directory
    transformer_file: str = "transformer/diffusion_pytorch_model.safetensors"  # 1.3B: under the weights directory
    dtype: str = "float32"  # weights on CUDA
    cpu_dtype: str = "float32"  # weights on the CPU
    extends: str | None = field(default=None, repr=False)  # the profile this file was merged over

    def __post_init__(self):
        _one_of(self.dtype, DTYPES, "dtype")
        _one_of(self.cpu_dtype, DTYPES, "cpu_dtype")

    def torch_dtype(self, device: torch.device | str) -> torch.dtype:
        """The dtype rule: `dtype` on CUDA, `cpu_dtype` elsewhere (norms stay float32 either way)."""
        return getattr(torch, self.dtype if torch.device(device).type == "cuda" else self.cpu_dtype)
