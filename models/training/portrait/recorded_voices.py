"""Voices built from real recorded speakers, beside espeak-ng's formant voices: Debian's `flite`
(CMU ARCTIC speakers rms, slt, awb: statistical parametric voices trained on their recordings;
kal16: concatenated diphones of a recorded speaker) and `festival` (ked_diphone, package
`festvox-kdlpc16k`). Training uses `FLITE_TRAINING`; `flite:awb` and `festival:ked_diphone` are held
out (speakers training never hears, in `dataset.EVAL_VOICES`).

Phoneme times come from the same synthesis that makes the audio: `flite -psdur` prints each
segment with its end time, festival's `utt.save.segs` the same. Both use the CMU/radio phone set,
mapped here to espeak-ng mnemonics so `targets.viseme_class` reads them like espeak's.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from models.audio_features import SAMPLE_RATE
from models.training.portrait.espeak_events import Utterance
from models.training.speech import SpeechSynthesisUnavailable

FLITE_TRAINING = ("flite:rms", "flite:slt", "flite:kal16")
RECORDED_HELD_OUT = ("flite:awb", "festival:ked_diphone")
_ESPEAK = {   # CMU / radio phone -> espeak-ng mnemonic (targets.viseme_class's classes)
    "aa": "A:", "ae": "a", "ah": "V", "ao": "O:", "aw": "aU", "ax": "@", "ay": "aI", "eh": "E",
    "er": "3:", "ey": "eI", "ih": "I", "iy": "i:", "ow": "oU", "oy": "OI", "uh": "U", "uw": "u:",
    "b": "b", "ch": "tS", "d": "d", "dh": "D", "f": "f", "g": "g", "hh": "h", "jh": "dZ", "k": "k",
    "l": "l", "m": "m", "n": "n", "ng": "N", "p": "p", "r": "r", "s": "s", "sh": "S", "t": "t",
    "th": "T", "v": "v", "w": "w", "y": "j", "z": "z", "zh": "Z", "pau": "_:", "h#": "_:", "#": "_:",
}


def _tool(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise SpeechSynthesisUnavailable(f"{name} is not installed; install the Debian package '{package}'")
    return exe


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:
        audio = resample_poly(audio, SAMPLE_RATE, rate).astype(np.float32)
    return audio


def _phonemes(ends: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """[(end seconds, phone)] -> [(start seconds, espeak mnemonic)]."""
    starts = [0.0] + [end for end, _ in ends[:-1]]
    return [(start, _ESPEAK.get(phone, "@")) for start, (_, phone) in zip(starts, ends)]


def _flite(text: str, voice: str, stretch: float) -> Utterance:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "u.wav"
        run = subprocess.run([_tool("flite", "flite"), "-voice", voice, "-psdur", "--setf",
                              f"duration_stretch={stretch:.3f}", "-t", text, "-o", str(path)],
                             capture_output=True, text=True)
        if run.returncode != 0 or not path.is_file():
            raise SpeechSynthesisUnavailable(f"flite failed for voice {voice!r}: {run.stderr.strip()}")
        ends = [(float(end), phone) for phone, end in
                (item.rsplit(":", 1) for item in run.stdout.split() if ":" in item)]
        return Utterance(_read_wav(path), _phonemes(ends))


def _festival(text: str, voice: str, stretch: float) -> Utterance:
    with tempfile.TemporaryDirectory() as tmp:
        wav, segs = Path(tmp) / "u.wav", Path(tmp) / "u.segs"
        quoted = text.replace("\\", " ").replace('"', " ")
        script = (f'(voice_{voice})(Parameter.set \'Duration_Stretch {stretch:.3f})'
                  f'(set! utt (utt.synth (Utterance Text "{quoted}")))'
                  f'(utt.save.wave utt "{wav}")(utt.save.segs utt "{segs}")')
        run = subprocess.run([_tool("festival", "festival"), "--pipe"], input=script, capture_output=True, text=True)
        if run.returncode != 0 or not wav.is_file() or not segs.is_file():
            raise SpeechSynthesisUnavailable(f"festival failed for voice {voice!r}: {run.stderr.strip()}")
        body = segs.read_text().split("#", 1)[1].split("\n")
        ends = [(float(f[0]), f[2]) for f in (line.split() for line in body) if len(f) == 3]
        return Utterance(_read_wav(wav), _phonemes(ends))


def speak_recorded(text: str, voice: str, speed: int = 160) -> Utterance:
    """`voice` is "flite:NAME" or "festival:NAME"; `speed` in words a minute (160: the voice's own)."""
    engine, _, name = voice.partition(":")
    speak = {"flite": _flite, "festival": _festival}.get(engine)
    if speak is None:
        raise SpeechSynthesisUnavailable(f"unknown recorded voice {voice!r} (flite:NAME or festival:NAME)")
    return speak(text, name, 160.0 / speed)
