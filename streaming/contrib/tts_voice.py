"""TTS audio as a live voice: bursts of synthesized speech in, the call-timeline audio an engine
worker takes (one video frame of it at a time, as the clock goes), and the same TTS audio back out,
byte for byte, filed under the video frame that shows it, with whatever came after it in the stream
(the TTS's words, its stop) kept behind it. Also where each utterance stopped playing.

Framework-free: `streaming.contrib.pipecat` drives it from Pipecat frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatar.audio import Resampler
from avatar.errors import AudioError
from models.audio_features import SAMPLE_RATE, SAMPLES_PER_FRAME


@dataclass(frozen=True)
class SpeechPlayed:
    """Where one TTS utterance stopped playing: `played_to_s` seconds of its audio were played (all of
    it unless `cut`), ending at `at_s` on the avatar's media clock."""
    context_id: str | None
    played_to_s: float
    cut: bool
    at_s: float


@dataclass
class Speech:
    """TTS audio: its 16-bit bytes as the TTS made them, and (queued) its 16 kHz samples for the engine."""
    audio: bytes
    sample_rate: int
    channels: int
    context_id: str | None
    pcm: np.ndarray | None = None  # 16 kHz mono float32
    fed: int = 0  # samples of `pcm` fed so far
    sent: int = 0  # samples (per channel) of `audio` given out so far

    def take(self, n: int) -> tuple[np.ndarray, bytes]:
        """The next `n` engine samples and the share of the original audio they cover."""
        width = 2 * self.channels
        total = len(self.audio) // width
        a, b = self.fed, min(self.fed + n, len(self.pcm))
        end = total if b == len(self.pcm) else min(total, round(b * total / len(self.pcm)))
        pcm, audio = self.pcm[a:b], self.audio[self.sent * width:end * width]
        self.fed, self.sent = b, end
        return pcm, audio


@dataclass
class _Utterance:
    context_id: str | None
    start: int | None = None  # timeline sample of its first audio
    end: int | None = None  # one past its last (known once the TTS stopped and that was fed)

    def played(self, at: int, cut: bool) -> SpeechPlayed:
        return SpeechPlayed(self.context_id, round((at - self.start) / SAMPLE_RATE, 3), cut, round(at / SAMPLE_RATE, 3))


@dataclass(frozen=True)
class _Passenger:
    """In the queue: something that came after the audio before it, and goes out after it."""
    item: object


@dataclass(frozen=True)
class _Mark:
    """In the queue: a TTS utterance starts (or ends) here."""
    starts: bool
    context_id: str | None


class TtsVoice:
    """`add` TTS audio between `started` and `stopped`, `follow` anything that must stay behind it;
    `feed_frame` gives the next frame's 640 samples to `push_audio(pcm, speech)` (queued speech, else
    silence); `out_for(frame)` is the TTS audio that frame shows and what followed it; `ended_by(frame)`
    the utterances that have played out once it is shown; `interrupt(frame)` drops everything from
    that frame on and says where each utterance stopped."""

    def __init__(self, push_audio: Callable[[np.ndarray, bool], None]):
        self._push_audio = push_audio
        self._resampler = Resampler(SAMPLE_RATE)
        self._queue: deque[Speech | _Mark | _Passenger] = deque()  # not fed yet
        self.fed = 0  # timeline samples fed (whole video frames)
        self._out: dict[int, list] = {}  # video frame -> the TTS audio it shows (Speech), and what followed
        self._utterance: _Utterance | None = None  # the one being fed
        self._ending: deque[_Utterance] = deque()  # fed to their end, not yet played out

    @property
    def pending(self) -> bool:
        """Audio still to feed or to give out, or an utterance still to report."""
        return bool(self._queue or self._out or self._ending)

    def queued_s(self) -> float:
        return sum(len(s.pcm) - s.fed for s in self._queue if isinstance(s, Speech)) / SAMPLE_RATE

    # ---- in ---------------------------------------------------------------------------------------
    def started(self, context_id: str | None) -> None:
        self._queue.append(_Mark(True, context_id))

    def stopped(self, context_id: str | None) -> None:
        tail = self._resampler.flush()
        if len(tail):  # after the audio it belongs to
            last = self._queue[-1] if self._queue else None
            if isinstance(last, Speech):
                last.pcm = np.concatenate([last.pcm, tail])
            else:
                self._queue.append(Speech(b"", SAMPLE_RATE, 1, None, tail))
        self._queue.append(_Mark(False, context_id))

    def add(self, audio: bytes, sample_rate: int, channels: int, context_id: str | None) -> None:
        """16-bit PCM, any rate; AudioError (and nothing queued) if it is not usable."""
        if channels < 1 or len(audio) % (2 * channels):
            raise AudioError(f"{len(audio)} bytes are not whole {channels}-channel 16-bit samples")
        pcm = self._resampler.push(np.frombuffer(audio, np.int16).reshape(-1, channels), sample_rate)
        self._queue.append(Speech(audio, sample_rate, channels, context_id, pcm))

    def follow(self, item) -> bool:
        """Keep `item` behind the audio queued before it (it comes out after that audio); False when
        there is none, and it can go on now."""
        if self._queue:
            self._queue.append(_Passenger(item))
        elif self._out:
            self._out[max(self._out)].append(item)
        else:
            return False
        return True

    # ---- to the engine -------------------------------------------------------------------------------
    def feed_frame(self) -> None:
        """One video frame's worth of timeline audio to the engine: queued TTS audio, else silence."""
        index = self.fed // SAMPLES_PER_FRAME
        missing = SAMPLES_PER_FRAME
        while missing and self._queue:
            item = self._queue[0]
            if isinstance(item, (_Mark, _Passenger)):
                self._queue.popleft()
                if isinstance(item, _Mark):
                    self._mark(item)
                else:
                    self._out.setdefault(index, []).append(item.item)
                continue
            if self._utterance is None:  # audio without a start before it
                self._utterance = _Utterance(item.context_id)
            if self._utterance.start is None:
                self._utterance.start = self.fed
            pcm, audio = item.take(missing)
            if item.fed == len(item.pcm):
                self._queue.popleft()
            if len(pcm):
                self._push_audio(pcm, True)
                self.fed += len(pcm)
                missing -= len(pcm)
            if audio:
                self._file(index, Speech(audio, item.sample_rate, item.channels, item.context_id))
        if missing:
            self._push_audio(np.zeros(missing, np.float32), False)
            self.fed += missing

    def _file(self, index: int, piece: Speech) -> None:
        pieces = self._out.setdefault(index, [])
        last = pieces[-1] if pieces else None
        if isinstance(last, Speech) and (last.sample_rate, last.channels, last.context_id) == (
                piece.sample_rate, piece.channels, piece.context_id):
            last.audio += piece.audio
        else:
            pieces.append(piece)

    def _mark(self, mark: _Mark) -> None:
        ongoing = self._utterance
        if ongoing is not None and (mark.starts or ongoing.start is not None):
            ongoing.end = self.fed
            if ongoing.start is not None:
                self._ending.append(ongoing)
            self._utterance = None
        if mark.starts:
            self._utterance = _Utterance(mark.context_id)

    # ---- out ------------------------------------------------------------------------------------------
    def out_for(self, index: int) -> list:
        return self._out.pop(index, [])

    def ended_by(self, index: int) -> list[SpeechPlayed]:
        end = (index + 1) * SAMPLES_PER_FRAME
        done = []
        while self._ending and self._ending[0].end <= end:
            utterance = self._ending.popleft()
            done.append(utterance.played(utterance.end, cut=False))
        return done

    def interrupt(self, index: int) -> list[SpeechPlayed]:
        """Drop every sample from frame `index` on (queued or fed); where each utterance stopped."""
        cut = index * SAMPLES_PER_FRAME
        self._queue.clear()
        self._out = {i: pieces for i, pieces in self._out.items() if i < index}
        self._resampler = Resampler(SAMPLE_RATE)
        stopped = [u for u in (*self._ending, self._utterance) if u is not None and u.start is not None]
        self._ending.clear()
        self._utterance = None
        out = []
        for utterance in stopped:
            end = cut if utterance.end is None else utterance.end  # None: the TTS was still speaking
            out.append(utterance.played(max(utterance.start, min(cut, end)), cut=utterance.end is None or end > cut))
        return out
