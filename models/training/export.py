"""The last stage: the trained codec and a DiT (the student or the teacher) into one weights file."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoints import save_modules
from ..profile_config import ProfileConfig
from .codec_stages import trained_codec
from .dit_stages import build_dit
from .loop import finished_info


def export(out: Path, cfg: ProfileConfig, target: Path, which: str) -> None:
    codec = trained_codec(out, cfg)
    dit = build_dit(cfg)
    info = finished_info(out / f"{which}.pt", dit)
    save_modules(target, {"dit": dit, "codec": codec}, metadata={"dit": which, **info}, dtype=torch.float16)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB) from the {which}: {info}")
