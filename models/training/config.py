"""The profile whose shapes are trained, read from the engine's profile files."""

from __future__ import annotations

import tomllib
from pathlib import Path

PROFILE_DIR = Path(__file__).resolve().parents[2] / "avatar" / "profiles"


def load_profile_config(name: str = "tiny-random") -> dict:
    return tomllib.loads((PROFILE_DIR / f"{name}.toml").read_text())
