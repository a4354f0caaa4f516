"""Speech with exact phoneme times, from espeak-ng's own library (libespeak-ng.so.1, Debian's
`espeak-ng` package brings it).

The command line gives phoneme timings only through MBROLA voices (`--pho`), which Debian does not
ship here; the library's synthesis callback reports a PHONEME event at the audio position where
each phoneme starts, in the same call that returns the samples, so times and audio cannot drift.
The library keeps global state: calls are serialised by a lock. That state also carries from one
synthesis to the next (the command line starts fresh each time), so saying the same text twice in
one process gives the same phonemes with times a few milliseconds apart, not identical samples.
"""
from __future__ import annotations

import ctypes
import math
import subprocess
import threading
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from models.audio_features import SAMPLE_RATE
from models.training.speech import SpeechSynthesisUnavailable, espeak_executable

_SYNCHRONOUS = 2            # AUDIO_OUTPUT_SYNCHRONOUS
_PHONEME_EVENTS = 0x0001    # espeakINITIALIZE_PHONEME_EVENTS
_DONT_EXIT = 0x8000         # espeakINITIALIZE_DONT_EXIT
_EVENT_PHONEME, _EVENT_END = 7, 5
_RATE, _PITCH = 1, 3        # espeak_PARAMETER
_CHARS_UTF8 = 1
_POS_CHARACTER = 1


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass
class Utterance:
    audio: np.ndarray          # float32 mono in [-1, 1] at 16 kHz (the engine's rate)
    phonemes: list             # [(start seconds, espeak phoneme mnemonic)], in time order


class _Espeak:
    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libespeak-ng.so.1")
        except OSError:
            raise SpeechSynthesisUnavailable(
                "libespeak-ng.so.1 not found; install the Debian package 'espeak-ng'") from None
        self.rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 200, None,
                                               _PHONEME_EVENTS | _DONT_EXIT)
        if self.rate <= 0:
            raise SpeechSynthesisUnavailable("espeak-ng failed to initialise")
        self.callback = _CALLBACK(self._on_audio)   # kept alive on the instance
        self.lib.espeak_SetSynthCallback(self.callback)
        self.lock = threading.Lock()
        self.chunks, self.events = [], []

    def _on_audio(self, wav, count, events):
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == _EVENT_PHONEME:
                name = events[i].id.decode("ascii", "replace")
                self.events.append((events[i].audio_position / 1000.0, name))
            i += 1
        return 0

    def speak(self, text: str, voice: str, speed: int, pitch: int) -> Utterance:
        with self.lock:
            if (self.lib.espeak_SetVoiceByName(voice.encode()) != 0
                    and self.lib.espeak_SetVoiceByName(_by_file(voice).encode()) != 0):
                raise SpeechSynthesisUnavailable(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, int(speed), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self.chunks, self.events = [], []
            data = text.encode("utf-8") + b"\0"
            err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if err != 0 or not self.chunks:
                raise SpeechSynthesisUnavailable(f"espeak-ng could not speak {text!r} ({err})")
            audio = np.concatenate(self.chunks).astype(np.float32) / 32768.0
            step = math.gcd(SAMPLE_RATE, self.rate)
            audio = resample_poly(audio, SAMPLE_RATE // step, self.rate // step).astype(np.float32)
            return Utterance(np.clip(audio, -1, 1), sorted(self.events))


def _by_file(voice: str) -> str:
    """The library knows some voices only by file ("en-gb" is the file gmw/en); the command
    line's voice table maps a language to its file."""
    language, _, variant = voice.partition("+")
    table = subprocess.run([espeak_executable(), f"--voices={language}"], capture_output=True, text=True).stdout
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[1] == language:
            return fields[4] + ("+" + variant if variant else "")
    return voice


_engine: _Espeak | None = None


def speak(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> Utterance:
    """Synthesize `text`; the phonemes come with the times at which the audio says them."""
    global _engine
    if _engine is None:
        _engine = _Espeak()
    return _engine.speak(text, voice, speed, pitch)
