"""Profiles: one code path, several model sizes, chosen by name. Each is a small TOML file here."""

from __future__ import annotations

import logging
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from models.audio_features import MelEncoder, lookahead_seconds
from models.checkpoints import CheckpointError, load_exact, read_tensors, split_prefix
from models.dit import AudioWanTransformer, dit_kwargs
from models.sampler import GuidancePlan
from models.tiny_codec import TinyCodec

from .errors import ProfileError, WeightsError

log = logging.getLogger(__name__)

PROFILE_DIR = Path(__file__).parent / "profiles"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "models" / "weights"
FPS = 25
SAMPLE_RATE = 16000


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_profile_config(name: str) -> dict:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name!r}; known profiles: {', '.join(profile_names())}")
    try:
        cfg = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile file {path} is malformed: {exc}") from exc
    if "extends" in cfg:
        cfg = _merge(read_profile_config(cfg.pop("extends")), cfg)
    cfg["name"] = name
    return cfg


@dataclass
class Profile:
    """A loaded model set, shared by every session that uses it (read-only after loading)."""

    name: str
    config: dict
    device: torch.device
    dtype: torch.dtype
    dit: AudioWanTransformer
    codec: Any  # TinyCodec or the Wan VAE wrapper: encode_reference / start_stream / decode
    audio_encoder: Any  # MelEncoder or the wav2vec2 encoder: token_span / encode
    encode_text: Callable[[str], torch.Tensor]  # prompt -> (1, L, text_dim)
    encode_image: Callable[[np.ndarray], torch.Tensor | None]  # reference RGB -> (1, N, image_dim) or None
    random_weights: bool
    fps: int = FPS
    sample_rate: int = SAMPLE_RATE
    notes: list[str] = field(default_factory=list)

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.config["resolution"])

    @property
    def new_latents(self) -> int:
        return int(self.config["window"]["new_latents"])

    @property
    def context_latents(self) -> int:
        return int(self.config["window"]["context_latents"])

    @property
    def frames_per_window(self) -> int:
        return self.new_latents * self.codec.frames_per_latent

    @property
    def audio_window(self) -> tuple[int, int]:
        a = self.config["audio"]
        return int(a["behind_tokens"]), int(a["ahead_tokens"])

    @property
    def official_audio_slots(self) -> bool:
        """Audio laid out as EchoMimicV3 lays out a chunk (zero slots after the projection outside the
        window's audio, none past its end); otherwise every slot holds features, silence outside."""
        return self.config["audio"].get("slots", "features") == "official"

    @property
    def face_mask(self) -> bool:
        """The DiT's audio output counts only inside the reference's face box (EchoMimicV3's ip_mask)."""
        return bool(self.config["audio"].get("face_mask", False))

    @property
    def ahead_needed(self) -> int:
        """Audio tokens past a window's last frame that the window reads (none with official slots)."""
        return 0 if self.official_audio_slots else self.audio_window[1]

    @property
    def lookahead_s(self) -> float:
        return lookahead_seconds(self.audio_encoder, self.ahead_needed)

    @property
    def steps(self) -> int:
        return int(self.config["sampler"]["steps"])

    @property
    def idle_steps(self) -> int:
        return int(self.config["sampler"].get("idle_steps", self.steps))

    @property
    def shift(self) -> float:
        return float(self.config["sampler"].get("shift", 1.0))

    @property
    def sigma_schedule(self) -> str:
        return self.config["sampler"].get("sigmas", "linear")

    @property
    def guidance(self) -> GuidancePlan:
        s = self.config["sampler"]
        return GuidancePlan.from_config(s.get("guidance", []), s.get("guidance_nested", False),
                                        s.get("guidance_schedule", "constant"))

    @property
    def negative_prompt(self) -> str:
        return self.config.get("text", {}).get("negative_prompt", "")


def _to_dtype(dit: AudioWanTransformer, dtype: torch.dtype) -> AudioWanTransformer:
    """Cast to dtype but keep the modules Wan needs in float32 (norms, time embedding, modulation)."""
    if dtype == torch.float32:
        return dit
    keep = set(dit._keep_in_fp32_modules)
    for name, param in dit.named_parameters():
        if not keep.intersection(name.split(".")):
            param.data = param.data.to(dtype)
    return dit


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProfileError("--device cuda was asked for, but torch sees no CUDA device")
    return device


def _weights_dir(cfg: dict, weights: str | Path | None) -> Path:
    env = cfg.get("weights_env")
    chosen = weights or (os.environ.get(env) if env else None)
    if not chosen:
        raise WeightsError(
            f"profile {cfg['name']!r} needs its weights directory: pass --weights DIR"
            + (f" or set {env}" if env else "") + " (the layout is in README.md)")
    path = Path(chosen)
    if not path.is_dir():
        raise WeightsError(f"weights directory not found: {path}")
    return path


def _load_tiny(cfg: dict, device: torch.device, weights: str | Path | None) -> tuple:
    dit = AudioWanTransformer(**dit_kwargs(cfg["dit"]))
    codec = TinyCodec.from_config(cfg)
    if not cfg.get("random_weights"):
        path = Path(weights) if weights else WEIGHTS_DIR / cfg["weights"]
        try:
            state = read_tensors(path, f"the {cfg['name']} profile's DiT and decoder")
            load_exact(dit, split_prefix(state, "dit"), str(path))
            load_exact(codec, split_prefix(state, "codec"), str(path))
        except CheckpointError as exc:
            raise WeightsError(str(exc)) from exc
    encoder = MelEncoder(cfg["audio"]["n_mels"])

    def no_text(prompt: str) -> torch.Tensor:
        return torch.zeros(1, 1, cfg["dit"]["text_dim"])

    return dit, codec, encoder, no_text, lambda image: None


def _load_wan(cfg: dict, device: torch.device, weights: str | Path | None) -> tuple:
    random = bool(cfg.get("random_weights"))
    root = None if random else _weights_dir(cfg, weights)
    from models import wan_components  # heavy (transformers); only the 1.3B profiles need it

    try:
        return wan_components.load_components(cfg, root, device)
    except CheckpointError as exc:
        raise WeightsError(str(exc)) from exc


_LOADERS = {"tiny": _load_tiny, "wan-vae": _load_wan}


def load_profile(name: str = "tiny", device: str | torch.device | None = "cpu",
                 weights: str | Path | None = None) -> Profile:
    """Build the models of a profile and load their weights (nothing is downloaded)."""
    cfg = read_profile_config(name)
    device = _resolve_device(device)
    dtype = getattr(torch, cfg.get("dtype" if device.type == "cuda" else "cpu_dtype", "float32"))
    started = time.perf_counter()
    seed_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # random-weight profiles are the same network every time
    try:
        loader = _LOADERS.get(cfg["codec"]["kind"])
        if loader is None:
            raise ProfileError(f"profile {name!r}: unknown codec kind {cfg['codec']['kind']!r}")
        dit, codec, audio_encoder, encode_text, encode_image = loader(cfg, device, weights)
    finally:
        torch.random.set_rng_state(seed_state)
    dit = _to_dtype(dit.to(device), dtype).eval().requires_grad_(False)
    codec = codec.to(device=device, dtype=dtype).eval().requires_grad_(False)
    notes = [f"profile {name!r} has random weights: for tests and benchmarks only"] if cfg.get("random_weights") else []
    log.info("loaded profile %s on %s in %.1fs", name, device, time.perf_counter() - started)
    return Profile(name, cfg, device, dtype, dit, codec, audio_encoder, encode_text, encode_image,
                   bool(cfg.get("random_weights")), notes=notes)
