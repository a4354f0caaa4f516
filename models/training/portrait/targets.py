"""Speech -> motion targets: phonemes with times -> visemes with coarticulation, blinks, head motion.

The mouth follows the JALI idea (Edwards et al., SIGGRAPH 2016): the jaw carries the vowels'
openness and the speech's loudness (each frame's opening is its viseme's, 30% pulled toward a mid
vowel's, times the syllable's energy: silence opens nothing), the lips carry rounding, spreading
and the consonants that need them (closure for m/b/p, lower lip to teeth for f/v). Phoneme targets are blended with
Cohen-Massaro dominance functions (each phoneme pulls toward its target with a weight that decays
exponentially from its centre), so neighbours shape each other and transitions start early;
phonemes whose lips must reach their target (m b p f v w) dominate strongly, and m/b/p get a hard
closure at their centre. Pauses are targets too: silence pulls the mouth shut.
Blinks: a renewal process (about 17 a minute, never closer than 1.2 s), 80 ms closing, 150 ms
opening. Head: slow sway plus small nods and brow lifts that follow the loudness.
"""
from __future__ import annotations

import math

import numpy as np

from models.audio_features import SAMPLE_RATE
from models.training.metrics import audio_envelope
from models.portrait.motion import CHANNELS, INDEX

FPS = 25
# openness from loudness: the envelope's speech range (0.25..0.85) stretched over 0..1
OPEN_FLOOR, OPEN_SPAN = 0.25, 0.6
ENERGY_MIX = 0.3   # share of the opening that follows the energy alone (a mid vowel's shape)
LEAD = 0.02   # seconds the mouth shape leads the sound (anticipatory coarticulation)
# (jaw_open, lip_gap, mouth_wide, mouth_round, upper_lip_raise, lower_lip_drop, lip_press) targets,
# then dominance (jaw, lips): vowels own the jaw, lip consonants own the lips (JALI's split)
_VISEMES = {
    "open": ((0.8, 0.3, 0.2, 0.0, 0.15, 0.1, 0.0), (2.0, 1.0)),        # a A: aI aU { V
    "mid": ((0.5, 0.25, 0.3, 0.0, 0.15, 0.1, 0.0), (2.0, 1.0)),        # e E eI 3:
    "schwa": ((0.35, 0.2, 0.1, 0.0, 0.05, 0.05, 0.0), (1.0, 0.6)),     # @
    "close_front": ((0.2, 0.25, 0.55, 0.0, 0.2, 0.1, 0.0), (1.5, 1.5)),  # i: I
    "back_round": ((0.6, 0.2, -0.1, 0.6, 0.0, 0.0, 0.0), (2.0, 2.0)),  # O: 0 OI
    "mid_round": ((0.45, 0.2, -0.2, 0.8, 0.0, 0.0, 0.0), (2.0, 2.0)),  # oU
    "close_round": ((0.2, 0.1, -0.3, 1.0, 0.0, 0.0, 0.0), (1.5, 2.5)),  # u: U
    "bilabial": ((0.05, -0.3, 0.0, 0.0, 0.0, 0.0, 1.0), (0.6, 5.0)),   # m b p
    "labiodental": ((0.1, 0.0, 0.0, 0.0, 0.5, -0.3, 0.3), (0.6, 4.0)),  # f v
    "dental": ((0.2, 0.3, 0.1, 0.0, 0.3, 0.3, 0.0), (0.8, 1.2)),       # T D
    "alveolar": ((0.16, 0.25, 0.15, 0.0, 0.25, 0.25, 0.0), (0.6, 0.8)),  # t d n l s z
    "postalveolar": ((0.18, 0.3, -0.1, 0.6, 0.4, 0.3, 0.0), (0.8, 1.5)),  # S Z tS dZ
    "velar": ((0.3, 0.2, 0.05, 0.0, 0.1, 0.1, 0.0), (0.8, 0.6)),       # k g N
    "r": ((0.2, 0.2, -0.1, 0.5, 0.1, 0.0, 0.0), (0.6, 1.2)),
    "w": ((0.1, 0.1, -0.3, 1.0, 0.0, 0.0, 0.0), (0.6, 4.0)),
    "j": ((0.15, 0.2, 0.4, 0.0, 0.1, 0.0, 0.0), (0.6, 1.0)),
    "h": ((0.3, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0), (0.2, 0.2)),
    "pause": ((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), (1.5, 1.5)),
}
_MOUTH = ("jaw_open", "lip_gap", "mouth_wide", "mouth_round", "upper_lip_raise", "lower_lip_drop",
          "lip_press")
_OPENING = ("jaw_open", "lip_gap", "upper_lip_raise", "lower_lip_drop")   # scaled by the energy
_CLASSES = (   # espeak-ng English mnemonics, longest match first
    ("bilabial", ("m", "b", "p")), ("labiodental", ("f", "v")), ("dental", ("T", "D")),
    ("postalveolar", ("tS", "dZ", "S", "Z")), ("w", ("w", "W")), ("j", ("j",)),
    ("velar", ("k", "g", "N", "x")), ("r", ("r", "R")), ("h", ("h",)),
    ("alveolar", ("t", "d", "n", "l", "s", "z")),
    ("close_round", ("u", "U")), ("mid_round", ("oU", "o@")), ("back_round", ("O", "0")),
    ("close_front", ("i", "I", "y")), ("open", ("a", "A", "{", "V")),
    ("schwa", ("@",)), ("mid", ("e", "E", "3")),
)


def viseme_class(phoneme: str) -> str:
    """The viseme class of an espeak-ng phoneme mnemonic (stress marks ignored)."""
    name = phoneme.strip("',%=")
    if not name or name[0] in "_;|:":
        return "pause"
    for cls, prefixes in sorted(((c, p) for c, ps in _CLASSES for p in ps), key=lambda x: -len(x[1])):
        if name.startswith(prefixes):
            return cls
    return "schwa"


def mouth_track(phonemes: list, duration: float, fps: int = FPS,
                openness: np.ndarray | None = None) -> np.ndarray:
    """(T, 7) mouth channels (`_MOUTH` order) at frame centres, by dominance blending; the opening
    channels (jaw, lips apart, teeth showing) scaled per frame by `openness` (the syllable's energy)
    before the m/b/p closures are enforced."""
    frames = math.ceil(duration * fps)
    t = (np.arange(frames) + 0.5) / fps + LEAD   # the lips move a little ahead of the sound
    starts = [s for s, _ in phonemes] + [duration]
    # silence before the first and after the last phoneme
    segments = [(0.0, max(starts[0], 1e-3), "pause")]
    segments += [(s, max(e, s + 1e-3), p) for (s, p), e in zip(phonemes, starts[1:])]
    segments.append((duration, duration + 0.3, "pause"))
    num = np.zeros((frames, len(_MOUTH)))
    den = np.zeros((frames, len(_MOUTH)))
    closures = []
    for start, end, phoneme in segments:
        cls = viseme_class(phoneme) if phoneme != "pause" else "pause"
        target, (jaw_alpha, lip_alpha) = _VISEMES[cls]
        alpha = np.full(len(_MOUTH), lip_alpha)
        alpha[0] = jaw_alpha
        centre, length = (start + end) / 2, end - start
        tau = 0.5 * length + 0.03
        weight = alpha * np.exp(-np.abs(t - centre) / tau)[:, None]
        num += weight * np.array(target)
        den += weight
        if cls == "bilabial":
            closures.append((centre, max(0.02, 0.3 * length)))
    track = num / np.maximum(den, 1e-9)
    # a pause of 0.2 s or more shuts the mouth fully, easing out of and back into speech
    gate = np.ones(frames)
    for start, end, phoneme in segments:
        if (phoneme == "pause" or viseme_class(phoneme) == "pause") and end - start >= 0.2:
            inside = np.minimum(t - start, end - t)
            gate = np.minimum(gate, 1 - np.clip(inside / 0.08, 0, 1))
    track *= gate[:, None]
    jaw, gap = _MOUTH.index("jaw_open"), _MOUTH.index("lip_gap")
    if openness is not None:
        scale = openness[:frames, None]
        for name in _OPENING:
            i = _MOUTH.index(name)
            # the syllable's energy sets the opening; the viseme keeps most of its own shape
            shaped = (1 - ENERGY_MIX) * track[:, i] + ENERGY_MIX * _VISEMES["mid"][0][i] * gate
            track[:, i] = np.where(track[:, i] > 0, shaped * scale[:, 0], track[:, i])
    for centre, half in closures:   # the lips must meet for m, b, p
        near = np.abs(t - centre) <= half + 0.5 / fps
        track[near, gap] = np.minimum(track[near, gap], -2.5 * track[near, jaw])
    return track


def blinks(frames: int, rng: np.random.Generator, fps: int = FPS) -> np.ndarray:
    t = np.arange(frames) / fps
    out = np.zeros(frames)
    at = rng.uniform(0.3, 2.5)
    while at < frames / fps:
        rel = t - at
        closing = np.clip(rel / 0.08, 0, 1)
        opening = np.clip(1 - (rel - 0.11) / 0.15, 0, 1)
        out = np.maximum(out, np.where(rel < 0, 0, np.minimum(closing, opening)))
        at += 1.2 + rng.exponential(2.3)
    return out


def _smooth(x: np.ndarray, seconds: float, fps: int = FPS) -> np.ndarray:
    width = max(1, int(seconds * fps))
    kernel = np.exp(-0.5 * (np.arange(-2 * width, 2 * width + 1) / width) ** 2)
    return np.convolve(np.pad(x, 2 * width, mode="edge"), kernel / kernel.sum(), "valid")


def openness(loud: np.ndarray, fps: int = FPS) -> np.ndarray:
    """(T,) how far each frame's syllable opens the mouth, from the loudness envelope (JALI: louder
    syllables open the jaw wider): the speech range of the envelope stretched over 0..1.3, so a
    quiet consonant barely parts the lips and a stressed vowel opens fully; silence gives 0."""
    return np.clip((_smooth(loud, 0.04, fps) - OPEN_FLOOR) / OPEN_SPAN, 0.0, 1.3)


def speech_motion(phonemes: list, audio16k: np.ndarray, rng: np.random.Generator,
                  fps: int = FPS) -> np.ndarray:
    """(T, len(CHANNELS)) motion for speech with phoneme times; T covers the audio."""
    duration = len(audio16k) / SAMPLE_RATE
    frames = math.ceil(duration * fps)
    loud = np.zeros(frames)
    env = audio_envelope(audio16k, fps)[:frames]
    loud[:len(env)] = env
    slow = _smooth(loud, 0.3, fps)
    mouth = mouth_track(phonemes, duration, fps, openness(loud, fps))
    motion = np.zeros((frames, len(CHANNELS)))
    for i, name in enumerate(_MOUTH):
        motion[:, INDEX[name]] = mouth[:, i]
    eyes = blinks(frames, rng, fps)
    motion[:, INDEX["blink_right"]] = motion[:, INDEX["blink_left"]] = eyes
    t = np.arange(frames) / fps
    sway = lambda amp: sum(amp / k * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t  # noqa: E731
                                            + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3))
    emphasis = np.clip(loud - slow, 0, None)           # syllables louder than their surroundings
    motion[:, INDEX["head_yaw"]] = sway(1.5)
    motion[:, INDEX["head_roll"]] = sway(0.8)
    motion[:, INDEX["head_pitch"]] = sway(1.0) - 3.0 * _smooth(emphasis, 0.12, fps)
    motion[:, INDEX["brows"]] = 0.5 * _smooth(emphasis, 0.2, fps)
    motion[:, INDEX["head_x"]] = 0.004 * sway(1.0)
    return motion
