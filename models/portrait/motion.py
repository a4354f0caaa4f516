"""The per-frame motion vector and its displacement basis over the face mesh.

A motion vector has one value per channel (`CHANNELS`). Every channel but the head pose is a
displacement field over MediaPipe's 468 mesh points, linear in its value, defined by landmark index
regions of the topology (lips, lids, brows, face oval) and smooth falloffs in a face-normalised
frame (origin between the outer eye corners, x along the eyes, unit = face height from forehead to
chin). So the same vector means the same thing on any face. Units at value 1.0:

  jaw_open        the jaw drops: the chin and lower lip move down 0.10 face heights
  lip_gap         the lips part without the jaw: inner lips 0.04 apart at the centre
  mouth_wide      the corners move out 0.035 each (negative: in)
  mouth_round     the corners move in 0.03 each and the lips thicken (rounding, "oo")
  upper_lip_raise the upper lip's middle lifts 0.02 (upper teeth show)
  lower_lip_drop  the lower lip's middle drops 0.02 (lower teeth show)
  lip_press       the lips press and thin: 0.01 each toward the seam (m, b, p)
  blink_right/left the upper lid closes onto the lower one (1.0 = shut; the subject's sides)
  brows           the brows lift 0.03 (negative: lower/frown)
  head_yaw/pitch/roll  degrees; head_x/head_y  face heights (rigid head motion, not linear)

The all-zero vector is the photo with its mouth closed: a reference whose lips are apart (teeth
showing, open mouth) gets a closing displacement first, so silence always shows closed lips.
"""
from __future__ import annotations

import math

import numpy as np

from models.portrait import topology as topo

CHANNELS = ("jaw_open", "lip_gap", "mouth_wide", "mouth_round", "upper_lip_raise",
            "lower_lip_drop", "lip_press", "blink_right", "blink_left", "brows",
            "head_yaw", "head_pitch", "head_roll", "head_x", "head_y")
LINEAR = CHANNELS[:10]
INDEX = {name: i for i, name in enumerate(CHANNELS)}

# The 468-point mesh puts the upper lid's points inside the eye, below the lash line, so a band
# this deep (in eye openings) above them is squeezed into the shut lid's edge with them.
LASH_BAND = 0.5
HEAD_DEPTH = 0.6
LIPS_APART = 0.004  # face heights between the photo's inner lips at the middle: its mouth is open, closed at rest
JAW_BAND = 0.12    # face heights: beside the corners, the jaw's pull fades in over this
CORNER_DROP = 0.45  # of the jaw's drop, at the mouth's corners
LIP_END = 0.35     # of the half mouth: the lips' ends, easing into their corners' drop
UPPER_SHARE = 0.3   # of a photo's open mouth, closed by the upper lip coming down (the jaw: the rest)
_UPPER = np.array(topo.LIPS_INNER_UPPER + topo.LIPS_OUTER_UPPER)
_LOWER = np.array(topo.LIPS_INNER_LOWER + topo.LIPS_OUTER_LOWER)
_CORNERS = np.array(topo.MOUTH_CORNERS + topo.INNER_CORNERS)


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def face_frame(points: np.ndarray):
    """(origin, rotation 2x2 with rows = face x/y axes in the image, face height in pixels)."""
    origin = (points[topo.RIGHT_EYE_OUTER, :2] + points[topo.LEFT_EYE_OUTER, :2]) / 2
    ex = points[topo.LEFT_EYE_OUTER, :2] - points[topo.RIGHT_EYE_OUTER, :2]
    ex = ex / (np.linalg.norm(ex) + 1e-9)
    rot = np.array([ex, [-ex[1], ex[0]]])
    height = float(np.linalg.norm(points[topo.CHIN, :2] - points[topo.FOREHEAD_TOP, :2]))
    return origin, rot, height


class MotionBasis:
    """Displacement fields of one face: built once from its mesh, then `displace(m)` per frame."""

    def __init__(self, points: np.ndarray):
        self.rest = np.asarray(points, np.float64)
        self.origin, self.rot, self.height = face_frame(self.rest)
        q = (self.rest[:, :2] - self.origin) @ self.rot.T / self.height   # face frame, unit FH
        self.q = q
        fields = np.stack([getattr(self, "_" + name)(q) for name in LINEAR])  # (C, N, 2)
        closing = self._closing(q)
        # the mesh's points between the lip lines (the lips' inner rings; teeth in an open mouth)
        # move as the lines around them do, so no triangle of the lips folds over another
        band, weights = self._lip_bands(q)
        fields[:, band] = np.einsum("bn,cnk->cbk", weights, fields)
        closing[band] = weights @ closing
        self.fields, self.closing = fields, closing

    @staticmethod
    def _lip_bands(q):
        """(points, weights (points, N)): each mesh point strictly between the outer upper and
        the outer lower lip line (but not on one) as the mix of the two lines just above and below
        it (outer upper, inner upper, inner lower, outer lower), each line linear along x."""
        lines = [np.array(line) for line in (topo.LIPS_OUTER_UPPER, topo.LIPS_INNER_UPPER,
                                             topo.LIPS_INNER_LOWER, topo.LIPS_OUTER_LOWER)]
        on_line = np.zeros(len(q), bool)
        on_line[np.concatenate(lines)] = True
        x0, x1 = q[topo.MOUTH_CORNERS, 0].min(), q[topo.MOUTH_CORNERS, 0].max()
        candidates = np.flatnonzero(~on_line & (q[:, 0] > x0) & (q[:, 0] < x1))
        x, y = q[candidates, 0], q[candidates, 1]

        def at(line):   # (weights over N) of the line's points at each candidate's x
            order = line[np.argsort(q[line, 0])]
            k = np.clip(np.searchsorted(q[order, 0], x) - 1, 0, len(order) - 2)
            a, b = order[k], order[k + 1]
            s = np.clip((x - q[a, 0]) / np.maximum(q[b, 0] - q[a, 0], 1e-9), 0, 1)
            w = np.zeros((len(x), len(q)))
            w[np.arange(len(x)), a] = 1 - s
            w[np.arange(len(x)), b] += s
            return w
        weights = [at(line) for line in lines]
        ys = np.maximum.accumulate(np.stack([w @ q[:, 1] for w in weights]))   # top to bottom
        rows, found = np.zeros((len(x), len(q))), np.zeros(len(x), bool)
        for top in range(3):
            here = ~found & (ys[top] <= y) & (y <= ys[top + 1])
            f = ((y - ys[top]) / np.maximum(ys[top + 1] - ys[top], 1e-9))[here, None]
            rows[here] = (1 - f) * weights[top][here] + f * weights[top + 1][here]
            found |= here
        return candidates[found], rows[found]

    # --- the linear channels, each (N, 2) in face heights -------------------------------------
    def _mouth(self, q):
        inner = np.r_[topo.LIPS_INNER_UPPER + topo.LIPS_INNER_LOWER]
        centre = q[inner].mean(0)
        # -1..1 across the mouth from its midline, each half on its own: on a turned face the far
        # half is foreshortened, and the lips still open most at their middle
        mid = q[topo.UPPER_LIP_INNER_MID, 0]
        right, left = (q[c, 0] for c in topo.MOUTH_CORNERS)
        half = np.where(q[:, 0] < mid, max(mid - right, 1e-3), max(left - mid, 1e-3))
        u = (q[:, 0] - mid) / half
        taper = _smooth(1 - np.abs(u))                 # 1 at the middle, 0 at the corners
        centre = np.array([mid, centre[1]])
        return centre, half, u, taper

    def _jaw_weight(self, q):
        centre, half, u, _ = self._mouth(q)
        nose_y = q[topo.NOSE_TIP, 1]
        below = _smooth((q[:, 1] - nose_y) / (centre[1] - nose_y + 1e-9))   # 0 at the nose
        w = 0.35 * below * _smooth(np.abs(u) - 0.6)                          # cheeks beside it
        # under the lips the whole jaw; beside the corners it fades in over a band of skin across
        # the mouth's line (a step at the line stretched the skin there into streaks)
        beside = _smooth((np.abs(u) - 0.7) / 0.3)
        fade = _smooth((q[:, 1] - centre[1]) / JAW_BAND + 0.5)
        w = w + (1 - w) * (beside * fade + (1 - beside) * (q[:, 1] > centre[1]))
        lateral = 1 - 0.6 * _smooth((np.abs(q[:, 0] - centre[0]) - 0.12) / 0.3)
        w = w * lateral
        # the lips' ends ease into their corners' drop (a lower lip dropping whole up to its
        # corner, the upper lip's end held, tore the corner's skin into streaks)
        end = _smooth((1 - np.abs(u)) / LIP_END)
        w[_UPPER] = CORNER_DROP * (1 - end[_UPPER])
        w[_LOWER] = CORNER_DROP + (lateral[_LOWER] - CORNER_DROP) * end[_LOWER]
        w[_CORNERS] = CORNER_DROP
        return w

    def _jaw_open(self, q):
        return np.stack([np.zeros(len(q)), 0.10 * self._jaw_weight(q)], 1)

    def _lip_gap(self, q):
        _, _, _, taper = self._mouth(q)
        d = np.zeros((len(q), 2))
        d[list(topo.LIPS_INNER_UPPER), 1] = -0.015
        d[list(topo.LIPS_OUTER_UPPER), 1] = -0.008
        d[list(topo.LIPS_INNER_LOWER), 1] = 0.025
        d[list(topo.LIPS_OUTER_LOWER), 1] = 0.018
        return d * taper[:, None]

    def _corner_pull(self, q, dx, dy):
        """Corners move by (dx, dy); the lips follow in proportion to their place across the mouth,
        the cheeks around the corners with a smooth falloff."""
        centre, half, u, _ = self._mouth(q)
        d = np.zeros((len(q), 2))
        side = np.sign(u)
        near = np.exp(-((np.abs(q[:, 0] - centre[0]) - half) ** 2 + (q[:, 1] - centre[1]) ** 2)
                      / (2 * 0.06 ** 2))
        weight = np.maximum(near, 0.0)
        lips = np.r_[_UPPER, _LOWER]
        weight[lips] = np.clip(np.abs(u[lips]), 0, 1)
        d[:, 0] = side * dx * weight
        d[:, 1] = dy * weight
        return d

    def _mouth_wide(self, q):
        return self._corner_pull(q, 0.035, -0.008)

    def _mouth_round(self, q):
        d = self._corner_pull(q, -0.03, 0.0)
        _, _, _, taper = self._mouth(q)
        d[list(topo.LIPS_OUTER_UPPER), 1] -= 0.008 * taper[list(topo.LIPS_OUTER_UPPER)]
        d[list(topo.LIPS_OUTER_LOWER), 1] += 0.008 * taper[list(topo.LIPS_OUTER_LOWER)]
        return d

    def _upper_lip_raise(self, q):
        _, _, _, taper = self._mouth(q)
        d = np.zeros((len(q), 2))
        d[_UPPER, 1] = -0.02 * np.sqrt(taper[_UPPER])
        return d

    def _lower_lip_drop(self, q):
        _, _, _, taper = self._mouth(q)
        d = np.zeros((len(q), 2))
        d[_LOWER, 1] = 0.02 * np.sqrt(taper[_LOWER])
        return d

    def _lip_press(self, q):
        _, _, _, taper = self._mouth(q)
        d = np.zeros((len(q), 2))
        d[list(topo.LIPS_OUTER_UPPER), 1] = 0.01
        d[list(topo.LIPS_OUTER_LOWER), 1] = -0.01
        return d * taper[:, None]

    def _blink(self, q, upper, lower, brow):
        """The upper lid comes down onto the lower one (which rises a little); the band above the
        lid's points (lashes, the top of the iris) is squeezed into the lid's edge, and the skin up
        to the brow stretches down over it."""
        d = np.zeros((len(q), 2))
        gap = q[list(lower), 1] - q[list(upper), 1]
        order = np.argsort(q[list(upper), 0])          # np.interp needs rising x
        lid, lid_gap = q[list(upper)][order], gap[order]
        lid_y = np.interp(q[:, 0], lid[:, 0], lid[:, 1])
        drop = np.interp(q[:, 0], lid[:, 0], 0.85 * lid_gap)
        band = LASH_BAND * np.interp(q[:, 0], lid[:, 0], lid_gap)
        above = lid_y - q[:, 1]                       # distance above the lid line
        reach = lid_y - q[list(brow), 1].mean()       # up to the brow
        top = drop + 0.85 * band
        fade = np.clip((reach - above) / np.maximum(reach - band, 1e-6), 0, 1)
        move = np.where(above <= band, drop + 0.85 * above, top * fade)
        skin = (q[:, 0] > lid[:, 0].min()) & (q[:, 0] < lid[:, 0].max()) & (above > 0) \
            & (above < reach)
        d[skin, 1] = move[skin]
        d[list(lower), 1] = -0.15 * gap
        d[list(upper), 1] = 0.85 * gap
        return d

    def _blink_right(self, q):
        return self._blink(q, topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER, topo.RIGHT_BROW)

    def _blink_left(self, q):
        return self._blink(q, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER, topo.LEFT_BROW)

    def _brows(self, q):
        d = np.zeros((len(q), 2))
        brows = list(topo.RIGHT_BROW + topo.LEFT_BROW)
        eyes_y = q[list(topo.RIGHT_EYE_UPPER + topo.LEFT_EYE_UPPER), 1].mean()
        brow_y = q[brows, 1].mean()
        # forehead skin above the brows follows, fading toward the hairline; the lids stay
        frac = _smooth((eyes_y - q[:, 1]) / (eyes_y - brow_y + 1e-9))
        frac = np.where(q[:, 1] < brow_y, _smooth((q[:, 1] - q[topo.FOREHEAD_TOP, 1])
                                                   / (brow_y - q[topo.FOREHEAD_TOP, 1] + 1e-9)),
                        frac)
        d[:, 1] = -0.03 * frac
        d[brows, 1] = -0.03
        return d

    def _closing(self, q):
        """Displacement that brings lips apart in the photo together (the jaw does most of it,
        the upper lip comes down with the mesh's rings inside it)."""
        up, low = np.array(topo.LIPS_INNER_UPPER), np.array(topo.LIPS_INNER_LOWER)
        gap = np.clip(q[low, 1] - q[up, 1], 0, None)
        d = np.zeros((len(q), 2))
        mid = float(gap[len(gap) // 2])
        if mid < LIPS_APART:
            return d
        _, _, u, _ = self._mouth(q)

        def across(points, values, **ends):     # values over a lip's points, spread over u
            at = np.argsort(u[points])
            return np.interp(u, u[points][at], values[at], **ends)
        outer = list(topo.LIPS_OUTER_UPPER)
        inner_y, column = across(up, q[up, 1]), across(up, gap, left=0.0, right=0.0)
        # the jaw comes up: the chin by the gap at the middle, the skin just below the lower lip
        # by the gap above it (none beside the corners), blended in between (else the cheek
        # under a corner rises past the corner and folds); above the lower lip nothing
        lower_y = across(low, q[low, 1])
        depth = _smooth((q[:, 1] - lower_y) / np.maximum(q[topo.CHIN, 1] - lower_y, 1e-3))
        jaw = column + (mid * self._jaw_weight(q) - column) * depth
        d[:, 1] = np.where(q[:, 1] >= lower_y, (UPPER_SHARE - 1) * jaw, 0.0)
        # the whole upper lip comes down with its inner edge (the rings between its inner and
        # outer edges too: held, the lip folded over them), the skin above easing to the nose
        band = inner_y - across(up, q[outer, 1])
        above = inner_y - q[:, 1]
        reach = np.maximum(inner_y - q[topo.NOSE_TIP, 1] - band, 1e-3)
        lip = (above > 0) & (q[:, 1] > q[topo.NOSE_TIP, 1]) & (np.abs(u) < 1)
        d[lip, 1] = UPPER_SHARE * column[lip] * (1 - _smooth((above[lip] - band[lip]) / reach[lip]))
        d[up, 1] = UPPER_SHARE * gap
        d[low, 1] = (UPPER_SHARE - 1) * gap
        d[outer, 1] = UPPER_SHARE * column[outer]     # by its own place across the mouth
        return d

    # --- per frame ------------------------------------------------------------------------------
    def displace(self, motion: np.ndarray, points=None) -> np.ndarray:
        """Motion vector (len(CHANNELS),) -> displaced mesh points (N, 2) in image pixels; with
        `points` (indices) only those (and the lips may then cross: no keeping them apart)."""
        m = np.asarray(motion, np.float64)
        if points is None:
            local = self.q + self.closing + np.tensordot(m[:len(LINEAR)], self.fields, 1)
            local = self._keep_lips_apart(local)
            depth = self.rest[:, 2]
        else:
            local = (self.q[points] + self.closing[points]
                     + np.tensordot(m[:len(LINEAR)], self.fields[:, points], 1))
            depth = self.rest[points, 2]
        xy = local * self.height @ self.rot + self.origin
        return self.head_transform(m, xy, depth)

    @staticmethod
    def _keep_lips_apart(local):
        up, low = list(topo.LIPS_INNER_UPPER), list(topo.LIPS_INNER_LOWER)
        local[low, 1] = np.maximum(local[low, 1], local[up, 1])
        return local

    def head_transform(self, m, xy, z):
        """Rotate points (x, y, depth z) about a pivot behind the face's middle, then translate."""
        yaw, pitch, roll = (math.radians(m[INDEX[k]]) for k in ("head_yaw", "head_pitch", "head_roll"))
        shift = np.array([m[INDEX["head_x"]], m[INDEX["head_y"]]]) @ self.rot * self.height
        if not (yaw or pitch or roll or shift.any()):
            return xy
        pivot = self.origin + self.rot[1] * 0.45 * self.height
        # face axes; depth toward the camera (MediaPipe's z grows away from it), flattened so a
        # turn shifts the nose more than the cheeks without folding the cheek over the face's edge
        p = np.column_stack([(xy - pivot) @ self.rot.T, HEAD_DEPTH * (0.4 * self.height - z)])
        cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                                  math.cos(roll), math.sin(roll))
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        p = p @ (r_roll @ r_pitch @ r_yaw).T
        return p[:, :2] @ self.rot + pivot + shift
