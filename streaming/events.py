"""Every message that crosses a seam inside a call, in one place.

- The worker's inbox (event loop -> generation thread): `AudioIn`, `SpeechMark`, `Interrupt`,
  `SetPrompt`, `SwapSession`, `Stop`.
- The worker's events (generation thread -> event loop, then the wire): `Interrupted`,
  `AvatarSwitched`, `Degraded`, `Failed`.
- The VAD's events: `VadEvent` with a `VadKind`.

The signaling messages (socket <-> server) live in `streaming/protocol.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from models.audio_features import SAMPLE_RATE


# ---- the worker's inbox -----------------------------------------------------------------------
@dataclass(frozen=True)
class AudioIn:
    """Timeline audio for the engine, 16 kHz mono float32: marked speech or not (a TTS voice), or
    None when its marks come later as `SpeechMark`s (a caller's audio, ahead of the VAD)."""
    pcm: np.ndarray
    speech: bool | None


@dataclass(frozen=True)
class SpeechMark:
    """The VAD's verdict on call timeline samples [start, end)."""
    start: int
    end: int
    speech: bool


@dataclass(frozen=True)
class Interrupt:
    """Drop the speech that has no frames yet (the caller barged in)."""


@dataclass(frozen=True)
class SetPrompt:
    text: str | None


@dataclass(frozen=True)
class SwapSession:
    """Continue with another engine session (a new avatar) from the next window on."""
    session: Any  # avatar.session.Session


@dataclass(frozen=True)
class Stop:
    """End the thread after the message in hand (the worker's only stop mechanism)."""


WorkerCommand = AudioIn | SpeechMark | Interrupt | SetPrompt | SwapSession | Stop


# ---- the worker's events ------------------------------------------------------------------------
@dataclass(frozen=True)
class Interrupted:
    """Speech from call sample `sample` on was dropped; the voice is muted from there.
    `dropped_speech`: some of the audio dropped was marked speech."""
    sample: int
    dropped_speech: bool

    @property
    def seconds(self) -> float:
        return self.sample / SAMPLE_RATE


@dataclass(frozen=True)
class AvatarSwitched:
    frame: int  # the first call frame the new avatar makes


@dataclass(frozen=True)
class Degraded:
    reason: str  # "catch-up": the call fell behind and jumped to the frame due now
    behind_s: float
    skipped_frames: int


@dataclass(frozen=True)
class Failed:
    message: str


WorkerEvent = Interrupted | AvatarSwitched | Degraded | Failed


# ---- voice activity ---------------------------------------------------------------------------
class VadKind(StrEnum):
    SPEECH_START = "speechstart"
    SPEECH_END = "speechend"


@dataclass(frozen=True)
class VadEvent:
    kind: VadKind
    sample: int  # timeline position where speech starts / ends

    @property
    def seconds(self) -> float:
        return self.sample / SAMPLE_RATE
