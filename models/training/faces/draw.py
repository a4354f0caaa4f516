"""Antialiased cv2 drawing of one procedural face frame, in face units mapped through a head pose.

Face units: the face's half height is 1, x to the viewer's right, y down, origin at the face centre.
Everything is drawn as subpixel polygons (cv2 `shift`), so slow motion moves smoothly, not in steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .identity import FaceIdentity, luminance

_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
_UNIT_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 33)[:-1]), np.sin(np.linspace(0, 2 * np.pi, 33)[:-1])], 1)
_MOUTH_X = np.linspace(-1.0, 1.0, 15)
_MOUTH_PROFILE = np.sqrt(1.0 - _MOUTH_X ** 2)


@dataclass
class Pose:
    cx: float  # face centre, pixels
    cy: float
    scale: float  # pixels per face unit
    roll: float = 0.0  # radians
    yaw: float = 0.0  # features shift sideways by this many face units (a turn of the head)
    nod: float = 0.0  # features shift down by this many face units
    jaw: float = 0.0  # mouth openness: the chin drops a little

    def px(self, xy: np.ndarray, depth: float = 0.0) -> np.ndarray:
        """Face units -> fixed-point pixel coordinates. depth 1 = on the face's front, moves with yaw/nod."""
        xy = np.asarray(xy, np.float64)
        x = xy[..., 0] + self.yaw * depth
        y = xy[..., 1] + self.nod * depth
        c, s = math.cos(self.roll), math.sin(self.roll)
        out = np.stack([self.cx + self.scale * (c * x - s * y), self.cy + self.scale * (s * x + c * y)], -1)
        return np.round(out * _ONE).astype(np.int32)


def _fill(img, pose: Pose, pts, colour, depth=0.0):
    cv2.fillPoly(img, [pose.px(pts, depth)], colour, _AA, _SHIFT)


def _line(img, pose: Pose, pts, colour, thickness: int, depth=0.0, closed=False):
    cv2.polylines(img, [pose.px(pts, depth)], closed, colour, thickness, _AA, _SHIFT)


def _ellipse_pts(cx, cy, rx, ry):
    return _UNIT_CIRCLE * (rx, ry) + (cx, cy)


def _shade(colour, factor: float):
    return tuple(int(min(255, c * factor)) for c in colour)


def _line_width(pose: Pose) -> int:
    return max(1, int(round(pose.scale / 40)))


def face_outline(ident: FaceIdentity, jaw: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 49)[:-1]
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    x = ident.face_half_width * c
    y = s.copy()
    taper = 1.0 - (1.0 - ident.jaw_width) * s[lower] ** 2
    x[lower] = ident.face_half_width * np.sign(c[lower]) * np.abs(c[lower]) ** ident.jaw_squareness * taper
    y[lower] *= 1.0 + 0.07 * jaw
    return np.stack([x, y], 1)


def _hair_cap(ident: FaceIdentity, grow: float, hairline: float) -> np.ndarray:
    """Hair covering the top of the head down to a hairline curve (hairline: y at the centre)."""
    w = ident.face_half_width
    t = np.linspace(np.pi, 2 * np.pi, 17)
    top = np.stack([(w + grow) * np.cos(t), (1.0 + grow) * np.sin(t) + 0.05], 1)
    xs = np.linspace(w + grow * 0.5, -w - grow * 0.5, 13)
    line = np.stack([xs, hairline + (0.05 - hairline) * (np.abs(xs) / w) ** 2], 1)
    return np.concatenate([top, line])


def draw_back_hair(img, pose: Pose, ident: FaceIdentity):
    w, colour = ident.face_half_width, ident.hair
    if ident.hair_style == "long":
        pts = np.array([[-w - 0.2, -0.2], [-w - 0.28, 0.6], [-w - 0.3, 1.45], [-0.2, 1.3],
                        [0.2, 1.3], [w + 0.3, 1.45], [w + 0.28, 0.6], [w + 0.2, -0.2]])
        _fill(img, pose, np.concatenate([_ellipse_pts(0, -0.05, w + 0.2, 1.12)[16:], pts[::-1]]), colour, -0.3)
    elif ident.hair_style == "afro":
        _fill(img, pose, _ellipse_pts(0, -0.3, w + 0.5, 1.2), colour, -0.3)
    elif ident.hair_style == "bun":
        _fill(img, pose, _ellipse_pts(0, -1.12, 0.32, 0.27), colour, -0.3)


def draw_body(img, body: Pose, ident: FaceIdentity):
    neck = _shade(ident.skin, 0.82)
    shirt = ident.shirt
    shoulders = np.array([[-0.45, 1.05], [-1.35, 1.3], [-1.9, 1.7], [-2.0, 2.6], [2.0, 2.6], [1.9, 1.7],
                          [1.35, 1.3], [0.45, 1.05]])
    _fill(img, body, shoulders, shirt)
    _fill(img, body, np.array([[-0.34, 0.4], [-0.36, 1.15], [0.36, 1.15], [0.34, 0.4]]), neck)
    if ident.collar == "round":
        _fill(img, body, _ellipse_pts(0, 1.08, 0.4, 0.12)[:17], neck)
        _line(img, body, _ellipse_pts(0, 1.1, 0.42, 0.14)[:17], _shade(shirt, 0.7), _line_width(body))
    elif ident.collar == "v":
        _fill(img, body, np.array([[-0.36, 1.05], [0.0, 1.45], [0.36, 1.05]]), neck)
        _line(img, body, np.array([[-0.38, 1.05], [0.0, 1.47], [0.38, 1.05]]), _shade(shirt, 0.7), _line_width(body))


def draw_head(img, pose: Pose, ident: FaceIdentity):
    w, skin = ident.face_half_width, ident.skin
    ear = _shade(skin, 0.9)
    for side in (-1, 1):
        _fill(img, pose, _ellipse_pts(side * (w - 0.02), 0.12, 0.13, 0.2), ear, -0.5)
        _fill(img, pose, _ellipse_pts(side * (w + 0.02), 0.12, 0.06, 0.12), _shade(skin, 0.78), -0.5)
        if ident.earrings is not None:
            _fill(img, pose, _ellipse_pts(side * (w + 0.02), 0.38, 0.05, 0.05), ident.earrings, -0.5)
    outline = face_outline(ident, pose.jaw)
    _fill(img, pose, outline, skin)
    _line(img, pose, outline, _shade(skin, 0.86), 1, closed=True)


def draw_front_hair(img, pose: Pose, ident: FaceIdentity):
    style, colour = ident.hair_style, ident.hair
    if style == "none":
        return
    if style == "buzz":
        blend = tuple(int(0.55 * h + 0.45 * s) for h, s in zip(colour, ident.skin))
        _fill(img, pose, _hair_cap(ident, 0.02, -0.62), blend, -0.2)
    elif style == "fringe":
        _fill(img, pose, _hair_cap(ident, 0.1, -0.3 - 0.3 * (0.5 - ident.hairline)), colour, -0.2)
    elif style == "side":
        cap = _hair_cap(ident, 0.09, -0.55)
        cap[-13:, 1] += np.linspace(0.35, -0.05, 13) * (cap[-13:, 0] < 0.3)
        _fill(img, pose, cap, colour, -0.2)
    else:
        grow = {"short": 0.08, "long": 0.12, "bun": 0.06, "afro": 0.2}[style]
        _fill(img, pose, _hair_cap(ident, grow, -0.8 + ident.hairline), colour, -0.2)


def draw_eyes(img, pose: Pose, ident: FaceIdentity, closure: float, gaze_xy, brow_lift: float):
    ew, eh = ident.eye_size, ident.eye_size * ident.eye_aspect
    iris_r = min(0.95 * eh, 0.55 * ew)
    lash = _shade(ident.brow, 0.6)
    lid = _shade(ident.skin, 0.92)
    width = _line_width(pose)
    t_upper = np.linspace(np.pi, 2 * np.pi, 9)
    for side in (-1, 1):
        ex, ey = side * ident.eye_spacing, ident.eye_height
        _fill(img, pose, _ellipse_pts(ex, ey, ew, eh), (246, 244, 238), 1)
        ix = ex + gaze_xy[0] * (ew - iris_r) * 0.7
        iy = ey + gaze_xy[1] * (eh - iris_r)
        _fill(img, pose, _ellipse_pts(ix, iy, iris_r, iris_r), ident.iris, 1)
        _fill(img, pose, _ellipse_pts(ix, iy, iris_r * 0.45, iris_r * 0.45), (15, 12, 12), 1)
        _fill(img, pose, _ellipse_pts(ix + 0.35 * iris_r, iy - 0.35 * iris_r, 0.22 * iris_r, 0.22 * iris_r),
              (255, 255, 255), 1)
        upper = np.stack([ex + ew * np.cos(t_upper), ey + eh * np.sin(t_upper)], 1)
        if closure > 0.02:
            lid_edge = upper.copy()
            lid_edge[:, 1] = ey + eh * np.sin(t_upper) * (1.0 - 2.0 * closure)
            _fill(img, pose, np.concatenate([upper, lid_edge[::-1]]), lid, 1)
            _line(img, pose, lid_edge, lash, width, 1)
        else:
            _line(img, pose, upper, lash, width, 1)
        # brow: a tapered arc
        bx = ex + side * 0.02 + np.linspace(-1, 1, 9) * ew * 1.25
        arch = -ident.brow_arch * (1 - np.linspace(-1, 1, 9) ** 2)
        by = ey - eh - 0.11 - brow_lift + arch + side * 0.015 * np.linspace(-1, 1, 9)
        thick = ident.brow_thickness * (1.0 - 0.5 * ((np.linspace(-1, 1, 9) * side + 1) / 2) ** 2)
        _fill(img, pose, np.concatenate([np.stack([bx, by - thick / 2], 1), np.stack([bx, by + thick / 2], 1)[::-1]]),
              ident.brow, 1)


def draw_nose(img, pose: Pose, ident: FaceIdentity):
    shadow = _shade(ident.skin, 0.8)
    tip_y = ident.eye_height + 0.1 + ident.nose_length
    nw = ident.nose_width
    _line(img, pose, np.array([[-0.04, ident.eye_height + 0.08], [-0.06, tip_y - 0.1], [-nw * 0.9, tip_y - 0.02]]),
          _shade(ident.skin, 0.9), 1, 1)
    t = np.linspace(0.15 * np.pi, 0.85 * np.pi, 9)
    _line(img, pose, np.stack([nw * np.cos(t), tip_y - 0.02 + 0.05 * np.sin(t)], 1), shadow, _line_width(pose), 1)


def mouth_interior_colour(skin) -> tuple[int, int, int]:
    return tuple(int(min(c * 0.25, cap)) for c, cap in zip(skin, (48, 14, 18)))


def draw_mouth(img, pose: Pose, ident: FaceIdentity, openness: float, spread: float):
    half_w = ident.mouth_width * (1.0 + 0.22 * spread)
    gap = 0.26 * openness * (1.0 - 0.15 * spread)
    upper, lower = ident.upper_lip * (1.0 - 0.2 * spread), ident.lower_lip * (1.0 - 0.2 * spread)
    y0 = ident.mouth_height + 0.25 * gap  # the jaw drops: the opening grows mostly downwards
    x = _MOUTH_X * half_w
    profile = _MOUTH_PROFILE
    lip_profile = profile ** 0.6
    bow = 0.35 * np.exp(-((_MOUTH_X * 4) ** 2))  # Cupid's bow: the upper lip dips at the centre
    inner_top = y0 - 0.5 * gap * profile
    inner_bottom = y0 + 0.5 * gap * profile
    outer_top = inner_top - upper * lip_profile * (1.0 - bow)
    outer_bottom = inner_bottom + lower * lip_profile
    lips_shape = np.concatenate([np.stack([x, outer_top], 1), np.stack([x, outer_bottom], 1)[::-1]])
    _fill(img, pose, lips_shape, ident.lips, 1)
    corner_shade = _shade(ident.lips, 0.75)
    if gap * pose.scale > 0.6:
        inside = np.concatenate([np.stack([x, inner_top], 1), np.stack([x, inner_bottom], 1)[::-1]])
        _fill(img, pose, inside, mouth_interior_colour(ident.skin), 1)
        if ident.teeth and openness > 0.3:
            teeth_depth = np.minimum(0.28 * gap, 0.04) * profile
            teeth = np.concatenate([np.stack([x * 0.8, inner_top], 1),
                                    np.stack([x * 0.8, inner_top + teeth_depth], 1)[::-1]])
            _fill(img, pose, teeth, (236, 232, 220), 1)
    else:
        _line(img, pose, np.stack([x, inner_top], 1), corner_shade, 1, 1)
    # the lower lip's sheen: a lighter stroke keeps the lips readable on every skin tone
    sheen = _shade(ident.lips, 1.12) if luminance(ident.lips) < 200 else ident.lips
    _line(img, pose, np.stack([x[4:-4] * 0.7, outer_bottom[4:-4] - 0.45 * lower], 1), sheen, 1, 1)


def draw_glasses(img, pose: Pose, ident: FaceIdentity):
    if ident.glasses is None:
        return
    r = ident.eye_size * 1.45
    width = _line_width(pose)
    for side in (-1, 1):
        ex, ey = side * ident.eye_spacing, ident.eye_height
        if ident.glasses == "round":
            _line(img, pose, _ellipse_pts(ex, ey, r, r * 0.85), ident.glasses_colour, width, 1, closed=True)
        else:
            rect = np.array([[ex - r, ey - r * 0.7], [ex + r, ey - r * 0.7], [ex + r * 0.9, ey + r * 0.7],
                             [ex - r * 0.9, ey + r * 0.7]])
            _line(img, pose, rect, ident.glasses_colour, width, 1, closed=True)
        _line(img, pose, np.array([[side * (ident.eye_spacing + r), ey - 0.05],
                                   [side * ident.face_half_width, ey - 0.02]]), ident.glasses_colour, width, 0.5)
    _line(img, pose, np.array([[-ident.eye_spacing + r, ident.eye_height - 0.04], [0, ident.eye_height - 0.07],
                               [ident.eye_spacing - r, ident.eye_height - 0.04]]), ident.glasses_colour, width, 1)


def draw_hat(img, pose: Pose, ident: FaceIdentity):
    if ident.hat is None:
        return
    w, colour = ident.face_half_width, ident.hat_colour
    if ident.hat == "beanie":
        _fill(img, pose, _hair_cap(ident, 0.12, -0.5) + (0, -0.05), colour, -0.2)
        _fill(img, pose, np.array([[-w - 0.12, -0.62], [w + 0.12, -0.62], [w + 0.13, -0.45], [-w - 0.13, -0.45]]),
              _shade(colour, 0.85), -0.2)
    elif ident.hat == "cap":
        _fill(img, pose, _hair_cap(ident, 0.1, -0.55) + (0, -0.03), colour, -0.2)
        _fill(img, pose, _ellipse_pts(0.0, -0.55, w + 0.15, 0.12)[16:] + (0, 0.04), _shade(colour, 0.8), 0.3)
    else:
        _fill(img, pose, _ellipse_pts(0, -0.6, w + 0.55, 0.16), _shade(colour, 0.85), -0.2)
        _fill(img, pose, np.array([[-w + 0.05, -0.62], [-w + 0.12, -1.35], [w - 0.12, -1.35], [w - 0.05, -0.62]]),
              colour, -0.2)
