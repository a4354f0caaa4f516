"""Voice activity: silero-vad on 512-sample (32 ms) chunks of the 16 kHz timeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.audio_features import SAMPLE_RATE

from .events import VadEvent, VadKind

CHUNK = 512


@dataclass
class Chunk:
    start: int  # timeline position (samples)
    pcm: np.ndarray  # float32, CHUNK samples
    speech: bool


def load_vad_model():
    """A fresh silero-vad model (JIT, shipped inside the wheel: nothing is downloaded)."""
    import warnings

    from silero_vad import load_silero_vad

    with warnings.catch_warnings():  # its loader uses deprecated importlib/jit calls; not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad()


def single_threaded() -> None:
    """Thread initializer for the VAD's thread: silero is tiny, and torch's thread count is per
    thread here (OpenMP), so 1 keeps it from fighting the engine for the cores."""
    torch.set_num_threads(1)


class SpeechDetector:
    """Feed any amount of timeline audio; get back whole chunks marked speech/silence, and events."""

    def __init__(self, model=None, threshold: float = 0.5, min_silence_ms: int = 150, speech_pad_ms: int = 30):
        from silero_vad import VADIterator

        self._iterator = VADIterator(model if model is not None else load_vad_model(), threshold=threshold,
                                     sampling_rate=SAMPLE_RATE, min_silence_duration_ms=min_silence_ms,
                                     speech_pad_ms=speech_pad_ms)
        self._pending = np.zeros(0, np.float32)
        self.position = 0  # timeline position of the next chunk
        self.speaking = False

    def completes_chunk(self, samples: int) -> bool:
        """Whether pushing this many samples makes a whole chunk (else push only stores them)."""
        return len(self._pending) + samples >= CHUNK

    def push(self, pcm: np.ndarray) -> tuple[list[Chunk], list[VadEvent]]:
        data = np.concatenate([self._pending, np.asarray(pcm, np.float32)])
        whole = len(data) // CHUNK * CHUNK
        self._pending = data[whole:]
        chunks, events = [], []
        with torch.inference_mode():
            for i in range(0, whole, CHUNK):
                piece = data[i:i + CHUNK]
                result = self._iterator(torch.from_numpy(piece.copy()))
                if result and "start" in result:
                    self.speaking = True
                    events.append(VadEvent(VadKind.SPEECH_START, int(result["start"])))
                elif result and "end" in result:
                    self.speaking = False
                    events.append(VadEvent(VadKind.SPEECH_END, int(result["end"])))
                chunks.append(Chunk(self.position, piece, self.speaking or bool(self._iterator.triggered)))
                self.position += CHUNK
        return chunks, events
