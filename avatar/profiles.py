"""Profiles: one code path, several model sizes, chosen by name. Each is a small TOML file here."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch

from models.audio_features import FPS, SAMPLE_RATE, MelEncoder, lookahead_seconds
from models.checkpoints import CheckpointError, cast_keeping_fp32, load_exact, read_tensors, split_prefix
from models.dit import AudioWanTransformer
from models.interfaces import AudioEncoder, Codec, PhotoCodec
from models.profile_config import ProfileConfig, ProfileConfigError
from models.profile_reader import profile_names, read_profile
from models.sampler import GuidancePlan
from models.tiny_codec import TinyCodec

from .errors import ProfileError, WeightsError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "models" / "weights"


def read_profile_config(name: str) -> ProfileConfig:
    """The typed config of profile `name` (models.profile_reader), as a ProfileError if bad."""
    try:
        return read_profile(name)
    except ProfileConfigError as exc:
        raise ProfileError(str(exc)) from exc


@dataclass(frozen=True)
class Profile:
    """A loaded model set, shared by every session that uses it. Nothing changes it after loading; an
    override is a copy (`dataclasses.replace(profile, config=...)`) that shares the models."""

    config: ProfileConfig
    device: torch.device
    dtype: torch.dtype
    dit: AudioWanTransformer
    codec: Codec
    audio_encoder: AudioEncoder
    encode_text: Callable[[str], torch.Tensor]  # prompt -> (1, L, text_dim)
    encode_image: Callable[[np.ndarray], torch.Tensor | None]  # reference RGB -> (1, N, image_dim) or None
    notes: tuple[str, ...] = ()
    fps: ClassVar[int] = FPS
    sample_rate: ClassVar[int] = SAMPLE_RATE

    # Read-only views of the config the session and the layers above use.
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def random_weights(self) -> bool:
        return self.config.random_weights

    @property
    def resolution(self) -> tuple[int, int]:
        return self.config.resolution

    @cached_property  # a runtime Protocol check walks the protocol's members each time: asked per latent frame
    def animates_photo(self) -> bool:
        """The codec moves the user's whole photo (portrait): it needs a real face, and can paste back."""
        return isinstance(self.codec, PhotoCodec)

    @property
    def new_latents(self) -> int:
        return self.config.window.new_latents

    @property
    def context_latents(self) -> int:
        return self.config.window.context_latents

    @property
    def frames_per_window(self) -> int:
        return self.new_latents * self.codec.frames_per_latent

    @property
    def audio_window(self) -> tuple[int, int]:
        return self.config.audio.behind_tokens, self.config.audio.ahead_tokens

    @property
    def conditioning(self) -> str:
        """How the given latents enter the DiT: "clean-tokens" or "inpaint" (models.window_input)."""
        return self.config.window.conditioning

    def with_conditioning(self, mode: str | None) -> "Profile":
        """This profile with another conditioning (None: as it is); the models are shared."""
        if mode is None:
            return self
        return replace(self, config=replace(self.config, window=replace(self.config.window, conditioning=mode)))

    @property
    def official_audio_slots(self) -> bool:
        """Audio laid out as EchoMimicV3 lays out a chunk (zero slots after the projection outside the
        window's audio, none past its end); otherwise every slot holds features, silence outside."""
        return self.config.audio.slots == "official"

    @property
    def face_mask(self) -> bool:
        """The DiT's audio output counts only inside the reference's face box (EchoMimicV3's ip_mask)."""
        return self.config.audio.face_mask

    @property
    def ahead_needed(self) -> int:
        """Audio tokens past a window's last frame that the window reads (none with official slots)."""
        return 0 if self.official_audio_slots else self.audio_window[1]

    @property
    def lookahead_s(self) -> float:
        return lookahead_seconds(self.audio_encoder, self.ahead_needed)

    @property
    def steps(self) -> int:
        return self.config.sampler.steps

    @property
    def idle_steps(self) -> int:
        return self.config.sampler.idle_steps

    @property
    def shift(self) -> float:
        return self.config.sampler.shift

    @property
    def noise_scale(self) -> float:
        return self.config.sampler.noise_scale

    @property
    def sigma_schedule(self) -> str:
        return self.config.sampler.sigmas

    @property
    def guidance(self) -> GuidancePlan:
        return self.config.sampler.guidance

    @property
    def negative_prompt(self) -> str:
        return self.config.text.negative_prompt


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProfileError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def _weights_dir(cfg: ProfileConfig) -> Path:
    env = cfg.weights_env
    chosen = cfg.weights or (os.environ.get(env) if env else None)
    if not chosen:
        raise WeightsError(
            f"profile {cfg.name!r} needs its weights directory: pass --weights DIR"
            + (f" or set {env}" if env else "") + " (the layout is in README.md)")
    path = Path(chosen)
    if not path.is_dir():
        raise WeightsError(f"weights directory not found: {path}")
    return path


def _load_small(codec_class, cfg: ProfileConfig, device: torch.device) -> tuple:
    """The project's own small profiles (tiny, portrait): DiT + codec from one weight file, mel audio."""
    dit = AudioWanTransformer(**cfg.dit.kwargs())
    codec = codec_class.from_config(cfg)
    if not cfg.random_weights:
        if cfg.weights is None:
            raise ProfileError(f"profile {cfg.name!r} has trained weights but names no `weights` file")
        path = WEIGHTS_DIR / cfg.weights  # a relative name is a file in models/weights/
        try:
            state = read_tensors(path, f"the {cfg.name} profile's DiT and {cfg.codec.kind} codec")
            load_exact(dit, split_prefix(state, "dit"), str(path))
            load_exact(codec, split_prefix(state, "codec"), str(path))
        except CheckpointError as exc:
            raise WeightsError(str(exc)) from exc
    encoder = MelEncoder(cfg.audio.n_mels)

    def no_text(prompt: str) -> torch.Tensor:
        return torch.zeros(1, 1, cfg.dit.text_dim)

    return dit, codec, encoder, no_text, lambda image: None


def _load_tiny(cfg: ProfileConfig, device: torch.device) -> tuple:
    return _load_small(TinyCodec, cfg, device)


def _load_portrait(cfg: ProfileConfig, device: torch.device) -> tuple:
    from models.portrait.codec import MotionCodec  # cv2, scipy and the face mesh: only this profile

    return _load_small(MotionCodec, cfg, device)


def _load_wan(cfg: ProfileConfig, device: torch.device) -> tuple:
    root = None if cfg.random_weights else _weights_dir(cfg)
    from models import wan_components  # heavy (transformers); only the 1.3B profiles need it

    try:
        return wan_components.load_components(cfg, root, device)
    except CheckpointError as exc:
        raise WeightsError(str(exc)) from exc


_LOADERS = {"tiny": _load_tiny, "wan-vae": _load_wan, "portrait": _load_portrait}
DEFAULT_PROFILE = "portrait"


def load_profile(name: str = DEFAULT_PROFILE, device: str | torch.device | None = "cpu",
                 weights: str | Path | None = None, size: int | None = None) -> Profile:
    """Build the models of a profile and load their weights (nothing is downloaded). `weights` (a file
    for tiny and portrait, a directory for the 1.3B profiles) overrides the profile's, in a copy of its
    config; so does `size`, the output's side in pixels, for a profile that renders at any size (portrait)."""
    cfg = read_profile_config(name)
    if weights is not None:
        cfg = replace(cfg, weights=str(Path(weights).absolute()))
    if size is not None:
        if cfg.codec.kind != "portrait":
            raise ProfileError(f"profile {name!r} makes frames of one size only ({cfg.resolution[1]}x"
                               f"{cfg.resolution[0]}); --size is for the portrait profiles")
        if not 64 <= size <= 2048 or size % 2:
            raise ProfileError(f"--size must be an even number of pixels, 64-2048, not {size}")
        cfg = replace(cfg, resolution=(int(size), int(size)))
    return build_profile(cfg, device)


def build_profile(cfg: ProfileConfig, device: str | torch.device | None = "cpu") -> Profile:
    """The models of a profile's config, weights loaded (a session's own process rebuilds its call's
    profile from the config this way: avatar/remote.py)."""
    device = _resolve_device(device)
    dtype = cfg.torch_dtype(device)
    started = time.perf_counter()
    seed_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # random-weight profiles are the same network every time
    try:
        dit, codec, audio_encoder, encode_text, encode_image = _LOADERS[cfg.codec.kind](cfg, device)
    finally:
        torch.random.set_rng_state(seed_state)
    if audio_encoder.tokens_per_frame != cfg.audio.tokens_per_frame:
        raise ProfileError(f"profile {cfg.name!r}: audio.tokens_per_frame = {cfg.audio.tokens_per_frame}, but the "
                           f"{cfg.audio.encoder} encoder gives {audio_encoder.tokens_per_frame}")
    dit = cast_keeping_fp32(dit.to(device), dtype).eval().requires_grad_(False)
    codec = codec.to(device=device, dtype=dtype).eval().requires_grad_(False)
    notes = (f"profile {cfg.name!r} has random weights: for tests and benchmarks only",) if cfg.random_weights else ()
    log.info("loaded profile %s on %s in %.1fs", cfg.name, device, time.perf_counter() - started)
    return Profile(cfg, device, dtype, dit, codec, audio_encoder, encode_text, encode_image, notes)
