"""The avatar as a Pipecat service, in a real local Pipecat pipeline (Pipeline + PipelineTask +
WorkerRunner): espeak-ng speaks through a TTS service, the avatar service makes the frames, a sink
records what reaches the end of the pipeline with arrival times.

The output delay is sized from a window's compute measured here (busy CI machines are slower than
real time), so every window is on time and the figures do not depend on the machine's speed."""

import asyncio
import io
import math
import shutil
import threading
import time
import wave

import numpy as np
import pytest
import torch

pytest.importorskip("pipecat")
if shutil.which("espeak-ng") is None:
    pytest.skip("needs espeak-ng (apt-get install espeak-ng)", allow_module_level=True)

from pipecat.frames.frames import (EndFrame, InterruptionFrame, OutputImageRawFrame, TTSAudioRawFrame,  # noqa: E402
                                   TTSSpeakFrame, TTSStoppedFrame, TTSTextFrame)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.task import PipelineParams, PipelineTask  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.services.settings import TTSSettings  # noqa: E402
from pipecat.services.tts_service import TTSService  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from avatar.profiles import load_profile  # noqa: E402
from avatar.samples import babble  # noqa: E402
from avatar.session import Session  # noqa: E402
from models.training.faces.identity import sample_identity  # noqa: E402
from models.training.faces.render import render_reference  # noqa: E402
from models.training.metrics import MOUTH_REGION  # noqa: E402
from streaming.contrib.pipecat import AvatarVideoService  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SHORT = "Hello there. How are you today?"
LONG = "This sentence is long enough to be cut off well before it ends, by a caller who barges in."


class EspeakTTSService(TTSService):
    """A local TTS: `espeak-ng --stdout` (22050 Hz), pushed as 20 ms frames, all at once (a TTS
    makes audio faster than real time)."""

    def __init__(self, **kwargs):
        super().__init__(sample_rate=22050, push_start_frame=True, push_stop_frames=True,
                         settings=TTSSettings(model=None, voice=None, language=None), **kwargs)

    async def run_tts(self, text: str, context_id: str):
        proc = await asyncio.create_subprocess_exec("espeak-ng", "--stdout", text, stdout=asyncio.subprocess.PIPE)
        data, _ = await proc.communicate()
        with wave.open(io.BytesIO(data)) as wav:
            rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
        step = rate // 50 * 2
        for i in range(0, len(pcm), step):
            yield TTSAudioRawFrame(pcm[i:i + step], rate, 1, context_id=context_id)


class Recorder(FrameProcessor):
    """Passes every frame on; keeps the downstream ones with their arrival time."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.frames: list[tuple[float, object]] = []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM:
            self.frames.append((time.monotonic(), frame))
        await self.push_frame(frame, direction)

    def of(self, kind):
        return [(t, f) for t, f in self.frames if isinstance(f, kind)]

    def audio_seconds(self) -> float:
        return sum(f.num_frames / f.sample_rate for _, f in self.of(TTSAudioRawFrame))


@pytest.fixture(scope="module")
def trained():
    """The shipped tiny model and a face identity it never trained on (as `avatar eval` uses)."""
    profile = load_profile("tiny", "cpu")
    face = render_reference(sample_identity(np.random.default_rng(424_242)), profile.resolution[0])
    return profile, face


def unhurried_allowance(profile, face, media_s: float) -> float:
    """An output delay long enough for every window of `media_s` seconds to be made in time here (by
    one thread, as the service is given)."""
    session = Session(profile, face)
    session.push_audio(babble(3 * session.window_latency_s + 1.0), 16000, speech=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        session.step(1)  # warm-up
        started = time.perf_counter()
        session.step(1)
        compute = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    window_s = session.frames_per_window / session.fps
    return 0.3 + 1.3 * compute * math.ceil(media_s / window_s)


async def run(profile, face, allowance: float, script):
    """Run [TTS, tap, avatar, sink] while `script(task, avatar, sink, reports)` queues frames; EndFrame ends it."""
    tts, tap, sink = EspeakTTSService(), Recorder(), Recorder()
    avatar = AvatarVideoService(profile=profile, image=face, compute_allowance_s=allowance, threads=1)
    reports = []

    @avatar.event_handler("on_speech_played")
    async def on_speech_played(service, played):
        reports.append((time.monotonic(), played))

    task = PipelineTask(Pipeline([tts, tap, avatar, sink]), params=PipelineParams(audio_out_sample_rate=24000))
    started = asyncio.Event()
    avatar.errors = []

    @task.event_handler("on_pipeline_error")
    async def on_error(task, frame):
        avatar.errors.append(frame.error)

    @task.event_handler("on_pipeline_started")
    async def on_started(task, frame):
        started.set()

    async def drive():
        try:
            await asyncio.wait_for(started.wait(), 120)
            await script(task, avatar, sink, reports)
        except BaseException:  # a failed check ends the pipeline too, so the test fails rather than hangs
            await task.cancel()
            raise
        await task.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    results = await asyncio.wait_for(asyncio.gather(runner.run(), drive(), return_exceptions=True), 240)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    assert avatar.worker is None  # its generation thread ended with the pipeline
    assert not [t for t in threading.enumerate() if t.name == f"gen-{avatar.name}"]
    return tap, sink, reports, avatar


async def until(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def images_by_index(sink, fps: int) -> dict[int, tuple[float, np.ndarray]]:
    out = {}
    for t, f in sink.of(OutputImageRawFrame):
        w, h = f.size
        out[round(f.pts * fps / 1e9)] = (t, np.frombuffer(f.image, np.uint8).reshape(h, w, 3))
    return out


def after_hold(sink, fps: int) -> list[int]:
    """After an interruption: the frames from the first that differs from the one held at the cut."""
    cut = sink.of(InterruptionFrame)
    images = images_by_index(sink, fps)
    after = sorted(i for i, (t, _) in images.items() if cut and t > cut[0][0] + 0.05)
    changed = [i for i in after if not np.array_equal(images[i][1], images[after[0]][1])]
    return [i for i in after if changed and i >= changed[0]]


def mouth_change(images: list[np.ndarray]) -> np.ndarray:
    """Mean absolute change of the mouth region from each frame to the next (grey levels)."""
    top, bottom, left, right = MOUTH_REGION
    h, w = images[0].shape[:2]
    crops = np.stack([im[int(top * h):int(bottom * h), int(left * w):int(right * w)].astype(np.float32).mean(axis=2)
                      for im in images])
    return np.abs(np.diff(crops, axis=0)).mean(axis=(1, 2))


async def test_tts_speech_comes_back_as_frames_at_25_fps_with_the_same_audio_re_timed(trained):
    profile, face = trained
    fps = profile.fps

    async def script(task, avatar, sink, reports):
        await asyncio.sleep(0.6)  # the face idles first
        await task.queue_frame(TTSSpeakFrame(SHORT))
        await until(lambda: reports, 200)
        await asyncio.sleep(0.8)  # and idles after

    tap, sink, reports, avatar = await run(profile, face, unhurried_allowance(profile, face, 4.5), script)
    heard_in = tap.of(TTSAudioRawFrame)
    heard_out = sink.of(TTSAudioRawFrame)
    speech_s = tap.audio_seconds()
    assert 1.2 < speech_s < 3.5

    # the same samples, at the same rate, and so the same duration
    assert b"".join(f.audio for _, f in heard_out) == b"".join(f.audio for _, f in heard_in)
    assert {f.sample_rate for _, f in heard_out} == {22050}
    # re-timed: played out in real time, the output delay after the TTS made it
    t_first, t_last = heard_out[0][0], heard_out[-1][0]
    assert abs((t_last - t_first) - speech_s) < 0.15, (t_last - t_first, speech_s)
    assert heard_out[0][0] - heard_in[0][0] > avatar.delay_s - 0.1

    # video: every frame index once, of the profile's size, 25 per second of wall time
    images = images_by_index(sink, fps)
    indices = sorted(images)
    assert indices == list(range(indices[0], indices[-1] + 1))
    assert all(f.size == (profile.resolution[1], profile.resolution[0]) and f.format == "RGB"
               and len(f.image) == profile.resolution[0] * profile.resolution[1] * 3
               for _, f in sink.of(OutputImageRawFrame))
    during = [i for i in indices if t_first <= images[i][0] <= t_last]
    assert abs(len(during) - (t_last - t_first) * fps) <= 2, (len(during), t_last - t_first)

    # the audio leaves with the frame that shows it (same pts, same moment)
    speech_frames = sorted({round(f.pts * fps / 1e9) for _, f in heard_out})
    assert speech_frames == list(range(speech_frames[0], speech_frames[-1] + 1))
    for t, f in heard_out:
        assert abs(images[round(f.pts * fps / 1e9)][0] - t) < 0.02

    # the mouth moves while it speaks and not in the silence around (medians: a window's seam is one
    # change in eight; the first window, after the placeholder, is left out)
    change = mouth_change([images[i][1] for i in indices])  # change[k]: indices[k] -> indices[k] + 1
    first, last = speech_frames[0] - indices[0], speech_frames[-1] - indices[0]
    talking = np.median(change[first:last])
    silent = np.median(np.concatenate([change[8:first - 1], change[last + 4:]]))
    print(f"mouth change (median grey levels per frame): talking {talking:.3f} silent {silent:.3f}")
    assert first > 12 and len(change) - last > 12
    assert talking > 2 * silent  # 2.96-6.5x measured; idle motion is not stillness

    # the TTS's words and its stop stay behind the audio they came after (here: all of it)
    for kind in (TTSTextFrame, TTSStoppedFrame):
        [(t, _)] = sink.of(kind)
        assert t_last - 0.005 <= t < t_last + 0.1, kind

    # the utterance played to its end
    [(_, played)] = reports
    assert not played.cut and abs(played.played_to_s - speech_s) < 0.05


async def test_an_interruption_stops_voice_and_mouth_at_once_and_says_where(trained):
    profile, face = trained
    fps = profile.fps
    marks = {}

    async def script(task, avatar, sink, reports):
        await asyncio.sleep(0.4)
        await task.queue_frame(TTSSpeakFrame(LONG))
        await until(lambda: sink.audio_seconds() > 1.0, 200)
        marks["asked"] = time.monotonic()
        await task.queue_frame(InterruptionFrame())
        await until(lambda: reports, 10)
        await until(lambda: len(after_hold(sink, fps)) > 18 and time.monotonic() > marks["asked"] + 1.2,
                    avatar.delay_s + 5)

    tap, sink, reports, avatar = await run(profile, face, unhurried_allowance(profile, face, 3.0), script)
    spoken_s = tap.audio_seconds()
    assert spoken_s > 4.0
    heard_out = sink.of(TTSAudioRawFrame)
    played_s = sink.audio_seconds()
    assert 1.0 < played_s < 1.5, played_s

    # the voice stops at once: nothing after the interruption reached the end of the pipeline
    [(t_cut, _)] = sink.of(InterruptionFrame)
    assert t_cut - marks["asked"] < 0.1
    assert heard_out[-1][0] < t_cut + 0.05
    # what was played is the start of what the TTS said, sample for sample
    played = b"".join(f.audio for _, f in heard_out)
    assert b"".join(f.audio for _, f in tap.of(TTSAudioRawFrame)).startswith(played)

    # the words came after all the audio: never heard, so never reach the assistant's context
    assert tap.of(TTSTextFrame) and not sink.of(TTSTextFrame)

    # where it stopped, as a voice agent needs it to truncate its transcript
    [(t_report, report)] = reports
    assert report.cut and abs(report.played_to_s - played_s) < 0.05, (report, played_s)
    assert t_report - t_cut < 0.1

    # the video goes on at 25 fps, and the mouth stops moving
    images = images_by_index(sink, fps)
    indices = sorted(images)
    assert indices == list(range(indices[0], indices[-1] + 1))
    after_cut = [i for i in indices if images[i][0] > t_cut + 0.05]
    seconds = images[after_cut[-1]][0] - images[after_cut[0]][0]
    assert seconds > 1.0 and abs(len(after_cut) - 1 - seconds * fps) <= 2
    # the face holds still, then moves again (idle) once the engine's windows without the speech come
    resumed = after_hold(sink, fps)[0]
    assert (resumed - after_cut[0]) / fps < avatar.delay_s + 0.5
    last_speech = round(heard_out[-1][1].pts * fps / 1e9)
    talking = np.median(mouth_change([images[i][1] for i in range(last_speech - 16, last_speech + 1)]))
    idle_change = mouth_change([images[i][1] for i in range(resumed, resumed + 18)])  # after the jump
    idle = np.median(idle_change)
    print(f"delay {avatar.delay_s:.2f} s, held {(resumed - after_cut[0]) / fps:.2f} s; mouth change (median grey "
          f"levels per frame): talking {talking:.3f}, idle after the hold {idle:.3f}")
    assert idle < talking / 2 and idle_change.max() > 0


async def test_a_face_that_cannot_be_used_is_reported_and_the_voice_still_goes_through(tiny_profile):
    async def script(task, avatar, sink, reports):
        await task.queue_frame(TTSSpeakFrame("Hello."))
        await until(lambda: sink.of(TTSStoppedFrame), 30)

    tap, sink, reports, avatar = await run(tiny_profile, b"not an image", 0.2, script)
    assert any("not a supported image" in error for error in avatar.errors), avatar.errors
    assert not avatar.is_usable
    assert [f.audio for _, f in sink.of(TTSAudioRawFrame)] == [f.audio for _, f in tap.of(TTSAudioRawFrame)] != []
    assert not sink.of(OutputImageRawFrame) and not reports


async def test_by_default_the_output_delay_is_measured_at_start_as_the_server_does(tiny_profile, face_image):
    from streaming import calibrate

    async def script(task, avatar, sink, reports):
        await task.queue_frame(TTSSpeakFrame("Hi."))

    tap, sink, reports, avatar = await run(tiny_profile, face_image, None, script)
    latency = Session(tiny_profile, face_image).window_latency_s
    assert latency + calibrate.INPUT_WAIT_S + calibrate.JITTER_S <= avatar.delay_s <= latency + calibrate.CEILING_S + 1e-9
    heard_in, heard_out = tap.of(TTSAudioRawFrame), sink.of(TTSAudioRawFrame)
    assert heard_in and b"".join(f.audio for _, f in heard_out) == b"".join(f.audio for _, f in heard_in)
