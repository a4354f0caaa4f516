"""A procedural face's frames: the reference image and a clip that talks to its audio."""

from __future__ import annotations

import numpy as np

from ...audio_features import FPS
from . import draw
from .identity import FaceIdentity
from .motion import blinks, gaze, head_motion, mouth_track, speech_activity

_FACE_CENTRE_Y = 0.47  # fraction of the frame height; leaves room for hair above, shoulders below


def background(ident: FaceIdentity, size: int) -> np.ndarray:
    a = np.array(ident.background_colours[0], np.float32)
    b = np.array(ident.background_colours[1], np.float32)
    u = (np.arange(size, dtype=np.float32) + 0.5) / size
    if ident.background == "solid":
        return np.broadcast_to(a.astype(np.uint8), (size, size, 3)).copy()
    if ident.background == "vertical":
        t = u[:, None, None] * np.ones((1, size, 1), np.float32)
    elif ident.background == "radial":
        t = np.clip(np.hypot(u[:, None] - 0.5, u[None] - 0.45)[..., None] * 1.6, 0, 1)
    elif ident.background == "stripes":
        phase = (u[:, None] + u[None]) * 6.0
        t = (0.5 + 0.5 * np.tanh(4.0 * np.sin(2 * np.pi * phase)))[..., None] * 0.35
    else:  # dots
        cell = (u * 8.0) % 1.0 - 0.5
        t = (np.hypot(cell[:, None], cell[None]) < 0.22)[..., None].astype(np.float32) * 0.3
    return np.clip(a + (b - a) * t, 0, 255).astype(np.uint8)


def _base_pose(ident: FaceIdentity, size: int) -> draw.Pose:
    return draw.Pose(cx=size * (0.5 + ident.centre_shift[0]),
                     cy=size * (_FACE_CENTRE_Y + ident.centre_shift[1]),
                     scale=size * ident.frame_fraction / 2.0)


def _draw_frame(canvas: np.ndarray, ident: FaceIdentity, pose: draw.Pose, body: draw.Pose, openness: float,
                spread: float, closure: float, gaze_xy, brow_lift: float) -> None:
    draw.draw_back_hair(canvas, pose, ident)
    draw.draw_body(canvas, body, ident)
    draw.draw_head(canvas, pose, ident)
    draw.draw_front_hair(canvas, pose, ident)
    draw.draw_eyes(canvas, pose, ident, closure, gaze_xy, brow_lift)
    draw.draw_nose(canvas, pose, ident)
    draw.draw_mouth(canvas, pose, ident, openness, spread)
    draw.draw_glasses(canvas, pose, ident)
    draw.draw_hat(canvas, pose, ident)


def render_reference(identity: FaceIdentity, size: int = 128) -> np.ndarray:
    """The neutral frontal frame: mouth closed, eyes open, looking ahead (the model's reference image)."""
    frame = background(identity, size)
    pose = _base_pose(identity, size)
    _draw_frame(frame, identity, pose, pose, 0.0, 0.0, 0.0, (0.0, 0.0), 0.0)
    return frame


def render_clip(identity: FaceIdentity, pcm16k: np.ndarray, rng: np.random.Generator, size: int = 128,
                fps: int = FPS) -> np.ndarray:
    """(T, size, size, 3) uint8 RGB, T = ceil(len(pcm16k) / (SAMPLE_RATE / fps)), talking to the audio."""
    track = mouth_track(pcm16k, fps)
    n_frames = len(track)
    if len(pcm16k) == 0:
        n_frames, track = 0, track[:0]
    activity = speech_activity(track[:, 0], fps)
    motion = head_motion(rng, activity, fps)
    closure = blinks(rng, n_frames, fps)
    eyes = gaze(rng, n_frames, fps)
    bg = background(identity, size)
    base = _base_pose(identity, size)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for i in range(n_frames):
        cx = base.cx + size * motion["dx"][i]
        cy = base.cy + size * motion["dy"][i]
        pose = draw.Pose(cx, cy, base.scale, motion["roll"][i], motion["yaw"][i], motion["nod"][i], track[i, 0])
        body = draw.Pose(base.cx + 0.5 * (cx - base.cx), base.cy + 0.3 * (cy - base.cy), base.scale,
                         0.15 * motion["roll"][i])
        frames[i] = bg
        _draw_frame(frames[i], identity, pose, body, float(track[i, 0]), float(track[i, 1]), float(closure[i]),
                    eyes[i], 0.04 * activity[i])
    return frames
