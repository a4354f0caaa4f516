"""The inside of the mouth, drawn where the lips part: dark cavity, tongue, upper and lower teeth.

Colours come from the photo once per avatar: the cavity and tongue from its lip colour, the teeth
from its own teeth when the reference shows them (else a neutral enamel tone matched to the skin's
brightness); a grayscale photo gets a grayscale mouth. The upper teeth hang from the skull (they
follow the head, not the lips), the lower teeth ride on the jaw (they follow `jaw_open` only), so
raising the upper lip or dropping the lower lip reveals them as it would on a face.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.portrait import topology as topo

UPPER = np.array(topo.LIPS_INNER_UPPER)
LOWER = np.array(topo.LIPS_INNER_LOWER)
UPPER_TEETH = 0.032     # visible height of the upper incisors, in face heights
LOWER_TEETH = 0.016
INCISOR_EDGES = (-0.55, -0.3, 0.0, 0.3, 0.55)   # places across the arch (-1..1)


def _polygon_mean(image, polygon, hole=None):
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    if hole is not None:
        cv2.fillPoly(mask, [np.round(hole).astype(np.int32)], 0)
    pixels = image[mask > 0].reshape(-1, 3).astype(np.float32)
    return pixels


def _catmull_rom_weights(n, per_segment=4):
    """(K, n) weights: a Catmull-Rom curve through n points (ends repeated) as one matrix."""
    t = np.linspace(0, 1, per_segment, endpoint=False)
    basis = 0.5 * np.stack([-t + 2 * t ** 2 - t ** 3, 2 - 5 * t ** 2 + 3 * t ** 3,
                            t + 4 * t ** 2 - 3 * t ** 3, -t ** 2 + t ** 3], 1)
    rows = []
    for i in range(n - 1):
        idx = np.clip([i - 1, i, i + 1, i + 2], 0, n - 1)
        block = np.zeros((per_segment, n))
        for k in range(4):
            block[:, idx[k]] += basis[:, k]
        rows.append(block)
    last = np.zeros((1, n))
    last[0, -1] = 1
    return np.concatenate(rows + [last])


_SMOOTH = _catmull_rom_weights(len(topo.LIPS_INNER_UPPER))


def inner_polygon(points, smooth=False):
    upper, lower = points[UPPER, :2], points[LOWER, :2]
    if smooth:
        upper, lower = _SMOOTH @ upper, _SMOOTH @ lower
    return np.concatenate([upper, lower[::-1]])


class MouthInterior:
    def __init__(self, image: np.ndarray, points: np.ndarray, face_height: float,
                 softness: float = 0.5):
        """image: the reference at output scale; points: its mesh (468, >=2) in the same pixels;
        softness: blur (pixels) matching the photo's own sharpness at this scale."""
        self.face_height = face_height
        self.softness = softness
        outer = np.concatenate([points[list(topo.LIPS_OUTER_UPPER), :2],
                                points[list(topo.LIPS_OUTER_LOWER[::-1]), :2]])
        inner = inner_polygon(points)
        lips = _polygon_mean(image, outer, inner)
        lip = lips.mean(0) if len(lips) else np.array([170.0, 100, 100])
        r = max(2, int(0.03 * face_height))
        skin_px = np.concatenate([image[max(0, int(y) - r):int(y) + r, max(0, int(x) - r):int(x) + r]
                                  .reshape(-1, 3) for x, y in points[list(topo.CHEEKS), :2]]).astype(np.float32)
        skin = skin_px.mean(0) if len(skin_px) else lip
        luma = float(skin @ [0.299, 0.587, 0.114])
        teeth = np.array([236.0, 228, 212]) * np.clip(luma / 170.0, 0.75, 1.0) ** 0.5
        shown = _polygon_mean(image, inner)
        if len(shown) > 20:   # the photo shows teeth: use their colour
            y = shown @ np.array([0.299, 0.587, 0.114], np.float32)
            bright = shown[y >= np.percentile(y, 70)]
            if bright.mean() > 0.75 * teeth.mean():
                teeth = bright.mean(0)
        self.gray = bool(np.ptp(image.reshape(-1, 3)[::97].astype(np.int16), axis=1).max() <= 2)
        self.cavity = lip * 0.3
        self.tongue = lip * np.array([0.68, 0.42, 0.42])
        self.teeth = 0.9 * teeth + 0.1 * skin
        if self.gray:
            to_gray = lambda c: np.full(3, float(c @ [0.299, 0.587, 0.114]))  # noqa: E731
            self.cavity, self.tongue, self.teeth = map(to_gray, (self.cavity, self.tongue, self.teeth))

    def draw(self, frame: np.ndarray, points, neutral, jaw_only) -> None:
        """Paint the mouth's inside into `frame` (in place) where the lips `points` part.

        neutral: the mesh with the head pose only (upper teeth); jaw_only: head + jaw (lower teeth).
        """
        gap = points[LOWER, 1] - points[UPPER, 1]
        if gap.max() < 2.0:   # (nearly) shut: the line where the lips meet hides the seam
            seam = (points[UPPER, :2] + points[LOWER, :2]) / 2
            thick = max(1, int(round(0.006 * self.face_height)))
            h, w = frame.shape[:2]
            x0, y0 = np.maximum(np.floor(seam.min(0)).astype(int) - thick - 2, 0)
            x1, y1 = np.ceil(seam.max(0)).astype(int) + thick + 3
            roi = frame[y0:min(y1, h), x0:min(x1, w)]
            layer = roi.copy()
            cv2.polylines(layer, [np.round((seam - [x0, y0]) * 16).astype(np.int32)], False,
                          (self.cavity * 2.2).tolist(), thick, cv2.LINE_AA, 4)
            a = 0.75 * (1 - gap.max() / 2.0)
            cv2.addWeighted(layer, a, roi, 1 - a, 0, dst=roi)
        if gap.max() < 0.6:
            return
        poly = inner_polygon(points, smooth=True)
        h, w = frame.shape[:2]
        x0, y0 = np.floor(poly.min(0)).astype(int) - 2
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return
        off = np.array([x0, y0], np.float64)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = [np.round((poly - off) * 16).astype(np.int32)]
        cv2.fillPoly(mask, fixed, 255, cv2.LINE_AA, 4)
        if gap.max() > 3:   # a pixel over the lips' inner edge hides the stretched seam there
            cv2.polylines(mask, fixed, True, 255, 2, cv2.LINE_AA, 4)
        inside = cv2.GaussianBlur(self._paint(mask.shape, off, points, neutral, jaw_only), (0, 0),
                                  self.softness)
        alpha = mask.astype(np.float32)[:, :, None] / 255.0
        roi = frame[y0:y1, x0:x1]
        roi[:] = np.clip(roi * (1 - alpha) + inside * alpha + 0.5, 0, 255).astype(np.uint8)

    def _paint(self, shape, off, points, neutral, jaw_only):
        fh = self.face_height
        inside = np.empty(shape + (3,), np.float32)
        inside[:] = self.cavity
        centre = (points[UPPER, :2].mean(0) + points[LOWER, :2].mean(0)) / 2 - off
        width = np.linalg.norm(points[UPPER[-1], :2] - points[UPPER[0], :2])
        low_mid = points[topo.LOWER_LIP_INNER_MID, 1] - off[1]
        depth = max(1.0, low_mid - centre[1])
        cv2.ellipse(inside, (int(centre[0] * 16), int(low_mid * 16)),
                    (int(width * 0.3 * 16), int(depth * 0.5 * 16)), 0, 180, 360,
                    self.tongue.tolist(), -1, cv2.LINE_AA, 4)
        u = np.linspace(-1, 1, 15)
        arch = np.sqrt(np.clip(1 - (u / 0.88) ** 2, 0, 1))
        for ref, sign, height in ((neutral[UPPER], 1, UPPER_TEETH), (jaw_only[LOWER], -1, LOWER_TEETH)):
            xs = np.interp(u, np.linspace(-1, 1, len(ref)), ref[:, 0]) - off[0]
            ys = np.interp(u, np.linspace(-1, 1, len(ref)), ref[:, 1]) - off[1]
            edge = ys + sign * height * fh * arch
            root = ys - sign * 0.02 * fh
            poly = np.concatenate([np.stack([xs, root], 1), np.stack([xs, edge], 1)[::-1]])
            cv2.fillPoly(inside, [np.round(poly * 16).astype(np.int32)], self.teeth.tolist(),
                         cv2.LINE_AA, 4)
            for e in INCISOR_EDGES if sign > 0 else INCISOR_EDGES[1:-1]:
                x = float(np.interp(e, u, xs))
                y_root, y_edge = float(np.interp(e, u, root)), float(np.interp(e, u, edge))
                cv2.line(inside, (int(x * 16), int(y_root * 16)), (int(x * 16), int(y_edge * 16)),
                         (self.teeth * 0.86).tolist(), 1, cv2.LINE_AA, 4)
        # depth shading: darker toward the corners and under the upper lip
        xx = (np.arange(shape[1]) - centre[0]) / (width / 2 + 1e-6)
        shade = np.clip(1 - 0.55 * xx ** 2, 0.35, 1)[None, :, None]
        top = np.interp(np.arange(shape[1]) + off[0], points[UPPER, 0], points[UPPER, 1]) - off[1]
        below = np.arange(shape[0])[:, None] - top[None, :]
        shade = shade * (1 - 0.35 * np.exp(-np.clip(below, 0, None) / (0.008 * fh + 0.5)))[:, :, None]
        return inside * shade
