"""Who the procedural face is: shape, colours, hair, accessories and background, all sampled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Colour = tuple[int, int, int]  # RGB

SKIN_TONES: tuple[Colour, ...] = (
    (255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 144, 104), (176, 122, 86),
    (141, 92, 62), (112, 72, 48), (86, 56, 40), (232, 190, 150), (210, 160, 120),
)
HAIR_COLOURS: tuple[Colour, ...] = (
    (25, 20, 18), (45, 32, 25), (80, 55, 35), (120, 80, 45), (150, 75, 40), (200, 160, 95),
    (225, 200, 140), (160, 160, 160), (210, 210, 205), (70, 40, 30),
)
DYED_HAIR: tuple[Colour, ...] = ((60, 90, 200), (210, 90, 160), (120, 60, 170), (40, 150, 130))
IRIS_COLOURS: tuple[Colour, ...] = (
    (70, 45, 25), (40, 28, 20), (80, 120, 170), (70, 120, 80), (120, 100, 55), (110, 120, 130),
)
LIPSTICKS: tuple[Colour, ...] = ((210, 50, 60), (230, 110, 130), (190, 80, 70), (200, 100, 150))

HAIR_STYLES = ("none", "buzz", "short", "fringe", "side", "long", "bun", "afro")
BACKGROUNDS = ("solid", "vertical", "radial", "stripes", "dots")
HATS = ("beanie", "cap", "brimmed")


@dataclass(frozen=True)
class FaceIdentity:
    # Geometry in face units: the face's half height is 1, y points down, the face centre is 0.
    face_half_width: float
    jaw_width: float  # 1 = as wide as the cheeks at jaw level, smaller = pointier chin
    jaw_squareness: float  # exponent < 1 squares the lower face
    frame_fraction: float  # face height as a fraction of the frame height
    centre_shift: tuple[float, float]  # (x, y) fractions of the frame
    skin: Colour
    hair_style: str
    hair: Colour
    hairline: float  # how far down the forehead the hair comes (0 = at the top of the head)
    eye_size: float
    eye_aspect: float
    eye_spacing: float
    eye_height: float
    iris: Colour
    brow_thickness: float
    brow_arch: float
    brow: Colour
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_height: float
    lips: Colour
    upper_lip: float
    lower_lip: float
    teeth: bool
    shirt: Colour
    collar: str
    background: str
    background_colours: tuple[Colour, Colour]
    glasses: str | None  # "round" / "square"
    glasses_colour: Colour
    earrings: Colour | None
    hat: str | None
    hat_colour: Colour


def _jitter(rng: np.random.Generator, colour, amount: float) -> Colour:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in colour)


def _mix(a, b, t: float) -> Colour:
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def luminance(colour) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _lip_colour(rng: np.random.Generator, skin: Colour) -> Colour:
    if rng.random() < 0.2:
        lips = _mix(skin, _pick(rng, LIPSTICKS), 0.55)
    else:
        lips = _mix(skin, (170, 70, 80), rng.uniform(0.2, 0.4))
        lips = tuple(int(c * rng.uniform(0.82, 0.95)) for c in lips)
    # Lips stay much brighter than the mouth's dark inside, so a lip is never read as an open mouth.
    floor = 0.62 * luminance(skin)
    if luminance(lips) < floor:
        lips = _mix(lips, skin, 0.5)
    return lips


def _background_colours(rng: np.random.Generator) -> tuple[Colour, Colour]:
    hue_a = rng.uniform(0, 1)
    base = np.array([0.5 + 0.5 * np.cos(2 * np.pi * (hue_a + k / 3)) for k in range(3)])
    saturation, value = rng.uniform(0.1, 0.6), rng.uniform(60, 235)
    a = value * (1 - saturation + saturation * base)
    b = a * rng.uniform(0.6, 1.25) + rng.normal(0, 18, 3)
    return tuple(int(v) for v in np.clip(a, 0, 255)), tuple(int(v) for v in np.clip(b, 0, 255))


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    skin = _jitter(rng, _pick(rng, SKIN_TONES), 6)
    hair_style = _pick(rng, HAIR_STYLES)
    hair = _pick(rng, DYED_HAIR) if rng.random() < 0.08 else _jitter(rng, _pick(rng, HAIR_COLOURS), 8)
    brow_base = hair if hair_style not in ("none", "buzz") or rng.random() < 0.5 else (60, 45, 35)
    glasses = _pick(rng, ("round", "square")) if rng.random() < 0.25 else None
    hat = _pick(rng, HATS) if rng.random() < 0.12 and hair_style not in ("bun", "afro") else None
    return FaceIdentity(
        face_half_width=rng.uniform(0.68, 0.84),
        jaw_width=rng.uniform(0.55, 0.95),
        jaw_squareness=rng.uniform(0.55, 1.0),
        frame_fraction=rng.uniform(0.6, 0.68),
        centre_shift=(rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02)),
        skin=skin,
        hair_style=hair_style,
        hair=hair,
        hairline=rng.uniform(0.2, 0.5),
        eye_size=rng.uniform(0.1, 0.14),
        eye_aspect=rng.uniform(0.5, 0.68),
        eye_spacing=rng.uniform(0.3, 0.38),
        eye_height=rng.uniform(-0.12, -0.02),
        iris=_jitter(rng, _pick(rng, IRIS_COLOURS), 8),
        brow_thickness=rng.uniform(0.035, 0.07),
        brow_arch=rng.uniform(0.02, 0.08),
        brow=_mix(brow_base, (20, 15, 10), rng.uniform(0.1, 0.4)),
        nose_length=rng.uniform(0.2, 0.3),
        nose_width=rng.uniform(0.08, 0.13),
        mouth_width=rng.uniform(0.22, 0.3),
        mouth_height=rng.uniform(0.5, 0.56),
        lips=_lip_colour(rng, skin),
        upper_lip=rng.uniform(0.03, 0.055),
        lower_lip=rng.uniform(0.04, 0.075),
        teeth=bool(rng.random() < 0.6),
        shirt=_jitter(rng, _background_colours(rng)[0], 10),
        collar=_pick(rng, ("round", "v", "none")),
        background=_pick(rng, BACKGROUNDS),
        background_colours=_background_colours(rng),
        glasses=glasses,
        glasses_colour=_pick(rng, ((20, 20, 20), (90, 60, 40), (150, 150, 160), (120, 30, 40))),
        earrings=_pick(rng, ((230, 200, 90), (210, 210, 220), (200, 60, 80))) if rng.random() < 0.2 else None,
        hat=hat,
        hat_colour=_jitter(rng, _background_colours(rng)[1], 10),
    )
