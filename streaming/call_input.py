"""A call's media in: the caller's audio track -> timeline audio (`AudioIntake`) -> the generation
worker (at once) and the delayed voice; the same audio -> the VAD, whose speech marks follow it to the
worker and whose events become messages to the caller.

Input that piles up while this loop is starved of CPU is cut to MAX_INPUT_BACKLOG frames (aiortc
would queue it all: memory, and CPU spent on audio the clock has passed). Input that stops while the caller's track is still live is filled with silence, so the face idles.
(A caller from which nothing at all arrives any more, audio or RTCP, is ended by the media watchdog,
streaming/liveness.py, which watches every peer connection the same way.)
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from models.audio_features import SAMPLE_RATE, SAMPLES_PER_FRAME

from .events import VadEvent, VadKind
from .peer import drop_input_backlog

if TYPE_CHECKING:
    from .call import Call


STARVED_POLL_S = 0.1  # how often a silent input is checked (and filled with silence)
MAX_INPUT_BACKLOG = 25  # decoded input frames (aiortc's, 20 ms each) kept waiting: half a second


async def intake_loop(call: "Call", track) -> None:
    # No exception passes through this frame (asyncio.wait, task.exception()): one that did would
    # tie the frame, and so the call, into a reference cycle that outlives the call.
    # The track exists once the offer is applied; the clock starts with the media path, so a call
    # that never connects makes no window (of silence) before the signaling deadline ends it.
    if not await connects(call):
        return
    call.clock.start()
    receiving: asyncio.Task | None = None
    try:
        while not call.closed.is_set():
            if receiving is None and track.readyState != "live":  # no more input
                if not await closes_within(call.closed, STARVED_POLL_S):
                    await take_audio(call, call.intake.fill_silence())  # keeps the face idling
                continue
            receiving = receiving or asyncio.ensure_future(track.recv())
            done, _ = await asyncio.wait({receiving}, timeout=STARVED_POLL_S)
            if not done:  # starved: silence keeps the timeline on the clock
                await take_audio(call, call.intake.fill_silence())
                continue
            call.intake.dropped += drop_input_backlog(track, MAX_INPUT_BACKLOG)
            finished, receiving = receiving, None
            if not finished.cancelled() and finished.exception() is None:  # else the track ended
                await take_audio(call, call.intake.push(finished.result()))
    finally:  # also when close cancels this loop: no recv() left pending on the track
        if receiving is not None:
            receiving.cancel()


async def take_audio(call: "Call", pcm) -> None:
    if not len(pcm):
        return
    call.voice.append(pcm)
    call.worker.push_audio(pcm, None)  # at once: the VAD's verdict follows as marks
    if call.detector.completes_chunk(len(pcm)):
        chunks, events = await call.loop.run_in_executor(call.executor, call.detector.push, pcm)
    else:  # no whole chunk yet, nothing for the model: not worth a hop to the VAD's thread
        chunks, events = call.detector.push(pcm)
    for chunk in chunks:  # before the events: an interrupt the caller sends on a speechstart finds them
        call.worker.mark_speech(chunk.start, chunk.start + len(chunk.pcm), chunk.speech)
    for event in events:
        report_vad(call, event)


def input_t(call: "Call", sample: int) -> float:
    """A call sample on the caller's clock: seconds since the first audio received."""
    return round((sample - (call.intake.input_offset or 0)) / SAMPLE_RATE, 3)


def report_vad(call: "Call", event: VadEvent) -> None:
    msg = {"type": "vad", "event": str(event.kind), "t": round(event.seconds, 3),
           "input_t": input_t(call, event.sample), "frame": event.sample // SAMPLES_PER_FRAME,
           "shows_in_s": round(call.clock.sample_due(event.sample) - time.monotonic(), 3)}
    if event.kind is VadKind.SPEECH_START:
        call.last_vad_lag = call.clock.media_now() - event.seconds
        call.utterances.started()
    else:
        played_to, cut = call.utterances.ended(event.sample)
        msg |= {"played_to": round(played_to / SAMPLE_RATE, 3), "played_to_input_t": input_t(call, played_to),
                "cut": cut}
    call.vad_events.append(msg)
    call.tell(msg)


async def connects(call: "Call") -> bool:
    """Wait until the media path is up (True) or the call ends first (False)."""
    waiting = {asyncio.ensure_future(call.connected.wait()), asyncio.ensure_future(call.closed.wait())}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in waiting:
        task.cancel()
    return call.connected.is_set() and not call.closed.is_set()


async def closes_within(closed: asyncio.Event, seconds: float) -> bool:
    """Sleep, but wake when the call closes: the call's loops end by themselves rather than by
    cancellation, so no cancelled frame (holding the call) is left in a reference cycle."""
    waiting = asyncio.ensure_future(closed.wait())
    done, _ = await asyncio.wait({waiting}, timeout=seconds)
    waiting.cancel()
    return bool(done)
