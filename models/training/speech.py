"""Real synthetic speech (espeak-ng) for training the tiny model and for tests and evaluation.

Voices and sentences are split: `HELD_OUT_VOICES` and `held_out_utterances()` never occur in
`make_training_audio`, so evaluation hears accents, timbres and sentences the model never trained on.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..audio_features import SAMPLE_RATE, decode_audio_file

# A voice is "<language>+<variant>" (espeak-ng's syntax). Held-out voices use a language AND a
# variant that training never uses, so they are new both in accent and in timbre.
TRAIN_LANGUAGES = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m5", "m7", "f1", "f2", "f3", "f5",
                  "Alex", "Andy", "Annie", "david", "edward", "linda", "steph", "max", "michel", "paul")
HELD_OUT_VOICES = ("en-gb-scotland+f4", "en-029+m4", "en-gb-x-gbcwmd+robert", "en-gb-scotland+m6")

_HELD_OUT_SENTENCES = (
    "Seven purple umbrellas were drying beside the lighthouse this morning.",
    "Would you kindly fetch my violin from the attic before supper?",
    "Thunder rolled across the valley while the shepherd counted his sheep.",
    "Quiet whispers echoed through the marble hallway of the museum.",
    "Honestly, I never expected the zebra to win the chess tournament.",
    "Our neighbour bakes cinnamon rolls every Sunday at dawn.",
    "Gentle waves carried the wooden raft towards the golden shore.",
    "Remember to water the orchids, otherwise they will wither by Friday.",
)

_SUBJECTS = ("the teacher", "my brother", "a little dog", "the old captain", "our team", "the doctor",
             "my friend", "the pilot", "a young girl", "the farmer", "everyone", "the children",
             "my grandmother", "the new student", "the driver", "a clever cat", "the singer", "you")
_VERBS = ("found", "painted", "opened", "carried", "remembered", "cleaned", "visited", "bought",
          "watched", "fixed", "borrowed", "described", "explained", "lost", "built", "checked",
          "moved", "ordered", "wrote about", "talked about")
_OBJECTS = ("a red box", "the kitchen window", "an empty bottle", "the big map", "a yellow bicycle",
            "the garden gate", "a small boat", "the heavy table", "a blue coat", "the morning paper",
            "some fresh bread", "the broken clock", "a tall tree", "the letter", "an orange kite",
            "the green door", "a funny story", "the train ticket", "six apples", "the last page")
_ENDINGS = ("yesterday", "last week", "after lunch", "in the rain", "before dinner", "at the station",
            "near the river", "on Monday", "very slowly", "without a word", "again", "this evening",
            "in the park", "at school", "by the lake", "for an hour", "with great care", "")
_OPENERS = ("", "", "", "well,", "so,", "oh,", "you know,", "actually,", "I think", "I heard that",
            "look,", "yes,", "okay,")
_QUESTIONS = ("did {s} see {o} {e}?", "why did {s} take {o}?", "where is {o}?", "can {s} bring {o} {e}?",
              "have you ever seen {o}?", "who {v} {o}?")
_EXCLAMATIONS = ("hello there!", "good morning everyone!", "thank you so much!", "that is wonderful!",
                 "no way!", "really?", "oh my goodness!", "hmm, let me think.", "see you tomorrow!")
_NUMBERS = ("one", "two", "three", "four", "five", "eight", "ten", "twelve", "twenty", "forty",
            "ninety nine", "a hundred")


class SpeechSynthesisUnavailable(RuntimeError):
    pass


def espeak_executable() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechSynthesisUnavailable(
            "espeak-ng is not installed; install the Debian package 'espeak-ng' (apt-get install espeak-ng)")
    return exe


def synthesize(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50,
               path: str | Path | None = None) -> Path:
    """Speak `text` into a WAV file (espeak-ng's own rate, 22.05 kHz). speed: words/min; pitch: 0-99."""
    if path is None:
        path = Path(tempfile.mkstemp(suffix=".wav")[1])
    path = Path(path)
    cmd = [espeak_executable(), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", str(path), "--", text]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not path.exists() or path.stat().st_size <= 44:
        raise SpeechSynthesisUnavailable(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
    return path


def list_voices() -> list[str]:
    """English espeak-ng voices usable with `-v` (MBROLA voices, which need extra packages, are skipped)."""
    out = subprocess.run([espeak_executable(), "--voices=en"], capture_output=True, text=True, check=True).stdout
    voices = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[1] != "variant" and not fields[4].startswith("mb/") and fields[1] not in voices:
            voices.append(fields[1])
    return voices


def training_voices() -> list[str]:
    return [f"{lang}+{variant}" for lang in TRAIN_LANGUAGES for variant in TRAIN_VARIANTS]


def random_utterance(rng: np.random.Generator) -> str:
    """A short varied English sentence (never one of the held-out sentences)."""
    while True:
        text = _compose(rng)
        if text not in _HELD_OUT_SENTENCES:
            return text


def _compose(rng: np.random.Generator) -> str:
    pick = lambda options: options[rng.integers(len(options))]  # noqa: E731
    kind = rng.random()
    if kind < 0.55:
        parts = [pick(_OPENERS), pick(_SUBJECTS), pick(_VERBS), pick(_OBJECTS), pick(_ENDINGS)]
        text = " ".join(p for p in parts if p) + "."
    elif kind < 0.75:
        text = pick(_QUESTIONS).format(s=pick(_SUBJECTS), o=pick(_OBJECTS), e=pick(_ENDINGS), v=pick(_VERBS))
    elif kind < 0.9:
        text = pick(_EXCLAMATIONS)
    else:
        text = f"{pick(_SUBJECTS)} counted {pick(_NUMBERS)}, {pick(_NUMBERS)} and {pick(_NUMBERS)}."
    text = " ".join(text.split())
    return text[0].upper() + text[1:]


def held_out_utterances() -> list[str]:
    return list(_HELD_OUT_SENTENCES)


def _gain_to_rms_db(x: np.ndarray, target_db: float) -> np.ndarray:
    loud = x[np.abs(x) > 1e-3]
    if loud.size == 0:
        return x
    rms_db = 20 * np.log10(np.sqrt(np.mean(loud ** 2)) + 1e-9)
    return x * np.float32(10 ** ((target_db - rms_db) / 20))


def _background_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    if rng.random() < 0.5:  # brown-ish (hum, traffic) rather than hiss
        white = np.cumsum(white)
        white -= np.convolve(white, np.ones(401) / 401, mode="same")
    level_db = rng.uniform(-72, -52)
    return white / (np.sqrt(np.mean(white ** 2)) + 1e-9) * np.float32(10 ** (level_db / 20))


def make_training_audio(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """`seconds` of float32 16 kHz: utterances by different training voices, speeds, pitches and
    loudnesses, separated by pauses and silences, sometimes over quiet background noise."""
    n = int(round(seconds * SAMPLE_RATE))
    out = np.zeros(n, np.float32)
    voices = training_voices()
    pos = int(rng.uniform(0, 0.8) * SAMPLE_RATE)
    with tempfile.TemporaryDirectory() as tmp:
        while pos < n:
            wav = synthesize(random_utterance(rng), voices[rng.integers(len(voices))],
                             speed=int(rng.uniform(120, 230)), pitch=int(rng.uniform(15, 85)),
                             path=Path(tmp) / "u.wav")
            speech = _gain_to_rms_db(decode_audio_file(wav), rng.uniform(-32, -16))
            take = min(len(speech), n - pos)
            out[pos:pos + take] += speech[:take]
            pause = rng.uniform(0.1, 0.7) if rng.random() < 0.7 else rng.uniform(1.0, 3.0)
            pos += take + int(pause * SAMPLE_RATE)
    if rng.random() < 0.5:
        out += _background_noise(rng, n)
    return np.clip(out, -1.0, 1.0)


def held_out_audio(index: int, speed: int = 165, pitch: int = 50) -> np.ndarray:
    """Held-out sentence `index` spoken by a held-out voice (deterministic), float32 16 kHz."""
    sentences = held_out_utterances()
    voice = HELD_OUT_VOICES[index % len(HELD_OUT_VOICES)]
    with tempfile.TemporaryDirectory() as tmp:
        path = synthesize(sentences[index % len(sentences)], voice, speed, pitch, Path(tmp) / "h.wav")
        return decode_audio_file(path)
