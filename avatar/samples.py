"""The built-in sample faces and test audio: made in code (one photo is shipped as a file), so the
server, the benchmarks and the tests need nothing else."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models.audio_features import SAMPLE_RATE


def babble(seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Speech-like audio: voiced harmonics in ~4 Hz syllables, with pauses (not real speech); what the
    benchmarks, the server's start-up calibration and the tests feed a session."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    phrases = (np.sin(2 * np.pi * t / 3.0) > -0.5).astype(np.float64)  # a pause every 3 s
    noise = rng.normal(0, 0.01, t.shape)
    return (0.25 * voice * syllables * phrases + noise).astype(np.float32)


def drawn_face(size: int = 256) -> np.ndarray:
    """A simple drawn face: the server's built-in avatar "drawn", and the benchmarks' and tests' image."""
    img = np.full((size, size, 3), (90, 120, 160), np.uint8)
    c = size // 2
    cv2.ellipse(img, (c, c), (size // 4, size // 3), 0, 0, 360, (225, 190, 160), -1, cv2.LINE_AA)
    for dx in (-1, 1):
        cv2.circle(img, (c + dx * size // 10, c - size // 12), size // 30, (40, 30, 30), -1, cv2.LINE_AA)
    cv2.ellipse(img, (c, c + size // 7), (size // 12, size // 40), 0, 0, 360, (150, 60, 60), -1, cv2.LINE_AA)
    return img


SAMPLE_PHOTO = Path(__file__).resolve().parent / "data" / "astronaut.jpg"


def sample_photo() -> np.ndarray:
    """A real photograph (NASA's portrait of the astronaut Eileen Collins, public domain, as scikit-image
    ships it): the server's built-in avatar "astronaut", and the portrait profile's benchmark image."""
    from PIL import Image

    with Image.open(SAMPLE_PHOTO) as image:
        return np.asarray(image.convert("RGB"))


def sample_reference(profile) -> np.ndarray:
    """The benchmarks' and the start-up calibration's face for `profile`: the photo for a profile that
    animates photos (a drawn face has no face for its landmark model), else the drawn face."""
    return sample_photo() if getattr(profile, "animates_photo", False) else drawn_face()
