"""Speech + motion pairs for training the portrait motion generator, with held-out voices apart.

Training examples use `models.training.speech.training_voices()` and random sentences; evaluation examples use
`HELD_OUT_VOICES` and `held_out_utterances()`, which training never hears. Each example is several
utterances with pauses between them (so the model also learns to shut the mouth), spoken at a random
rate and pitch. The motion comes from `targets.speech_motion` on espeak-ng's own phoneme times.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.audio_features import SAMPLE_RATE
from models.training.speech import (HELD_OUT_VOICES, held_out_utterances, random_utterance,
                                    training_voices)
from models.training.portrait.espeak_events import speak
from models.training.portrait.recorded_voices import FLITE_TRAINING, RECORDED_HELD_OUT, speak_recorded
from models.training.portrait.targets import speech_motion

# the held-out voices of evaluation: espeak-ng's (accent and variant never trained) and two recorded
# speakers training never hears (recorded_voices)
EVAL_VOICES = HELD_OUT_VOICES + RECORDED_HELD_OUT


def say(text: str, voice: str, speed: int = 160, pitch: int = 50):
    """An espeak-ng voice ("en-us+m3") or a recorded one ("flite:rms"); pitch is espeak's only."""
    if ":" in voice:
        return speak_recorded(text, voice, speed)
    return speak(text, voice, speed, pitch)


@dataclass
class Example:
    audio: np.ndarray      # float32, 16 kHz
    motion: np.ndarray     # (T, len(CHANNELS)) at 25 fps, T = ceil(seconds * 25)
    phonemes: list         # [(seconds, espeak mnemonic)]
    voice: str
    texts: list


def _join(said: list, pauses: list) -> tuple:
    audio, phonemes, offset = [], [], 0.0
    for utterance, pause in zip(said, pauses):
        phonemes += [(t + offset, p) for t, p in utterance.phonemes]
        gap = np.zeros(int(pause * SAMPLE_RATE), np.float32)
        audio += [utterance.audio, gap]
        offset += (len(utterance.audio) + len(gap)) / SAMPLE_RATE
    return np.concatenate(audio), phonemes


def training_example(rng: np.random.Generator, seconds: float = 6.0, engine: str = "espeak") -> Example:
    """Random training voice of `engine` (espeak, or flite's recorded speakers), rate and pitch;
    utterances until `seconds` is reached."""
    voice = str(rng.choice(training_voices() if engine == "espeak" else FLITE_TRAINING))
    speed, pitch = int(rng.integers(130, 191)), int(rng.integers(25, 76))
    lead = float(rng.uniform(0.0, 0.6))   # silence before the first word
    said, texts, pauses, total = [], [], [], lead
    while total < seconds:
        text = random_utterance(rng)
        utterance = say(text, voice, speed, pitch)
        pause = float(rng.uniform(0.15, 1.0))
        said.append(utterance)
        texts.append(text)
        pauses.append(pause)
        total += len(utterance.audio) / SAMPLE_RATE + pause
    audio, phonemes = _join(said, pauses)
    audio = np.concatenate([np.zeros(int(lead * SAMPLE_RATE), np.float32), audio])
    phonemes = [(t + lead, p) for t, p in phonemes]
    return Example(audio, speech_motion(phonemes, audio, rng), phonemes, voice, texts)


def held_out_example(index: int, speed: int = 150) -> Example:
    """Held-out voice `index` of `EVAL_VOICES` speaking two held-out sentences with a pause between
    (fixed)."""
    voice = EVAL_VOICES[index % len(EVAL_VOICES)]
    sentences = held_out_utterances()
    texts = [sentences[(2 * index) % len(sentences)], sentences[(2 * index + 1) % len(sentences)]]
    said = [say(text, voice, speed) for text in texts]
    audio, phonemes = _join(said, [0.8, 0.3])
    motion = speech_motion(phonemes, audio, np.random.default_rng(index))
    return Example(audio, motion, phonemes, voice, texts)
