"""The reference of a photo codec (the portrait profile): the user's whole photo, fitted once per avatar.

A photo codec (`models.interfaces.PhotoCodec`) animates the photo's own pixels, so it is given the
photo as decoded, not the square crop at the profile's size that other codecs get. Its fit (the
face mesh and the renderer built on it) is cached by the photo's content, so a server that sees the
same avatar in many calls fits it once; the fit is never changed by a stream, so calls share it.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

import cv2
import numpy as np

from models.portrait.face_mesh import FaceMeshError

from .errors import FaceError, ImageTooLarge, ProfileError
from .image import Reference, decode_image, prepare_reference

log = logging.getLogger(__name__)

OUTPUT_MODES = ("crop", "photo")  # the face crop at the profile's size, or the whole photo pasted back
MAX_VIDEO_SIDE = 1280  # "photo" output: a larger photo is scaled down to this first (a video of it must encode in real time)
CACHED_FITS = 8

_fits: OrderedDict = OrderedDict()
_lock = threading.Lock()


def open_reference(profile, source, output_mode: str = "crop") -> Reference:
    """The reference a session of `profile` starts from: the whole photo fitted by a photo codec, or
    (other codecs) the face crop at the profile's resolution, for which only the "crop" output exists."""
    if profile.animates_photo:
        return photo_reference(profile.codec, source, output_mode)
    if output_mode != "crop":
        raise ProfileError(f"output mode {output_mode!r} needs a profile that animates the photo "
                           f"(portrait); {profile.name!r} makes only its own crop")
    return prepare_reference(source, profile.resolution)


def photo_reference(codec, source, output_mode: str = "crop") -> Reference:
    """Decode `source`, fit `codec` on it (or take the cached fit) -> a Reference whose `image` is the
    first frame (the photo with its mouth closed: the crop, or the whole photo) and whose `fit` is the
    decoder state of its streams. A photo it cannot use raises FaceError / ImageError."""
    if output_mode not in OUTPUT_MODES:
        raise ProfileError(f"output mode {output_mode!r} is not one of {', '.join(OUTPUT_MODES)}")
    photo = decode_image(source, keep_alpha=True)
    notes = []
    if output_mode == "photo":
        photo = _video_sized(photo, notes)
    key = (codec.size, output_mode, photo.shape, hashlib.sha256(photo.tobytes()).hexdigest())
    with _lock:
        cached = _fits.get(key)
        if cached is not None:
            _fits.move_to_end(key)
    if cached is None:
        cached = _fit(codec, photo, output_mode == "photo")
        with _lock:
            _fits[key] = cached
            while len(_fits) > CACHED_FITS:
                _fits.popitem(last=False)
    renderer, fit_notes = cached
    first = renderer.render(np.zeros(codec.latent_channels))
    return Reference(first, True, (photo.shape[1], photo.shape[0]), _face_box(renderer), renderer,
                     tuple(notes + fit_notes))


def _video_sized(photo: np.ndarray, notes: list[str]) -> np.ndarray:
    """The whole photo as video frames take it: at most MAX_VIDEO_SIDE a side, and even sides (4:2:0)."""
    h, w = photo.shape[:2]
    if max(h, w) > MAX_VIDEO_SIDE:
        scale = MAX_VIDEO_SIDE / max(h, w)
        photo = cv2.resize(photo, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        notes.append(f"photo output: the {w}x{h} photo is scaled to {photo.shape[1]}x{photo.shape[0]}")
    h, w = photo.shape[:2]
    return np.ascontiguousarray(photo[:h - h % 2, :w - w % 2])


def _fit(codec, photo: np.ndarray, paste: bool):
    try:
        renderer, notes = codec.fit_photo(photo, paste)
    except FaceMeshError as exc:
        log.info("event=photo_refused reason=%s", exc.reason)
        error = ImageTooLarge if exc.reason == "image_too_large" else None
        raise (error(str(exc)) if error else FaceError(exc.reason, str(exc))) from None
    for note in notes:
        log.info("event=photo_fallback note=\"%s\"", note)
    return renderer, notes


def _face_box(renderer) -> tuple[float, float, float, float]:
    """The face's mesh box in output pixels."""
    xy = renderer.basis.rest[:, :2]
    if renderer.paste:
        xy = xy + renderer.origin
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    return float(x0), float(y0), float(x1), float(y1)
