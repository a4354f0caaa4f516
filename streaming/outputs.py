"""Copies of a call's outgoing media (the avatar's frames and the re-timed voice, exactly as the
paced tracks send them) pushed to an RTMP server or recorded to an mp4 (`avatar.video.Mp4Writer`).

Each output encodes on a thread of its own, fed through a queue the event loop never waits on. An
output that falls behind (more than BACKLOG_S of media waiting) or whose writer fails (the RTMP
server went away, the disk is full) stops: it reports why once and the call goes on without it. A
recording that stops early is still finalised with what it has.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from avatar.video import Mp4Writer, is_stream_url

from .protocol import ProtocolError

log = logging.getLogger(__name__)

BACKLOG_S = 2.0  # media waiting for the encoder beyond this: the output is behind and stops
# A call's end waits this long for an output to encode what is queued and finish (a live output's
# network waits end within avatar.video.NET_TIMEOUT_S); past it, it logs output_stuck and goes on.
CLOSE_TIMEOUT_S = 5.0


def check_caller_rtmp(config, url: str | None) -> None:
    """A caller's own RTMP URL (the offer's 'rtmp') must start with one of the server's --rtmp-allow."""
    if url is not None and not any(url.startswith(prefix) for prefix in config.rtmp_allow):
        raise ProtocolError("bad_message", "this server does not push to RTMP URLs of the caller's choosing"
                            if not config.rtmp_allow else "'rtmp' must start with one the server allows: "
                            + ", ".join(MediaOutput.hide_key(prefix) for prefix in config.rtmp_allow))


def open_outputs(config, call_id: str, caller_rtmp: str | None, fps: int, size: tuple[int, int],
                 voice_rate: int, report: Callable[[str, str], None]) -> list["MediaOutput"]:
    """The call's outputs, started: the server's --rtmp-url and --record, and the caller's own URL."""
    targets = []
    if config.rtmp_url:
        targets.append(("rtmp", config.rtmp_url.replace("{call}", call_id)))
    if caller_rtmp:
        targets.append(("rtmp", caller_rtmp))
    if config.record_dir is not None:
        targets.append(("record", str(Path(config.record_dir) / f"{call_id}.mp4")))
    outputs = [MediaOutput(kind, target, fps, size, voice_rate, call_id, report) for kind, target in targets]
    for output in outputs:
        output.start()
    return outputs


class MediaOutput:
    """One output of one call. The tracks call `video` and `audio` on the event loop (they never
    block); `close` (blocking: run it off the loop) finalises the file or stream and ends the thread.

    Timestamps are the call's: frame `index` at 1/fps, voice sample `start` at `voice_rate`, on the
    same media clock. The output starts at its first frame; voice before it is dropped. It keeps a
    constant frame rate: frames the call skipped (it jumps ahead after a pause) repeat the last one, a gap
    in the voice (or a late start) is silence, and the voice is padded to the last frame's end."""

    def __init__(self, kind: str, target: str, fps: int, size: tuple[int, int], voice_rate: int,
                 call_id: str, report: Callable[[str, str], None]):
        self.kind, self.target = kind, target
        self.fps, self.size, self.voice_rate = fps, size, voice_rate
        self.call_id = call_id
        self.report = report  # (kind, reason), called once, on the output's thread or the loop
        self.failed: str | None = None
        self.frames = 0
        self._samples_per_frame = voice_rate // fps
        self._backlog = int(BACKLOG_S * fps * 3)  # items: a frame and two 20 ms voice chunks per 40 ms
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"output-{kind}-{call_id}", daemon=True)
        self._origin: int | None = None  # the first frame's index
        self._last_pts = -1
        self._last_image: np.ndarray | None = None
        self._held: list[tuple[np.ndarray, int]] = []  # voice that came before the first frame
        self._voice_end = 0  # samples written, from the first frame's start

    @staticmethod
    def hide_key(target: str) -> str:
        """A target for logs and messages: an RTMP URL without its stream key."""
        return target.rsplit("/", 1)[0] + "/…" if is_stream_url(target) else target

    @property
    def shown_target(self) -> str:
        return self.hide_key(self.target)

    # ---- on the event loop ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def video(self, image: np.ndarray, index: int) -> None:
        self._put(("video", image, index))

    def audio(self, pcm: np.ndarray, start: int) -> None:
        self._put(("audio", pcm, start))

    def _put(self, item) -> None:
        if self.failed is not None:
            return
        if self._queue.qsize() > self._backlog:
            self._fail(f"behind: more than {BACKLOG_S:g} s of media waiting for the encoder")
            return
        self._queue.put(item)

    # ---- blocking -------------------------------------------------------------------------------
    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("call=%s event=output_stuck output=%s target=%s timeout_s=%g", self.call_id, self.kind,
                        self.shown_target, timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- the thread -----------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        if self.failed is None:
            self.failed = reason = reason.replace(self.target, self.shown_target)
            log.warning("call=%s event=output_failed output=%s target=%s reason=\"%s\"", self.call_id, self.kind,
                        self.shown_target, reason)
            self.report(self.kind, reason)

    def _run(self) -> None:
        writer = None
        ended = False  # close() was asked for
        try:
            while (item := self._queue.get()) is not None:
                if self.failed is None:
                    if writer is None:  # opened with the first media: a call that never had any leaves nothing
                        writer = Mp4Writer(self.target, self.fps, self.size, audio_rate=self.voice_rate)
                    self._write(writer, *item)
            ended = True
            if writer is None:
                return
            self._pad_voice(writer, (self._last_pts + 1) * self._samples_per_frame)
            writer.close()
            log.info("call=%s event=output_closed output=%s target=%s frames=%d seconds=%.2f", self.call_id,
                     self.kind, self.shown_target, self.frames, self.frames / self.fps)
        except Exception as exc:  # av raises assorted errors (OSError, av.FFmpegError, ValueError)
            self._fail(f"{type(exc).__name__}: {exc}")
            if writer is not None:
                try:
                    writer.container.close()
                except Exception:  # the container is freed with the writer anyway
                    pass
            while not ended and self._queue.get() is not None:  # let go of what is queued, until close()
                pass

    def _write(self, writer: Mp4Writer, kind: str, data: np.ndarray, at: int) -> None:
        if kind == "audio":
            if self._origin is None:
                self._held = [*self._held[-self._backlog:], (data, at)]
            else:
                self._write_voice(writer, data, at)
            return
        if self._origin is None:
            self._origin = at
            for pcm, start in self._held:
                self._write_voice(writer, pcm, start)
            self._held.clear()
        pts = at - self._origin
        if pts <= self._last_pts:
            return
        for gap in range(self._last_pts + 1, pts):  # frames the call skipped (a paused process): the last one
            writer.write(self._last_image, gap)
        writer.write(data, pts)
        self._last_pts, self._last_image = pts, data
        self.frames = pts + 1

    def _write_voice(self, writer: Mp4Writer, pcm: np.ndarray, start: int) -> None:
        start -= self._origin * self._samples_per_frame
        if start + len(pcm) <= self._voice_end:
            return
        if start < self._voice_end:  # before the first frame (or overlapping): drop that part
            pcm, start = pcm[self._voice_end - start:], self._voice_end
        self._pad_voice(writer, start)
        writer.write_audio(pcm, start)
        self._voice_end = start + len(pcm)

    def _pad_voice(self, writer: Mp4Writer, until: int) -> None:
        if until > self._voice_end:
            writer.write_audio(np.zeros(until - self._voice_end, np.float32), self._voice_end)
            self._voice_end = until
