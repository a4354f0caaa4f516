"""Profile config: the schema of a profile's TOML file, its defaults, and the one reader.

Each TOML table becomes a frozen dataclass below; a field's default is the value a profile gets when
its file (and what it `extends`) leaves the key out, and nowhere else holds a default. The reader
refuses unknown keys and wrongly typed values with the file and the key, merges a file over the one
it `extends` (tables merged key by key, other values replaced), and returns a `ProfileConfig` that
nothing changes afterwards: an override is a copy (`dataclasses.replace`). The files live beside the
engine that loads them (avatar/profiles/); training reads the same files through `read_profile`.
"""

from __future__ import annotations

import collections.abc
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .sampler import (GUIDANCE_CONDITIONS, SCALE_SCHEDULES, SIGMA_SCHEDULES, GuidancePhase, GuidancePlan,
                      GuidanceTerm)

PROFILE_DIR = Path(__file__).resolve().parent.parent / "avatar" / "profiles"
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

    kind: str  # "tiny" or "wan-vae"
    latent_channels: int = 16  # tiny only
    widths: tuple[int, ...] = (32, 64, 96)  # tiny only
    vae: Mapping[str, Any] | None = None

    def __post_init__(self):
        _one_of(self.kind, ("tiny", "wan-vae"), "codec.kind")
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
    <condition> = scale} phases; `guidance_nested` and `guidance_schedule`: see GuidancePlan)."""

    steps: int
    idle_steps: int | None = None
    shift: float = 1.0
    sigmas: str = "linear"
    guidance: GuidancePlan = GuidancePlan()
    guidance_nested: bool = False
    guidance_schedule: str = "constant"

    def __post_init__(self):
        if self.steps < 1:
            raise ProfileConfigError("sampler.steps must be >= 1")
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


# ---- the reader ------------------------------------------------------------------------------------
def profile_names(directory: Path = PROFILE_DIR) -> list[str]:
    return sorted(p.stem for p in Path(directory).glob("*.toml"))


def read_profile(name: str, directory: Path = PROFILE_DIR) -> ProfileConfig:
    """The profile `name` (`<directory>/<name>.toml` merged over what it extends), checked and typed."""
    path = Path(directory) / f"{name}.toml"
    if not path.is_file():
        raise ProfileConfigError(f"unknown profile {name!r}; known profiles: {', '.join(profile_names(directory))}")
    return _build(ProfileConfig, {**_read_merged(path, ()), "name": name}, "", str(path))


def _read_merged(path: Path, chain: tuple[Path, ...]) -> dict:
    if path in chain:
        raise ProfileConfigError(f"{path}: `extends` loops back to itself ({' -> '.join(p.stem for p in chain)})")
    try:
        table = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileConfigError(f"profile file {path} is malformed: {exc}") from exc
    table = _normalise(table, ProfileConfig, "", str(path))
    base = table.get("extends")
    if base is None:
        return table
    base_path = path.parent / f"{base}.toml"
    if not base_path.is_file():
        raise ProfileConfigError(f"{path}: extends unknown profile {base!r}")
    return _merge(_read_merged(base_path, chain + (path,)), table)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _schema(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if f.name != "name"}


def _normalise(value: Any, hint: Any, key: str, source: str) -> Any:
    """`value` checked against `hint` and converted (lists to tuples, ints to floats); a dataclass's
    table stays a dict (files are merged before they are built). `key` is the dotted key so far."""
    def wrong(expected: str) -> ProfileConfigError:
        return ProfileConfigError(f"{source}: {key} must be {expected}, not {value!r}")

    if hint is GuidancePlan:
        return _guidance(value, key, source)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise wrong("a table")
        schema = _schema(hint)
        out = {}
        for k, v in value.items():
            where = f"{key}.{k}" if key else k
            if k not in schema:
                raise ProfileConfigError(f"{source}: unknown key {where!r}; "
                                         f"{'[' + key + ']' if key else 'the top level'} takes: {', '.join(schema)}")
            out[k] = _normalise(v, schema[k], where, source)
        return out
    args = typing.get_args(hint)
    if type(None) in args:  # X | None: TOML has no null, so a given value is an X
        return _normalise(value, next(a for a in args if a is not type(None)), key, source)
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise wrong("true or false" if hint is bool else "a string")
        return value
    if hint in (int, float):
        number = isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
        if not number:
            raise wrong("an integer" if hint is int else "a number")
        return hint(value)
    if typing.get_origin(hint) is tuple:
        fixed = Ellipsis not in args
        if not isinstance(value, list) or (fixed and len(value) != len(args)):
            raise wrong(f"a list of {len(args)}" if fixed else "a list")
        return tuple(_normalise(v, args[i] if fixed else args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
    if typing.get_origin(hint) is collections.abc.Mapping:
        if not isinstance(value, dict):
            raise wrong("a table")
        return value
    raise TypeError(f"no rule for {hint!r}")  # a schema field of a type the reader does not know


def _guidance(phases: Any, key: str, source: str) -> GuidancePlan:
    """[{min_sigma = 0.6, audio = 2.5, negative = 1.5}, {min_sigma = 0.0}] -> a GuidancePlan."""
    allowed = ("min_sigma",) + tuple(GUIDANCE_CONDITIONS)
    if not isinstance(phases, list) or not all(isinstance(p, dict) for p in phases):
        raise ProfileConfigError(f"{source}: {key} must be a list of tables, not {phases!r}")
    out = []
    for i, phase in enumerate(phases):
        values = {}
        for k, v in phase.items():
            if k not in allowed:
                raise ProfileConfigError(f"{source}: unknown key '{key}[{i}].{k}'; a phase takes: {', '.join(allowed)}")
            values[k] = _normalise(v, float, f"{key}[{i}].{k}", source)
        if "min_sigma" not in values:
            raise ProfileConfigError(f"{source}: missing key '{key}[{i}].min_sigma'")
        min_sigma = values.pop("min_sigma")
        out.append(GuidancePhase(min_sigma, tuple(GuidanceTerm(k, v) for k, v in values.items())))
    return GuidancePlan(tuple(out))


def _build(cls, table: dict, key: str, source: str):
    """Instantiate `cls` from a normalised table; a missing required key is an error naming it."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        where = f"{key}.{f.name}" if key else f.name
        if f.name in table:
            value = table[f.name]
            table_of_a_section = isinstance(value, dict) and is_dataclass(hints[f.name])
            kwargs[f.name] = _build(hints[f.name], value, where, source) if table_of_a_section else value
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ProfileConfigError(f"{source}: missing key {where!r} (in the file or the profile it extends)")
    try:
        return cls(**kwargs)
    except ProfileConfigError as exc:
        raise ProfileConfigError(f"{source}: {exc}") from None
