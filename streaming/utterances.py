"""Where each of the caller's utterances stops playing: at its end (the VAD's speechend), or where an
interrupt cut it. Voice agents truncate their transcript to this (`played_to`, `cut` on the wire)."""

from __future__ import annotations


class Utterances:
    """Fed the VAD's events and the interrupts, in the order the call sees them (call samples)."""

    def __init__(self):
        self.speaking = False
        self._count = 0  # utterances started so far
        self._asked_in: int | None = None  # the utterance in progress when an interrupt was asked for
        self._cut_at: int | None = None  # where an interrupt cut the utterance in progress
        self._last_end = 0  # where the last finished utterance ended

    def started(self) -> None:
        self.speaking, self._count, self._cut_at = True, self._count + 1, None

    def interrupt_asked(self) -> None:
        self._asked_in = self._count if self.speaking else None

    def interrupted(self, sample: int, dropped_speech: bool) -> bool:
        """An interrupt took effect from `sample` (the worker dropped speech-marked audio from there
        on, or not): whether it cut an utterance short."""
        in_progress = self.speaking and self._asked_in == self._count
        cut = dropped_speech and (in_progress or self._last_end > sample)
        if cut and in_progress and self._cut_at is None:
            self._cut_at = sample
        return cut

    def ended(self, sample: int) -> tuple[int, bool]:
        """The utterance ended at `sample`: where it plays up to, and whether an interrupt cut it."""
        cut_at, self._cut_at, self.speaking, self._last_end = self._cut_at, None, False, sample
        if cut_at is None or cut_at >= sample:
            return sample, False
        return cut_at, True
