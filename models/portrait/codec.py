"""The portrait profile's codec: normalised motion vectors in, the photo's own pixels moved out.

A latent frame is one video frame's motion vector (`motion.CHANNELS`, 15 values), normalised per
channel with the training data's `motion_mean` / `motion_std`, laid out (B, 15, T, 1, 1) so the
DiT sees a 1x1 "image" per frame. Decoding renders each vector with the avatar's
`PortraitRenderer`: built once per avatar from the user's whole photo (`fit_photo`) and never
changed by a frame, so any number of streams share it. A stream's decoder state is that renderer
with its mouth gain (`PortraitStream`): with `silence_close_ms` set, the session's speech flags ease
the mouth shut in silence (`models.portrait.silence`). With `jaw_curve` set, the DiT's jaw opening is
shown through a curve that widens small openings (`shown_jaw`); with `head_turn_scale`, its head
rotation is shown smaller: turning one photo's pixels cannot show what the photo does not, and at full
scale a textured, turned face (biden) fell under the identity bar (SSIM 0.894 on two held-out voices,
its head's yaw alone explaining most of each frame's loss).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from models.portrait.face_mesh import FaceMesher, as_rgb
from models.portrait.motion import CHANNELS, INDEX
from models.portrait.render import PortraitRenderer
from models.portrait.silence import close_in_silence

HEAD_TURN = np.array([INDEX[name] for name in ("head_yaw", "head_pitch", "head_roll")])
# What the renderer is given at most, per channel (in CHANNELS order; units in motion.py): far past
# natural speech (the targets' head sway is a few degrees), but a sample from an untrained or
# misled DiT can never push the mouth out of the picture.
_LINEAR_RANGE = {"blink_right": (0.0, 1.0), "blink_left": (0.0, 1.0), "brows": (-1.0, 1.0)}
MOTION_RANGE = np.array([_LINEAR_RANGE.get(name, (-1.0, 1.5)) if not name.startswith("head_") else
                         (-0.1, 0.1) if name in ("head_x", "head_y") else (-15.0, 15.0) for name in CHANNELS])


def shown_jaw(motion: np.ndarray, curve: tuple[float, float]) -> np.ndarray:
    """(T, 15) motion with its jaw opening x > 0 shown as top x (1 + k) / (x + k), (k, top) = `curve`:
    closed stays closed, x = 1 is shown as `top`, a small opening top (1 + k) / k times wider
    (3.5x at (0.3, 0.8)); the other channels as they are.

    Why: a jaw opening under ~0.03 moves the lips less than a pixel apart at 512x512 (the jaw drops
    0.1 face heights at 1), so the DiT's quieter syllables did not show. Where the photo's shut
    mouth already reads slightly parted (obama2: 0.021 face heights) the landmark judge read them
    all as shut: lip sync 0.66-0.73 over six held-out voices, 0.79-0.84 through this curve, speech
    p90 staying 7-9% of the face (benchmarks/portrait-preview-voices.json).
    """
    knee, top = curve
    out = np.array(motion, np.float64, copy=True)
    jaw = out[:, INDEX["jaw_open"]]
    out[:, INDEX["jaw_open"]] = np.where(jaw > 0, top * jaw * (1 + knee) / (np.maximum(jaw, 0) + knee), jaw)
    return out


@dataclass(frozen=True)
class PortraitStream:
    """One stream's decoder state: the avatar's shared renderer and the stream's mouth gain (0 = shut,
    as a stream starts: the photo's own mouth)."""
    renderer: PortraitRenderer
    mouth_gain: float = 0.0


class MotionCodec(nn.Module):
    """A `models.interfaces.PhotoCodec`: motion latents <-> motion vectors, rendered on a photo."""

    frames_per_latent = 1
    latent_channels = len(CHANNELS)

    def __init__(self, size: int = 512, silence_close_ms: float | None = None,
                 jaw_curve: tuple[float, float] | None = None, head_turn_scale: float | None = None):
        super().__init__()
        self.size = int(size)
        self.silence_close_ms = silence_close_ms  # None: the DiT's motion as is, speech or not
        self.jaw_curve = jaw_curve  # None: the DiT's jaw as is
        self.head_turn_scale = head_turn_scale  # None: the DiT's head rotation as is
        self.spatial_factor = self.size  # one latent "pixel" per frame
        self.register_buffer("motion_mean", torch.zeros(len(CHANNELS)))
        self.register_buffer("motion_std", torch.ones(len(CHANNELS)))
        self._mesher: FaceMesher | None = None  # loaded on the first photo
        self._mesher_lock = threading.Lock()  # one LiteRT interpreter set, used by one thread at a time

    @classmethod
    def from_config(cls, cfg) -> "MotionCodec":
        return cls(cfg.resolution[0], cfg.codec.silence_close_ms, cfg.codec.jaw_curve, cfg.codec.head_turn_scale)

    # ---- motion <-> latents --------------------------------------------------------------------
    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.motion_mean.float(), self.motion_std.float()

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, T, 15) motion vectors -> normalised latents (B, 15, T, 1, 1)."""
        mean, std = self._stats()
        return ((motion.float() - mean) / std).transpose(1, 2)[..., None, None]

    def motion(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, 15, T, 1, 1) -> motion vectors (B, T, 15), float32."""
        mean, std = self._stats()
        return latents.float()[..., 0, 0].transpose(1, 2) * std + mean

    # ---- the Codec contract --------------------------------------------------------------------
    def encode_reference(self, image: torch.Tensor) -> torch.Tensor:
        """The photo itself is the all-zero motion (its mouth closed): (B, 15, 1, 1, 1)."""
        return self.encode(torch.zeros(len(image), 1, len(CHANNELS), device=image.device))

    def start_stream(self, reference_latent: torch.Tensor, reference_image: torch.Tensor) -> PortraitRenderer:
        """A renderer fitted on the reference tensor alone (a session gives a photo codec the whole
        photo instead, through `fit_photo`, which also allows the paste-back output)."""
        pixels = ((reference_image[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.fit_photo(pixels.permute(1, 2, 0).cpu().numpy())[0]

    def decode(self, latents: torch.Tensor, state: PortraitRenderer | PortraitStream,
               audio: torch.Tensor) -> tuple[torch.Tensor, PortraitStream]:
        """(1, 15, T, 1, 1) -> frames (1, T, 3, H, W) in [-1, 1] (float32) and the stream's next state.
        The audio is not used: the motion already follows it. A session calls `decode_images`, with
        its speech flags (this contract has none, so the mouth stays the DiT's)."""
        images, state = self.decode_images(latents, state)
        return (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1)[None], state

    def decode_images(self, latents: torch.Tensor, state: PortraitRenderer | PortraitStream,
                      speech: np.ndarray | None = None) -> tuple[list[np.ndarray], PortraitStream]:
        """(1, 15, T, 1, 1) -> (T frames, HxWx3 uint8 RGB, the stream's next state), as `decode` makes
        them without the round trip through [-1, 1] (which costs as much as rendering a frame): what
        a session shows. `speech`: a flag per frame from the first, with the look-ahead after the last
        (`silence.LEAD_FRAMES`); None leaves the mouth to the DiT. A bare renderer starts a stream."""
        if len(latents) != 1:
            raise ValueError("the portrait codec renders one stream at a time (batch 1)")
        if isinstance(state, PortraitRenderer):
            state = PortraitStream(state)
        motion = self.shown_motion(self.motion(latents)[0].cpu().numpy())
        if self.silence_close_ms and speech is not None:
            motion, gain = close_in_silence(motion, speech, state.mouth_gain, self.silence_close_ms)
            state = replace(state, mouth_gain=gain)
        return [state.renderer.render(m) for m in motion], state

    def shown_motion(self, motion: np.ndarray) -> np.ndarray:
        """(T, 15) motion vectors from the DiT -> as the renderer is given them, before the silence
        closure: clamped to MOTION_RANGE, the jaw through `jaw_curve`, the head turns scaled."""
        motion = np.clip(np.asarray(motion, np.float64), *MOTION_RANGE.T)
        if self.jaw_curve:
            motion = shown_jaw(motion, self.jaw_curve)
        if self.head_turn_scale is not None:
            motion[:, HEAD_TURN] *= self.head_turn_scale
        return motion

    # ---- the whole photo, once per avatar --------------------------------------------------------
    def fit_photo(self, photo: np.ndarray, paste: bool = False) -> tuple[PortraitRenderer, list[str]]:
        """HxW, HxWx3 or HxWx4 uint8 -> (the avatar's renderer, notes on fallbacks taken). Raises
        `face_mesh.FaceMeshError` (with a `reason`) for a photo it cannot animate."""
        notes: list[str] = []
        rgb = as_rgb(photo, notes)
        with self._mesher_lock:
            if self._mesher is None:
                self._mesher = FaceMesher()
            mesh = self._mesher.fit(rgb)
        return PortraitRenderer(rgb, mesh, size=self.size, paste=paste), notes + list(mesh.notes)
