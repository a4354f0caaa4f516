"""A session: an audio timeline and a reference image in, a timeline of frames out, window by window.

Window k generates latent frames [kN, (k+1)N) (4 video frames each) in one DiT sequence laid out as
[reference | the last C latents of window k-1 (clean context) | N new latents]. Reference and context
are given (mask 1, timestep 0, their latents in the known channels); only the new latents are
sampled (the layout: models/window_input.py). The decoder continues its own state, so every frame is
decoded exactly once. The audio side (timeline, speech marks, the audio a window needs) is
avatar/session_audio.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models.audio_features import SAMPLE_RATE, SAMPLES_PER_FRAME
from models.dit import CrossContext
from models.echomimic_inputs import face_token_mask, window_audio
from models.sampler import GuidancePlan, dropped, flow_sigmas, forward_count, sample
from models.window_input import WindowInput, denoiser

from .errors import ProfileError
from .photo import open_reference
from .profiles import Profile
from .session_audio import SessionAudio

log = logging.getLogger(__name__)

@dataclass
class Frame:
    index: int
    pts: float  # seconds on the session's media clock; frame i shows samples [640 i, 640 (i+1))
    image: np.ndarray  # HxWx3 uint8 RGB
    speech: bool
    window: int


@dataclass(frozen=True)
class WindowResult:
    """What one window made: its frames (session indices [first_frame, first_frame + frames_per_window),
    fewer at the end of a finished stream) and how it was made."""
    window: int
    first_frame: int
    frames: list[Frame]
    steps: int
    idle: bool  # no speech in the window: the cheap idle path
    compute_s: float
    forwards: int  # DiT forward passes
    context_latents: int
    decode_s: float = 0.0  # of compute_s, the decoder's (the portrait profile: rendering)
    decode_cpu_s: float = 0.0  # the same in this thread's CPU time (a shared machine's load left out)
    cpu_s: float = 0.0  # the whole window's CPU time in the thread that made it


class StreamPosition:
    """Where a stream is, shared by Session and RemoteSession (which keeps a mirror of its process's):
    the profile's timing, the next window and frame, and the audio timeline its windows read
    (`self._audio`, a SessionAudio)."""

    @property
    def frames_per_window(self) -> int:
        return self.profile.frames_per_window

    @property
    def lookahead_s(self) -> float:
        return self.profile.lookahead_s

    @property
    def window_latency_s(self) -> float:
        return self.frames_per_window / self.profile.fps + self.lookahead_s

    @property
    def fps(self) -> int:
        return self.profile.fps

    def _silence_unmade(self) -> int:
        """Speech that has no frames yet becomes silence; returns the sample it starts at."""
        s0 = self.frames_done * SAMPLES_PER_FRAME
        self._audio.silence_from(s0)
        return s0

    def _advance(self, window: int) -> None:
        """The next window is `window`: what no window from there on reads is dropped."""
        self.window_index = window
        self.frames_done = window * self.frames_per_window
        self._audio.discard_old(self.window_index, self.frames_done)


class Session(StreamPosition):
    """One avatar's stream: push audio (any rate) as it comes, take frames window by window.

    `push_audio` appends to the timeline; `windows_ready` says how many windows have all their audio
    (look-ahead included); `run_window` makes the next one and returns a `WindowResult`; `step` runs
    several and returns their frames; `finish` ends the input and makes the rest. `interrupt` turns
    speech that has no frames yet into silence; `skip` passes over windows a live caller no longer
    needs. Not thread-safe: one thread drives a session.
    """

    def __init__(self, profile: Profile, image, prompt: str | None = None, seed: int = 0,
                 output_mode: str = "crop"):
        self.profile = profile
        self.seed = int(seed)
        self.reference = open_reference(profile, image, output_mode)
        self._audio = SessionAudio(profile)
        self.timeline = self._audio.timeline
        self.finished = False
        self.window_index = 0
        self.frames_done = 0
        self._end_frame: int | None = None
        self._context: torch.Tensor | None = None  # (1, C, c, h, w)
        self.last_window: WindowResult | None = None
        self.window_cpu_s = 0.0  # CPU seconds the window being made has used so far (read as its frames come)

        dev, dtype = profile.device, profile.dtype
        with torch.inference_mode():
            ref = torch.from_numpy(self.reference.image).to(dev, dtype).permute(2, 0, 1)[None] / 127.5 - 1
            self._ref_latent = profile.codec.encode_reference(ref)  # (1, C, 1, h, w)
            fit = self.reference.fit  # a photo codec's state, made once per avatar
            self._decoder_state = profile.codec.start_stream(self._ref_latent, ref) if fit is None else fit
            self._grey = None  # inpaint: the known channels of the latents to generate
            if profile.conditioning == "inpaint":
                if not hasattr(profile.codec, "grey_latents"):
                    raise ProfileError(f"profile {profile.name!r}: inpaint conditioning needs the Wan VAE codec")
                self._grey = profile.codec.grey_latents(ref, profile.context_latents + profile.new_latents)
            image_tokens = profile.encode_image(self.reference.image)
            self._image_tokens = None if image_tokens is None else image_tokens.to(dev, dtype)
        self._contexts: dict[str, CrossContext] = {}
        self._steps_memo: dict = {}  # the DiT's step conditions per timestep layout (models.window_input.denoiser)
        self._face_mask = self._audio_mask(profile)
        self.set_prompt(prompt)

    def _audio_mask(self, profile: Profile) -> torch.Tensor | None:
        """The face-box mask of the DiT's audio output, once per reference (None: every token)."""
        box = self.reference.face_box
        if not profile.face_mask or box is None:
            return None
        cell = profile.codec.spatial_factor * profile.dit.config.patch_size[1]
        height, width = profile.resolution
        return face_token_mask(box, height, width, cell)[None].to(profile.device, profile.dtype)

    # ---- inputs -----------------------------------------------------------------------------
    def set_prompt(self, prompt: str | None) -> None:
        self.prompt = prompt or ""
        if prompt and self.profile.config.text.encoder == "none":
            log.info("profile %s has no text encoder; the prompt is ignored", self.profile.name)
        self._contexts.pop("cond", None)

    def _context_for(self, variant: str) -> CrossContext:
        # the text a guidance row is conditioned on (a row that drops only the audio keeps the prompt)
        drops = dropped(variant)
        key = "negative" if "negative" in drops else "empty" if "text" in drops else "cond"
        if key not in self._contexts:
            text = {"cond": self.prompt, "empty": "", "negative": self.profile.negative_prompt}[key]
            p = self.profile
            with torch.inference_mode():
                emb = p.encode_text(text).to(p.device, p.dtype)
                self._contexts[key] = p.dit.prepare_context(emb, self._image_tokens)
        return self._contexts[key]

    def push_audio(self, pcm: np.ndarray, sample_rate: int, speech: bool | None = None) -> None:
        """Append audio (any rate, mono or stereo, int16 or float); `speech` comes from a VAD if any."""
        if self.finished:
            raise RuntimeError("push_audio after finish()")
        self._audio.push(pcm, sample_rate, speech)

    def mark_speech(self, s0: int, s1: int, speech: bool) -> None:
        """A VAD's verdict on timeline samples [s0, s1) (profile rate), given after their audio:
        a window that runs before it decides speech by the energy gate."""
        self._audio.mark(s0, s1, speech)

    def interrupt(self) -> int:
        """Drop speech that has no frames yet: it becomes silence, so the next windows idle.
        Returns the timeline sample from which speech was dropped (the next window's first)."""
        return self._silence_unmade()

    def use_threads(self, count: int) -> None:
        """Torch threads to compute with from the next window on (per thread under OpenMP)."""
        torch.set_num_threads(count)

    def close(self) -> None:
        """The end of a live stream: nothing to release in this process (a RemoteSession ends its own)."""

    def finish(self) -> list[Frame]:
        """End of input: run what is left (the tail padded with silence), trimmed to the audio length."""
        self._audio.flush()
        self.finished = True
        self._end_frame = -(-self.timeline.end // SAMPLES_PER_FRAME)
        frames = []
        while self.frames_done < self._end_frame:
            frames += self._run_window().frames
        return frames

    # ---- scheduling ---------------------------------------------------------------------------
    def windows_ready(self) -> int:
        """Windows whose audio (look-ahead included) is all in, so they can run now."""
        if self.finished:
            return 0 if self.frames_done >= self._end_frame else -(-(self._end_frame - self.frames_done) // self.frames_per_window)
        return self._audio.windows_ready(self.window_index)

    def step(self, max_windows: int | None = 1, steps: int | None = None) -> list[Frame]:
        """Run up to `max_windows` ready windows, None: all of them (blocking); `steps` < the profile's degrades."""
        frames = []
        ready = self.windows_ready()
        for _ in range(ready if max_windows is None else min(max_windows, ready)):
            frames += self.run_window(steps).frames
        return frames

    def run_window(self, steps: int | None = None,
                   deliver: Callable[[list[Frame]], None] | None = None) -> WindowResult:
        """Make the next window (blocking); it must be ready. `steps` < the profile's degrades.
        `deliver` is handed each latent frame's video frames as soon as they are decoded (a live
        stream shows the first ones while the rest are made); the result has them all."""
        if self.windows_ready() < 1:
            raise RuntimeError("run_window: the next window's audio is not all in yet")
        return self._run_window(steps, deliver)

    def skip(self, windows: int) -> None:
        """Pass over the next `windows` windows without making them (a live stream that fell behind
        jumps to the frame due now). Context and decoder carry on from the last window made, so the
        picture jumps once; later windows are made as usual."""
        if windows < 1:
            return
        if self.finished:
            raise RuntimeError("skip after finish()")
        self._advance(self.window_index + windows)

    # ---- one window -----------------------------------------------------------------------
    def _run_window(self, steps: int | None = None,
                    deliver: Callable[[list[Frame]], None] | None = None) -> WindowResult:
        p = self.profile
        started, cpu_started = time.perf_counter(), time.thread_time()
        self.window_cpu_s = 0.0
        k, n = self.window_index, p.new_latents
        f0 = k * self.frames_per_window
        f1 = f0 + self.frames_per_window
        lookahead_frames = -(-int(self.lookahead_s * p.sample_rate) // SAMPLES_PER_FRAME)
        speech = self._audio.frame_speech(f0, f1 + lookahead_frames)
        idle = not speech.any()
        steps = p.idle_steps if idle else (steps or p.steps)
        plan = p.guidance.without("audio") if idle else p.guidance
        sigmas = flow_sigmas(steps, p.shift, p.sigma_schedule)

        ctx = self._context
        c = 0 if ctx is None else ctx.shape[2]
        with torch.inference_mode():
            audio, slots = window_audio(p.audio_encoder, self.timeline.read, k * n - c, c + n,
                                        p.codec.frames_per_latent, *p.audio_window, p.official_audio_slots)
            audio = audio[None].to(p.device, p.dtype)  # (1, 1 + c + n, K, D): [reference | context | new]
            slots = None if slots is None else slots[None].to(p.device)
            audio_new = audio[0, 1 + c:]
            if idle:
                audio = torch.zeros_like(audio)
            latents = self._sample_window(audio, slots, sigmas, plan, k)
            keep = torch.cat([ctx, latents], dim=2) if ctx is not None else latents
            self._context = keep[:, :, -p.context_latents:] if p.context_latents else None
            out, fpl = [], p.codec.frames_per_latent
            decode_started = time.perf_counter(), time.thread_time()
            for i in range(n):  # latent by latent: `deliver` gets the first frames before the last are decoded
                made = self._decode_latent(latents[:, :, i:i + 1], audio_new[None, i:i + 1], f0 + i * fpl,
                                           speech[i * fpl:], k)
                out += made
                if deliver is not None and made:
                    self.window_cpu_s = time.thread_time() - cpu_started
                    deliver(made)
            decode_s = (time.perf_counter() - decode_started[0], time.thread_time() - decode_started[1])
        self._advance(k + 1)
        self.window_cpu_s = time.thread_time() - cpu_started
        self.last_window = WindowResult(k, f0, out, steps, idle, time.perf_counter() - started,
                                        forward_count(sigmas, plan), c, *decode_s, self.window_cpu_s)
        return self.last_window

    def _decode_latent(self, latent: torch.Tensor, audio: torch.Tensor, first: int, speech: np.ndarray,
                       window: int) -> list[Frame]:
        """One latent frame -> its video frames from index `first` (none past the end of a finished
        stream), continuing the decoder; the tiny decoder hears the latent's audio (the real tokens,
        also in idle windows)."""
        p = self.profile
        if p.animates_photo:  # its frames are pixels already; the speech flags may close the mouth
            images, self._decoder_state = p.codec.decode_images(latent, self._decoder_state, speech)
        else:
            frames, self._decoder_state = p.codec.decode(latent, self._decoder_state, audio)
            images = ((frames[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            images = images.permute(0, 2, 3, 1).cpu().numpy()
        count = len(images) if self._end_frame is None else max(0, min(len(images), self._end_frame - first))
        return [Frame(first + j, (first + j) / p.fps, images[j], bool(speech[j]), window) for j in range(count)]

    def _sample_window(self, audio: torch.Tensor, slots: torch.Tensor | None, sigmas: torch.Tensor,
                       plan: GuidancePlan, k: int) -> torch.Tensor:
        p, n = self.profile, self.profile.new_latents
        ref, ctx = self._ref_latent, self._context
        known = ref if ctx is None else torch.cat([ref, ctx], dim=2)
        _, ch, _, h, w = ref.shape
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        noise = (torch.randn((1, ch, n, h, w), generator=gen) * p.noise_scale).to(p.device)  # float32 state
        if self._grey is None:
            window = WindowInput.clean_tokens(known, n)
        else:  # every latent integrated; the new latents' noise is drawn first, as in clean-tokens
            c = known.shape[2] - 1
            window = WindowInput.inpaint(known, self._grey[:, :, c:c + n])
            noise = torch.cat([torch.randn(known.shape, generator=gen).to(p.device), noise], dim=2)
        out = sample(denoiser(p.dit, window, audio, self._context_for, self._face_mask, slots, self._steps_memo), noise, sigmas, plan)
        return out[:, :, -n:].to(p.dtype)



def stream_file(session: Session, audio: np.ndarray) -> Iterator[list[Frame]]:
    """Feed 16 kHz mono `audio` to `session` one second at a time, as a live stream would, and give the
    frames of each push as they come, then those of `finish()`."""
    for start in range(0, len(audio), SAMPLE_RATE):
        session.push_audio(audio[start:start + SAMPLE_RATE], SAMPLE_RATE)
        yield session.step(max_windows=None)
    yield session.finish()
