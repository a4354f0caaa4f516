"""Procedural talking faces: training data for the tiny model, rendered on the fly.

`render_clip(identity, pcm16k, rng)` draws a face-cropped portrait that talks to the audio (mouth
from `mouth_track`), moves its head and blinks. Same rng state in, same frames out.
"""

from .identity import FaceIdentity, sample_identity
from .motion import mouth_track
from .render import background, render_clip, render_reference

__all__ = ["FaceIdentity", "sample_identity", "mouth_track", "render_clip", "render_reference", "background"]
