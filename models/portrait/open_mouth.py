"""A reference whose lips are apart (teeth showing, mouth open): where its upper lip really ends,
and the opening painted over with the lips' own colours so that lips closed over it show no teeth.

The mesh often puts the inner upper lip below the lip's real edge, on the teeth or in the dark of
the mouth (on a turned face by several pixels): closed, that strip of teeth (inpainted) sat inside
the upper lip like a fold. `lift_upper_lip` moves each inner upper point up over the run of
teeth or dark above it (cavity, the lip's wet underside, hidden when lips meet), to where the
lip's colour begins.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.portrait import topology as topo
from models.portrait.motion import LIPS_APART
from models.portrait.mouth import LOWER, LUMA, UPPER, lip_colour


def lips_apart(points, face_height) -> bool:
    """The photo's inner lips are apart at the middle (as `motion.MotionBasis._closing` decides)."""
    mid = len(UPPER) // 2
    return bool(points[LOWER[mid], 1] - points[UPPER[mid], 1] > LIPS_APART * face_height)


def teeth(pixels, lip) -> np.ndarray:
    """Per pixel: brighter and greyer than the lips."""
    pixels = np.asarray(pixels, np.float32)
    luma, chroma, lip_luma = pixels @ LUMA, np.ptp(pixels, axis=-1), float(lip @ LUMA)
    return (luma > lip_luma + 0.3 * (255 - lip_luma)) & (chroma < 0.8 * float(np.ptp(lip)) + 8)


def inside(pixels, lip) -> np.ndarray:
    """Per pixel: teeth, or darker than the lips' lit skin (the cavity, the lip's wet underside)."""
    return teeth(pixels, lip) | (np.asarray(pixels, np.float32) @ LUMA < 0.55 * float(lip @ LUMA))


def lift_upper_lip(image, points, face_height, reach=0.7) -> np.ndarray:
    """`points` (photo pixels) with each inner upper point (but the corners) moved up over the
    teeth or dark pixels above it, at most `reach` of the way to the outer lip in its column.

    Teeth in the lip's shadow can have the lips' colour and brightness, so a point on them finds
    no teeth or dark where it is: then the darkest pixel above it (the lip's dark underside, where
    it meets the teeth) marks the lip's edge when it is dark enough, and the point moves over it."""
    points = np.array(points, np.float64)
    if not lips_apart(points, face_height):
        return points
    lower_lip = np.concatenate([points[list(topo.LIPS_OUTER_LOWER), :2], points[LOWER[::-1], :2]])
    lip = lip_colour(image, lower_lip)
    outer = points[list(topo.LIPS_OUTER_UPPER), :2]
    outer = outer[np.argsort(outer[:, 0])]
    h, w = image.shape[:2]
    for inner in UPPER[1:-1]:
        x, y = int(round(points[inner, 0])), int(round(points[inner, 1]))
        # the outer lip in the point's own column (the outer line is wider than the inner one:
        # its point of the same rank lies further out, toward the corner, and lower)
        outer_y = np.interp(points[inner, 0], outer[:, 0], outer[:, 1])
        top = int(np.ceil(y - reach * (y - outer_y)))
        if not (0 <= x < w and 0 <= top < y < h):
            continue
        pixels = image[top:y + 1, x][::-1]                  # from the point upward
        column = inside(pixels, lip)
        if not column[:2].any():
            darkest = int(np.argmin(pixels.astype(np.float32) @ LUMA))
            if not column[darkest]:
                continue
            column[:darkest] = True                         # shaded teeth below the lip's edge
        run = np.flatnonzero(~(column[1:] | column[:-1]))    # two lip pixels in a row end it
        k = run[0] if len(run) else len(column) - 1
        points[inner, 1] = min(points[inner, 1], y - k)
    return points


def fill_opening(source, poly, lip, face_height):
    """`source` with the opening `poly` (source pixels), and the teeth just outside it, inpainted
    from the lips around it (a new array)."""
    x0, y0 = np.floor(poly.min(0)).astype(int) - 12
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 13
    h, w = source.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((poly - [x0, y0]) * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
    # around it the teeth, and beside its ends the mouth's dark corners; not the lips' own dark
    # inner edge above or below it (a shut mouth's seam is dark)
    r = max(1, int(round(0.012 * face_height)))
    ring = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    beside = cv2.dilate(mask, np.ones((1, 4 * r + 1), np.uint8))
    roi = source[y0:y1, x0:x1]
    more = ((ring > 0) & teeth(roi, lip)) | ((beside > 0) & inside(roi, lip))
    mask = cv2.dilate(np.where(more, 255, mask).astype(np.uint8), np.ones((3, 3), np.uint8))
    out = source.copy()
    out[y0:y1, x0:x1] = cv2.inpaint(np.ascontiguousarray(roi), mask, 3, cv2.INPAINT_TELEA)
    return out
