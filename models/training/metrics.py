"""Quality metrics measured on frames (pixels only) and audio: lip sync, seams, identity, colour drift.

They read what a viewer sees, never the generator's parameters, so the same numbers apply to the
procedural ground truth and to a model's output. The mouth is found in a face-cropped portrait
(face centred, about two thirds of the frame high), as both the training data and the product use.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..audio_features import FPS, SAMPLE_RATE
SILENCE_DB, LOUD_DB = -50.0, -15.0

# Where a mouth can be in a face-cropped portrait, head motion included (fractions of the frame).
MOUTH_REGION = (0.52, 0.86, 0.3, 0.7)  # top, bottom, left, right
FACE_REGION = (0.12, 0.88, 0.2, 0.8)
_TOP_COLUMNS = 5  # the mouth's centre columns: their dark height is the lip gap


def _luma(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _crop(frames: np.ndarray, region) -> np.ndarray:
    h, w = frames.shape[1:3]
    top, bottom, left, right = region
    return frames[:, int(top * h):int(math.ceil(bottom * h)), int(left * w):int(math.ceil(right * w))]


def mouth_opening(frames: np.ndarray) -> np.ndarray:
    """(T,) lip-gap height as a fraction of the frame height, from the mouth's inside.

    The inside is what differs strongly in brightness from the face's own skin (the region's median,
    so every skin tone works): the dark mouth and the bright teeth, not the lips. The measure is
    soft, so a blurred gap still counts in proportion; only areas enclosed in the region count; and
    it takes the tallest columns wherever they are in the region, so head motion does not move it.
    """
    frames = np.asarray(frames)
    region = _luma(_crop(frames, MOUTH_REGION))
    skin = np.median(region.reshape(len(region), -1), axis=1)[:, None, None]
    contrast = np.abs(region - skin) / (0.5 * skin + 25.0)
    inside = np.clip((contrast - 0.35) / 0.5, 0.0, 1.0)
    inside *= _enclosed(inside > 0.05)
    column_height = inside.sum(axis=1)  # (T, W)
    k = min(_TOP_COLUMNS, column_height.shape[1])
    tallest = np.sort(column_height, axis=1)[:, -k:]
    return (tallest.mean(axis=1) / frames.shape[1]).astype(np.float32)


def _enclosed(masks: np.ndarray) -> np.ndarray:
    """Mask pixels not connected to the region's border: a mouth is enclosed by lips, while
    background, hair or a shirt that enter the region always reach its edge."""
    keep = np.zeros(masks.shape, np.float32)
    for i, mask in enumerate(masks):
        _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep[i] = (labels > 0) & ~np.isin(labels, border)
    return keep


def audio_envelope(pcm16k: np.ndarray, fps: int = FPS) -> np.ndarray:
    """(T,) loudness of each video frame's own samples on the absolute speech scale, in [0, 1]."""
    spf = SAMPLE_RATE // fps
    pcm = np.asarray(pcm16k, np.float32)
    n_frames = math.ceil(len(pcm) / spf)
    padded = np.zeros(n_frames * spf, np.float64)
    padded[:len(pcm)] = pcm
    rms = np.sqrt(np.mean(padded.reshape(n_frames, spf) ** 2, axis=1))
    db = 20.0 * np.log10(np.maximum(rms, 1e-9))
    return np.clip((db - SILENCE_DB) / (LOUD_DB - SILENCE_DB), 0.0, 1.0).astype(np.float32)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def lip_sync(frames: np.ndarray, pcm16k: np.ndarray, fps: int = FPS, max_lag: int = 5) -> dict:
    """Best Pearson correlation of mouth opening vs audio envelope over lags -max_lag..max_lag.

    lag_frames > 0: the video is late (frame t + lag shows the mouth for audio frame t).
    """
    mouth = mouth_opening(frames).astype(np.float64)
    envelope = audio_envelope(pcm16k, fps).astype(np.float64)
    n = min(len(mouth), len(envelope))
    mouth, envelope = mouth[:n], envelope[:n]
    best = {"correlation": -1.0, "lag_frames": 0}
    by_lag = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            m, e = mouth[lag:], envelope[:n - lag]
        else:
            m, e = mouth[:n + lag], envelope[-lag:]
        if len(m) < 3:
            continue
        r = _pearson(m, e)
        by_lag[lag] = r
        if r > best["correlation"]:
            best = {"correlation": r, "lag_frames": lag}
    best["by_lag"] = by_lag
    return best


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(T-1,) mean absolute change between consecutive frames; entry t-1 is frame t-1 -> t."""
    f = np.asarray(frames, np.float32)
    return np.abs(f[1:] - f[:-1]).reshape(len(f) - 1, -1).mean(axis=1)


def seam_ratio(frames: np.ndarray, boundaries: list[int]) -> float:
    """Mean change across window boundaries (frame b-1 -> b) over the mean change inside windows."""
    changes = frame_changes(frames)
    at_seam = np.zeros(len(changes), bool)
    for b in boundaries:
        if 1 <= b < len(frames):
            at_seam[b - 1] = True
    if not at_seam.any() or at_seam.all():
        raise ValueError("seam_ratio needs boundaries inside the clip and frames between them")
    inside = changes[~at_seam].mean()
    return float(changes[at_seam].mean() / max(inside, 1e-6))


def change_by_position(frames: np.ndarray, period: int) -> np.ndarray:
    """(period,) mean change of the transitions frame t -> t+1 grouped by t mod period, over the mean of
    all transitions; with period = a window's frames, the last entry is the window seam. An even row
    is even motion; a decoder that holds each latent frame's picture shows peaks every 4 frames."""
    changes = frame_changes(frames)
    by_place = np.array([changes[k::period].mean() for k in range(period)])
    return (by_place / max(changes.mean(), 1e-6)).astype(np.float32)


def _face_signature(frames: np.ndarray, side: int = 24) -> np.ndarray:
    """Downscaled, blurred colour face region, zero mean and unit norm per frame: (T, side*side*3)."""
    face = _crop(np.asarray(frames), FACE_REGION).astype(np.float32)
    small = np.stack([cv2.GaussianBlur(cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
                      for f in face]).reshape(len(face), -1)
    small -= small.mean(axis=1, keepdims=True)
    return small / (np.linalg.norm(small, axis=1, keepdims=True) + 1e-6)


def identity_similarity(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) normalised cross-correlation of each frame's face (colour) with the reference's, in [-1, 1]."""
    return (_face_signature(frames) @ _face_signature(reference[None])[0]).astype(np.float32)


def _mean_lab(frames: np.ndarray) -> np.ndarray:
    face = _crop(np.asarray(frames), FACE_REGION).astype(np.float32) / 255.0
    lab = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2Lab) for f in face])
    return lab.reshape(len(face), -1, 3).mean(axis=1)


def colour_drift(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) distance (CIE76 delta E) of each frame's mean Lab colour from the reference's."""
    return np.linalg.norm(_mean_lab(frames) - _mean_lab(reference[None])[0], axis=1).astype(np.float32)
