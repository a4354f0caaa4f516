"""The independent judge of portrait output: the landmark model run on the OUTPUT frames.

It never looks at the motion vectors that made the frames. Per frame it fits MediaPipe's mesh
(tracked from the frame before) and measures:
- lip gap: the inner lips' opening at the middle three landmark pairs, as a fraction of the face
  height measured on the same frame (forehead top to chin);
- lip sync: Pearson correlation of the lip gap with the voice's loudness envelope
  (`models.training.metrics.audio_envelope`) at lags -max_lag..max_lag; lag > 0 means the video is late;
- identity: SSIM (Gaussian window, luma) between the frame aligned to the photo (`align`) and
  the photo, over the face oval
  outside the mouth and jaw (the lips' hull widened by 0.06 face heights, down to the chin);
- sharpness: variance of the Laplacian over that face region, frame (unaligned) / photo.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.training.metrics import audio_envelope
from models.portrait import topology as topo
from models.portrait.face_mesh import FaceMesher, FaceMeshError

# forehead, eye corners, nose bridge and tip, cheekbones, temples: still while talking
STABLE = (10, 33, 133, 362, 263, 168, 6, 1, 234, 454, 127, 356, 109, 338)
GAP_PAIRS = ((82, 87), (13, 14), (312, 317))
JAW_LINE = (172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)


def lip_gap(points: np.ndarray) -> float:
    """Inner-lip opening at the middle of the mouth / face height, from one mesh."""
    height = np.linalg.norm(points[topo.CHIN, :2] - points[topo.FOREHEAD_TOP, :2])
    gaps = [np.linalg.norm(points[b, :2] - points[a, :2]) for a, b in GAP_PAIRS]
    return float(np.mean(gaps) / height)


def lagged_correlation(signal: np.ndarray, envelope: np.ndarray, max_lag: int = 5) -> dict:
    """Pearson r of signal[t + lag] with envelope[t] for each lag; the best lag and its r."""
    n = min(len(signal), len(envelope))
    signal, envelope = np.asarray(signal[:n], float), np.asarray(envelope[:n], float)
    by_lag = {}
    for lag in range(-max_lag, max_lag + 1):
        a = signal[max(lag, 0):n + min(lag, 0)]
        b = envelope[max(-lag, 0):n - max(lag, 0)]
        if len(a) > 2 and a.std() > 0 and b.std() > 0:
            by_lag[lag] = float(np.corrcoef(a, b)[0, 1])
    best = max(by_lag, key=by_lag.get) if by_lag else 0
    return {"correlation": by_lag.get(best, 0.0), "lag_frames": best, "by_lag": by_lag}


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) per pixel, luma in [0, 255], sigma 1.5 window."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def identity_mask(points: np.ndarray, shape: tuple) -> np.ndarray:
    """The face oval without the mouth and the jaw that moves with it."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points[list(topo.FACE_OVAL), :2]).astype(np.int32)], 1)
    height = np.linalg.norm(points[topo.CHIN, :2] - points[topo.FOREHEAD_TOP, :2])
    mouth = points[list(topo.LIPS_OUTER_UPPER + topo.LIPS_OUTER_LOWER + JAW_LINE), :2]
    hull = cv2.convexHull(np.round(mouth).astype(np.int32))
    cut = np.zeros_like(mask)
    cv2.fillPoly(cut, [hull], 1)
    grow = max(1, int(round(0.06 * height)))
    cut = cv2.dilate(cut, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return (mask > 0) & (cut == 0)


def align(luma: np.ndarray, ref_luma: np.ndarray, points, ref_points, mask) -> np.ndarray:
    """`luma` warped onto the photo: a similarity from still landmarks, refined by ECC image
    registration over the face mask (the mesh as a whole shifts by pixels when the mouth opens,
    so landmarks alone misalign the upper face)."""
    m, _ = cv2.estimateAffinePartial2D(points[list(STABLE), :2], ref_points[list(STABLE), :2])
    inverse = cv2.invertAffineTransform(m).astype(np.float32)   # ECC wants photo -> frame
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    try:
        _, inverse = cv2.findTransformECC(ref_luma, luma, inverse, cv2.MOTION_AFFINE, criteria,
                                          mask.astype(np.uint8), 5)
    except cv2.error:
        pass   # ECC did not converge: keep the landmarks' estimate
    return cv2.warpAffine(luma, inverse, ref_luma.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


class Judge:
    def __init__(self, mesher: FaceMesher | None = None):
        self.mesher = mesher or FaceMesher()

    def track(self, frames) -> tuple[list, int]:
        """Meshes of every frame (None where the model sees no face) and how many failed."""
        meshes, previous, failed = [], None, 0
        for frame in frames:
            try:
                points = self.mesher.fit(frame, previous).points
            except FaceMeshError:
                try:
                    points = self.mesher.fit(frame).points   # lost: detect again
                except FaceMeshError:
                    points = None
            failed += points is None
            meshes.append(points)
            previous = points
        return meshes, failed

    def evaluate(self, frames, photo: np.ndarray, pcm16k: np.ndarray | None = None,
                 fps: int = 25, max_lag: int = 5) -> dict:
        """All figures for frames rendered from `photo` (same crop and scale as the frames)."""
        ref_points = self.mesher.fit(photo).points
        meshes, failed = self.track(frames)
        gaps = np.array([lip_gap(p) if p is not None else np.nan for p in meshes])
        mask = identity_mask(ref_points, photo.shape)
        ref_luma = _luma(photo)
        ref_sharp = cv2.Laplacian(ref_luma, cv2.CV_64F)[mask].var()
        ssims, sharp = [], []
        for frame, points in zip(frames, meshes):
            if points is None:
                continue
            aligned = align(_luma(frame), ref_luma, points, ref_points, mask)
            ssims.append(float(ssim_map(aligned, ref_luma)[mask].mean()))
            # sharpness on the frame as rendered (resampling it to align would blur it)
            own = identity_mask(points, frame.shape)
            sharp.append(cv2.Laplacian(_luma(frame), cv2.CV_64F)[own].var() / ref_sharp)
        result = {
            "frames": len(frames), "frames_without_face": failed,
            "lip_gap": gaps,
            "lip_gap_p10": float(np.nanpercentile(gaps, 10)),
            "lip_gap_p90": float(np.nanpercentile(gaps, 90)),
            "identity_ssim_mean": float(np.mean(ssims)), "identity_ssim_min": float(np.min(ssims)),
            "sharpness_ratio": float(np.median(sharp)),
        }
        if pcm16k is not None:
            envelope = audio_envelope(pcm16k, fps)
            filled = np.where(np.isnan(gaps), np.nanmean(gaps), gaps)
            result["lip_sync"] = lagged_correlation(filled, envelope, max_lag)
        return result
