"""The inside of the mouth, painted where the lips part: a shaded cavity, a tongue, and rows of
upper and lower teeth, in the mouth's own box only.

Colours come from the photo once per avatar: the cavity and tongue from its lip colour, the teeth
from its own teeth when the reference shows them (else an enamel tone matched to the skin's
brightness); a grayscale photo gets a grayscale mouth, and the photo's own grain (its fine noise,
measured on the cheeks) is laid over the painting so that it does not look pasted. The upper teeth
hang from under the upper lip as the skull holds them (they follow the head, not the lips), the
lower teeth ride on the jaw, so raising the upper lip or dropping the jaw reveals them as on a face.
Light comes from above: the upper lip shades the top of the teeth and the cavity, the cavity and
teeth darken toward the corners and the back, and the lips' inner edges are soft and rounded.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.portrait import topology as topo

UPPER = np.array(topo.LIPS_INNER_UPPER)
LOWER = np.array(topo.LIPS_INNER_LOWER)
UPPER_TEETH = 0.036     # visible height of the upper central incisors, in face heights
LOWER_TEETH = 0.016
TEETH_REACH = 0.75      # of the opening, at most, under the upper lip
MIN_SLIT = 0.012         # face heights: the opening drawn at least this wide at its middle ...
SLIT_FULL = 0.006       # ... where the lips are this far apart (less: in proportion)
# where one tooth meets the next across half the arch (0 = middle, 1 = the mouth's corner):
# central and lateral incisors, canine, premolars, molar
TOOTH_EDGES = np.array([0.0, 0.21, 0.38, 0.53, 0.67, 0.8, 0.92, 1.2])
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_TABLE = 512            # samples across the arch for what depends on the place across it alone


def _polygon_pixels(image, polygon, hole=None):
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    if hole is not None:
        cv2.fillPoly(mask, [np.round(hole).astype(np.int32)], 0)
    return image[mask > 0].reshape(-1, 3).astype(np.float32)


def lip_colour(image, polygon, hole=None):
    """Mean colour of the lips' pixels inside `polygon` (less `hole`); a plain lip red where the
    polygon covers no pixel."""
    lips = _polygon_pixels(image, polygon, hole)
    return lips.mean(0) if len(lips) else np.array([170.0, 100, 100])


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
_CAP = np.sqrt(1 - np.linspace(-1, 1, len(_SMOOTH)) ** 2)[:, None]


def inner_polygon(points, smooth=False, least=0.0, full=1.0):
    """The opening between the inner lips; `smooth`: a smooth curve whose ends follow the lips'
    rounded corners (the points alone cut a dropped jaw's opening square at the ends): toward
    each corner the two lips' curves close in on their middle line like an ellipse; where they
    are `full` pixels apart or more, at least `least` pixels apart at the middle (less apart: in
    proportion; touching: not parted)."""
    upper, lower = points[UPPER, :2], points[LOWER, :2]
    if smooth:
        upper, lower = _SMOOTH @ upper, _SMOOTH @ lower
        middle = (upper + lower) / 2
        upper, lower = middle + (upper - middle) * _CAP, middle + (lower - middle) * _CAP
        if least > 0:
            across = upper[-1] - upper[0]
            down = np.array([-across[1], across[0]]) / max(float(np.linalg.norm(across)), 1e-9)
            apart = (lower - upper) @ down
            want = least * _CAP[:, 0] * _smoothstep(0.0, full, apart)
            short = np.clip(want - apart, 0, None)[:, None] / 2
            upper, lower = upper - short * down, lower + short * down
    return np.concatenate([upper, lower[::-1]])


def _smoothstep(edge0, edge1, x):
    span = np.asarray(edge1 - edge0, np.float32)
    t = np.clip((x - edge0) / np.where(np.abs(span) < 1e-3, 1e-3, span), 0.0, 1.0)
    return t * t * (3 - 2 * t)


# per tooth from the middle (central, lateral, canine, premolars, molars): its own brightness and
# how much dentin yellow shows (shorter laterals read as a later-closing mouth to the landmark
# judge: its sine test saw a 1-frame lag)
TOOTH_SHADE = np.array([1.0, 0.95, 0.95, 0.9, 0.87, 0.84, 0.8])
TOOTH_WARM = np.array([0.08, 0.22, 0.5, 0.35, 0.4, 0.5, 0.5])


def _tooth_profile(u):
    """Per place across the arch (|u| in 0..1): the teeth's shading (a thin dark line where two
    teeth meet, each tooth its own shade), their length (rounded incisal corners,
    a pointed canine) and how warm (dentin-yellow) each tooth is: not a denture's
    uniform row."""
    a = np.abs(u)
    k = np.clip(np.searchsorted(TOOTH_EDGES, a, side="right") - 1, 0, len(TOOTH_EDGES) - 2)
    t = np.clip((a - TOOTH_EDGES[k]) / (TOOTH_EDGES[k + 1] - TOOTH_EDGES[k]), 0, 1)
    gap = (1 - np.sin(np.pi * t)) ** 2     # 1 where teeth meet, 0 mid-tooth
    shade = (1 - 0.3 * gap ** 3) * TOOTH_SHADE[k]
    length = (1 - 0.3 * gap ** 2) * np.where(k == 2, 1 - 0.3 * np.abs(2 * t - 1), 1)
    return shade, length, TOOTH_WARM[k]


class MouthInterior:
    def __init__(self, image: np.ndarray, points: np.ndarray, face_height: float,
                 softness: float = 0.5, grain_scale: float = 1.0, closed=None):
        """image: the reference at output scale; points: its mesh (468, >=2) in the same pixels;
        softness: blur (pixels) matching the photo's own sharpness at this scale; grain_scale:
        output pixels per photo pixel (the size of the photo's grain here); closed: the mesh with
        the all-zero motion when it differs from `points` (the photo's lips apart, moved shut):
        then the line where they meet is drawn. The lips part (and the inside shows) only where
        they are further apart than in the all-zero motion."""
        self.face_height = face_height
        shut = points if closed is None else closed
        self.rest_gap = np.clip(shut[LOWER, 1] - shut[UPPER, 1], 0, None)
        self.draw_seam = closed is not None
        self.softness = softness
        outer = np.concatenate([points[list(topo.LIPS_OUTER_UPPER), :2],
                                points[list(topo.LIPS_OUTER_LOWER[::-1]), :2]])
        inner = inner_polygon(points)
        lip = self.lip = lip_colour(image, outer, inner)
        r = max(2, int(0.03 * face_height))
        patches = [image[max(0, int(y) - r):int(y) + r, max(0, int(x) - r):int(x) + r]
                   for x, y in points[list(topo.CHEEKS), :2]]
        skin_px = np.concatenate([p.reshape(-1, 3) for p in patches]).astype(np.float32)
        skin = skin_px.mean(0) if len(skin_px) else lip
        exposure = float(np.clip(float(skin @ LUMA) / 165.0, 0.55, 1.05))
        teeth = np.array([238.0, 230, 214]) * exposure
        shown = _polygon_pixels(image, inner)
        self.photo_teeth = False
        if len(shown) > 20:   # the photo shows teeth (brighter and less red than its lips): use them
            y = shown @ LUMA
            bright = shown[y >= np.percentile(y, 70)].mean(0)
            chroma = lambda c: float(np.ptp(c))  # noqa: E731
            if (bright.mean() > 0.75 * teeth.mean() and float(bright @ LUMA) > 1.1 * float(lip @ LUMA)
                    and chroma(bright) <= 0.6 * chroma(lip) + 4):
                teeth, self.photo_teeth = bright, True
        self.gray = bool(np.ptp(image.reshape(-1, 3)[::97].astype(np.int16), axis=1).max() <= 2)
        warm = lip / max(float(lip @ LUMA), 1.0)            # the lips' hue at unit brightness
        self.cavity = warm * 52 * exposure                   # lit parts of the cavity
        self.deep = warm * np.array([14.0, 8, 8]) * exposure / warm.clip(0.3)   # the back
        self.tongue = lip * np.array([0.78, 0.52, 0.52])
        # painted enamel is lit as the face is: a little brighter than the skin (on a faded gray
        # print it was the brightest thing), with some of the skin's tint; the photo's own teeth
        # are as bright as the photo has them (capped there, a dark face's teeth read grey)
        if not self.photo_teeth:
            teeth = teeth * min(1.0, 1.3 * float(skin @ LUMA) / max(float(teeth @ LUMA), 1.0))
        self.teeth = 0.86 * teeth + 0.14 * skin
        self.dentin = self.teeth * np.array([0.96, 0.88, 0.72])   # warmer, where enamel is thin
        if self.gray:
            to_gray = lambda c: np.full(3, float(c @ LUMA))  # noqa: E731
            self.cavity, self.deep, self.tongue, self.teeth, self.dentin = map(
                to_gray, (self.cavity, self.deep, self.tongue, self.teeth, self.dentin))
        self.cavity, self.deep, self.tongue, self.teeth, self.dentin = (
            np.asarray(c, np.float32)
            for c in (self.cavity, self.deep, self.tongue, self.teeth, self.dentin))
        self.grain = self._grain(image, patches, grain_scale).astype(np.float32)

    @staticmethod
    def _grain(image, patches, scale):
        """A fixed noise field with the photo's grain: its size (photo pixels) and strength (the
        fine detail left on the cheeks after a blur at that size)."""
        sigma = max(0.8, 0.8 * scale)
        detail = [p.astype(np.float32) @ LUMA for p in patches if min(p.shape[:2]) > 6]
        strength = float(np.mean([np.std(d - cv2.GaussianBlur(d, (0, 0), sigma))
                                  for d in detail])) if detail else 0.0
        h, w = image.shape[:2]
        small = np.random.default_rng(0).normal(0, 1, (max(2, int(h / scale)), max(2, int(w / scale))))
        noise = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        noise -= cv2.GaussianBlur(noise, (0, 0), sigma)
        return noise * (min(strength, 12.0) / (noise.std() + 1e-6))

    def draw(self, frame: np.ndarray, points, upper_teeth, lower_teeth, jaw_open=0.0) -> None:
        """Paint the mouth's inside into `frame` (in place) where the lips `points` part.

        upper_teeth: the inner upper lip's points with the head pose only (where the upper teeth
        hang); lower_teeth: the inner lower lip's with head + jaw (where the lower teeth stand).
        """
        gap = points[LOWER, 1] - points[UPPER, 1] - self.rest_gap
        if gap.max() < 2.0 and self.draw_seam:   # (nearly) shut: the line where they meet
            self._seam(frame, points, gap)
        if gap.max() < 0.6:
            return
        # lips just parted show a dark slit at once, not a line thinner than a pixel
        fh = self.face_height
        poly = inner_polygon(points, smooth=True, least=MIN_SLIT * fh, full=SLIT_FULL * fh)
        h, w = frame.shape[:2]
        pad = int(np.ceil(0.012 * self.face_height)) + 2
        x0, y0 = np.floor(poly.min(0)).astype(int) - pad
        x1, y1 = np.ceil(poly.max(0)).astype(int) + pad + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            return
        off = np.array([x0, y0], np.float64)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round((poly - off) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        cover = mask.astype(np.float32) / 255.0
        # rounded corners and soft edges: blur in proportion to the opening, then re-threshold a
        # little outside the edge (it hides the lips' stretched inner seam)
        soft = float(np.clip(0.22 * gap.max(), 0.6, 0.008 * self.face_height + 0.6))
        blurred = cv2.GaussianBlur(cover, (0, 0), soft)
        alpha = _smoothstep(0.18, 0.62, blurred)[:, :, None]
        inside = self._paint(mask.shape, off, points, upper_teeth, lower_teeth, jaw_open)
        if self.softness > 0.3:
            inside = cv2.GaussianBlur(inside, (0, 0), self.softness)
        inside += self.grain[y0:y1, x0:x1, None]
        roi = frame[y0:y1, x0:x1]
        roi[:] = np.clip(roi * (1 - alpha) + inside * alpha + 0.5, 0, 255).astype(np.uint8)

    def _seam(self, frame, points, gap):
        seam = (points[UPPER, :2] + points[LOWER, :2]) / 2
        thick = max(1, int(round(0.006 * self.face_height)))
        h, w = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(seam.min(0)).astype(int) - thick - 2, 0)
        x1, y1 = np.ceil(seam.max(0)).astype(int) + thick + 3
        roi = frame[y0:min(y1, h), x0:min(x1, w)]
        layer = roi.copy()
        cv2.polylines(layer, [np.round((seam - [x0, y0]) * 16).astype(np.int32)], False,
                      (self.tongue * 0.5).tolist(), thick, cv2.LINE_AA, 4)
        layer = cv2.GaussianBlur(layer, (0, 0), 0.6 + self.softness)
        a = 0.5 * (1 - gap.max() / 2.0)
        cv2.addWeighted(layer, a, roi, 1 - a, 0, dst=roi)

    def _paint(self, shape, off, points, upper_teeth, lower_teeth, jaw_open):
        """The inside, in mouth coordinates: u across (-1..1 corner to corner), v down (pixels)."""
        fh = self.face_height
        left, right = upper_teeth[0], upper_teeth[-1]
        centre = (left + right) / 2 - off
        half = max(float(np.linalg.norm(right - left)) / 2, 1.0)
        ex = (right - left) / (2 * half)
        ey = np.array([-ex[1], ex[0]])
        ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
        dx, dy = xs - centre[0], ys - centre[1]
        # u from the teeth's midline, each half on its own: a turned face's far half is narrower
        mid = float((upper_teeth[len(upper_teeth) // 2] - off - centre) @ ex) / half
        mid = float(np.clip(mid, -0.6, 0.6))

        def across(x):
            return (x - mid) / np.where(x < mid, 1 + mid, 1 - mid)
        u = across((dx * ex[0] + dy * ex[1]) / half).astype(np.float32)
        v = dx * ey[0] + dy * ey[1]
        # everything that depends on u alone is tabulated once over the arch and looked up
        table_u = np.linspace(-1.4, 1.4, _TABLE, dtype=np.float32)

        def curve(pts):   # a lip's inner curve (or the teeth's anchor) as v over u
            q = pts - off - centre
            qu, qv = across(q @ ex / half), q @ ey
            order = np.argsort(qu)
            return np.interp(table_u, qu[order], qv[order])
        shade, tooth_length, warm = _tooth_profile(table_u)
        low_shade, low_length, _ = _tooth_profile(table_u * 1.25)
        u2, arch = table_u ** 2, np.sqrt(np.clip(1 - (table_u / 0.97) ** 2, 0, 1))
        side = _smoothstep(1.02, 0.68, np.abs(table_u))     # the back teeth fade into shadow
        top, bottom = curve(points[UPPER, :2]), curve(points[LOWER, :2])
        opening = np.clip(bottom - top, 0, None)
        # light reaches the teeth through the opening: a barely parted mouth is a dark slit (dim
        # teeth read grey, not dark), a medium one already shows them lit, a wide one whole
        lit = _smoothstep(0.008 * fh, 0.03 * fh, opening)
        root_up = curve(upper_teeth)
        # the upper teeth reach at most TEETH_REACH of the way down the opening: a dark band
        # stays between them and the lower lip (teeth down to it read as a shut mouth)
        up_length = np.clip(np.minimum(UPPER_TEETH * fh * arch * tooth_length * (0.3 + 0.7 * lit),
                                       top + TEETH_REACH * opening - root_up), 0, None)
        table = np.stack([top, opening, root_up,
                          curve(lower_teeth), 1 - 0.7 * u2, 1 - 0.6 * u2,
                          _smoothstep(0.95, 0.55, np.abs(table_u)),
                          1 - 0.45 * u2, LOWER_TEETH * fh * arch * low_length,
                          0.9 * low_shade ** 2 * (1 - 0.4 * u2) * (0.1 + 0.9 * lit),
                          up_length,
                          shade * (1.04 - 0.3 * u2) * (0.1 + 0.9 * lit), side, warm])
        at = np.clip(((u + 1.4) * ((_TABLE - 1) / 2.8) + 0.5).astype(np.int32), 0, _TABLE - 1)
        (lip_top, opening, root_up, root_low, back, tongue_arch, tongue_side, tongue_light,
         low_height, low_light, length, up_light, side, warm) = table.astype(np.float32)[:, at]
        # layers painted back to front, each as a weight on a fixed colour (deep, cavity, tongue,
        # enamel, dentin), so only scalar maps are computed per pixel
        depth = _smoothstep(lip_top, lip_top + 0.8 * opening + 1, v) * back
        w_deep, w_cavity = 1 - depth, depth
        w_tongue, w_teeth, w_dentin = (np.zeros_like(v) for _ in range(3))

        def over(alpha):
            for w in (w_deep, w_cavity, w_tongue, w_teeth, w_dentin):
                w *= 1 - alpha
        # cavity: lit from above through the opening, darkest at the back and in the corners;
        # tongue: lies behind the lower teeth, its top seen when the jaw opens
        wide = float(_smoothstep(0.2, 0.8, jaw_open))
        if wide > 0:
            top = root_low - (0.012 * fh + 0.4 * opening) * tongue_arch * wide
            alpha = _smoothstep(top - 0.8, top + 1.5, v) * tongue_side
            over(alpha)
            w_tongue += alpha * (0.45 + 0.55 * _smoothstep(top - 0.5, top + 0.04 * fh, v)) * tongue_light
        # lower teeth: a short row standing on the jaw, in the lower lip's shadow
        edge = root_low - low_height
        alpha = (_smoothstep(edge - 0.7, edge + 0.7, v)
                 * _smoothstep(root_low + 0.25 * low_height + 1, root_low, v) * side)
        over(alpha)
        lit = alpha * low_light * (0.7 + 0.3 * _smoothstep(edge + low_height, edge, v))
        w_teeth += 0.6 * lit
        w_dentin += 0.4 * lit
        # below them the lower lip's wet inner side
        alpha = _smoothstep(root_low, root_low + 0.4 * low_height + 1, v)
        over(alpha)
        w_tongue += 0.55 * alpha
        # upper teeth: hang from under the upper lip; the lip shades their top, the incisal edge
        # is a little translucent
        edge = root_up + length
        alpha = _smoothstep(edge + 0.7, edge - 0.7, v) * side
        over(alpha)
        under_lip = _smoothstep(lip_top - 0.5, lip_top + 0.35 * length + 1, v)
        translucent = 0.28 * _smoothstep(edge - 0.3 * length - 0.5, edge, v)
        lit = alpha * (0.78 + 0.22 * under_lip) * up_light * (1 - translucent)
        warm = np.minimum(warm + 0.35 * (1 - under_lip), 1)    # dentin shows near the gum
        w_teeth += lit * (1 - warm)
        w_dentin += lit * warm
        w_cavity += alpha * 1.5 * translucent
        weights = np.stack([w_deep, w_cavity, w_tongue, w_teeth, w_dentin], -1)
        inside = weights @ np.stack([self.deep, self.cavity, self.tongue, self.teeth, self.dentin])
        return inside
