"""A session's input side: its audio timeline, the VAD's speech marks, and the audio each window needs.

Window k of a profile generates latent frames [kN, (k+1)N); each latent frame reads its own frames'
audio tokens plus `behind` tokens before and the look-ahead tokens after, so window k can run once
the timeline holds the samples its last latent frame reads (`samples_needed`).
"""

from __future__ import annotations

import numpy as np

from models.audio_features import SAMPLES_PER_FRAME, latent_token_window

from .audio import AudioTimeline, Resampler
from .profiles import Profile

# Energy gate used when no VAD marks speech: a frame is speech above this RMS (dBFS).
SPEECH_DBFS = -45.0


class SessionAudio:
    """The timeline a session's windows read, with the VAD's speech marks on it (if any)."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.timeline = AudioTimeline()
        self._resampler = Resampler(profile.sample_rate)
        self._speech_marks: list[tuple[int, int, bool]] = []  # (s0, s1, speech) from a VAD
        self._silenced_to = 0  # an interrupt silenced the timeline up to here: no speech mark before it

    def push(self, pcm: np.ndarray, sample_rate: int, speech: bool | None = None) -> None:
        samples = self._resampler.push(pcm, sample_rate)
        if speech is not None and len(samples):
            self._speech_marks.append((self.timeline.end, self.timeline.end + len(samples), bool(speech)))
        self.timeline.append(samples)

    def mark(self, s0: int, s1: int, speech: bool) -> None:
        """The VAD's verdict on timeline samples [s0, s1), given after their audio (a live caller)."""
        if speech:
            s0 = max(s0, self._silenced_to)
        if s1 > s0:
            self._speech_marks.append((s0, s1, bool(speech)))

    def flush(self) -> None:
        """The resampler's tail onto the timeline (the end of the input)."""
        self.timeline.append(self._resampler.flush())

    def silence_from(self, s0: int) -> None:
        """Speech from sample s0 on becomes silence (an interrupt)."""
        self.timeline.silence_from(s0)
        self._silenced_to = self.timeline.end
        self._speech_marks = [(a, min(b, s0), sp) for a, b, sp in self._speech_marks if a < s0]

    def token_range(self, first_latent: int, last_latent: int) -> tuple[int, int]:
        p = self.profile
        behind = p.audio_window[0]
        fpl, tpf = p.codec.frames_per_latent, p.audio_encoder.tokens_per_frame
        j0 = latent_token_window(first_latent, fpl, tpf, behind, p.ahead_needed)[0]
        j1 = latent_token_window(last_latent, fpl, tpf, behind, p.ahead_needed)[1]
        return j0, j1

    def samples_needed(self, window: int) -> int:
        n = self.profile.new_latents
        j0, j1 = self.token_range(window * n, (window + 1) * n - 1)
        return self.profile.audio_encoder.token_span(j0, j1)[1]

    def windows_ready(self, window: int) -> int:
        """Windows from `window` on whose audio (look-ahead included) is all in."""
        # each window needs the same amount of audio more than the one before: count them at once
        # (a live stream has about one ready; a file pushed whole has hundreds), then check the edge
        first, end = self.samples_needed(window), self.timeline.end
        per_window = self.samples_needed(window + 1) - first
        count = 0 if first > end else 1 + (end - first) // per_window
        while count and self.samples_needed(window + count - 1) > end:
            count -= 1
        while self.samples_needed(window + count) <= end:
            count += 1
        return count

    def frame_speech(self, f0: int, f1: int) -> np.ndarray:
        """Speech flag per video frame in [f0, f1): the VAD's marks, else an energy gate (also for
        frames past the last mark: audio whose verdict has not come yet)."""
        s0, s1 = f0 * SAMPLES_PER_FRAME, f1 * SAMPLES_PER_FRAME
        if not self._speech_marks:
            return self._loud(f0, f1)
        flags = np.zeros(f1 - f0, bool)
        for a, b, speech in self._speech_marks:
            if speech and b > s0 and a < s1:
                lo = max(a - s0, 0) // SAMPLES_PER_FRAME
                hi = -(-(min(b, s1) - s0) // SAMPLES_PER_FRAME)
                flags[lo:hi] = True
        marked_to = max(b for _, b, _ in self._speech_marks)
        unknown = max(marked_to - s0, 0) // SAMPLES_PER_FRAME  # the first frame not wholly marked
        if unknown < f1 - f0:
            flags[unknown:] |= self._loud(f0 + unknown, f1)
        return flags

    def _loud(self, f0: int, f1: int) -> np.ndarray:
        audio = self.timeline.read(f0 * SAMPLES_PER_FRAME, f1 * SAMPLES_PER_FRAME).reshape(f1 - f0, SAMPLES_PER_FRAME)
        rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2, axis=1) + 1e-12)
        return 20 * np.log10(rms) > SPEECH_DBFS

    def discard_old(self, window: int, frames_done: int) -> None:
        """Drop what no window from `window` on reads (its context frames' token window included)."""
        next_first = window * self.profile.new_latents - self.profile.context_latents
        j0 = self.token_range(max(next_first, 0), max(next_first, 0))[0]
        self.timeline.discard_before(min(self.profile.audio_encoder.token_span(j0, j0 + 1)[0],
                                         (frames_done - 1) * SAMPLES_PER_FRAME))
        self._speech_marks = [m for m in self._speech_marks if m[1] > self.timeline.start]
