"""Motion vector -> a frame made of the photo's own pixels, with only the mouth's inside drawn.

Per avatar: a square crop around the face (`crop_scale` face heights), the mesh in output pixels,
and a triangulation of the mesh plus two rings around the face oval (hair, ears, neck) and points on
the crop's border. Per frame: the mesh moves (`MotionBasis`), the rings follow the head rigidly
(the neck and the outer ring less), the border stays, so the background is held and nothing tears
at the face's edge. Each triangle's affine map from its moved place back to its rest place gives
the backward flow, rasterised at 1/`map_step` resolution (the flow is piecewise affine and
continuous, so a bilinear upsample is exact up to rounding) and applied with one `cv2.remap` of the
photo. Then the mouth's inside is painted where the lips part (`mouth.MouthInterior`).

`paste=True` renders the crop at the photo's own scale and returns the whole photo with it pasted
back (the crop's border does not move, so there is no seam).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from models.portrait import topology as topo
from models.portrait.face_mesh import FaceMesh, as_rgb
from models.portrait.motion import CHANNELS, INDEX, MotionBasis
from models.portrait.mouth import LOWER, UPPER, MouthInterior, inner_polygon

_HEAD = [INDEX[k] for k in CHANNELS if k.startswith("head_")]
_RINGS = ((1.25, 1.0, 0.45, 0.5), (1.7, 0.5, 0.15, 0.15))  # scale, head above/below chin, expression


class PortraitRenderer:
    def __init__(self, photo: np.ndarray, mesh: FaceMesh, size: int = 512, crop_scale: float = 2.0,
                 paste: bool = False, map_step: int = 2):
        self.photo = as_rgb(photo, [])
        fh = mesh.face_height
        oval = mesh.points[list(topo.FACE_OVAL), :2].astype(np.float64)
        centre = oval.mean(0) + np.array([0.0, 0.1 * fh])
        side = crop_scale * fh
        self.paste = paste
        self.size = int(round(side)) if paste else int(size)
        self.scale = 1.0 if paste else self.size / side      # output pixels per photo pixel
        self.origin = centre - self.size / self.scale / 2    # crop's top-left in the photo
        if paste:
            self.origin = np.round(self.origin)
        self.source, self.source_scale = self.photo, 1.0
        if self.scale < 1:  # the face is larger than needed: shrink the photo once, not per frame
            self.source_scale = self.scale
            self.source = cv2.resize(self.photo, None, fx=self.scale, fy=self.scale,
                                     interpolation=cv2.INTER_AREA)
        points = mesh.points.astype(np.float64).copy()
        points[:, :2] = (points[:, :2] - self.origin) * self.scale
        points[:, 2] *= self.scale
        self.basis = MotionBasis(points)
        self._build_mesh(points, oval)
        self.map_step = map_step
        n = -(-self.size // map_step)
        self.gy, self.gx = np.mgrid[0:n, 0:n].astype(np.float32)
        # map-grid pixel -> source pixel with nothing moved (for pixels no triangle covers)
        k = map_step / self.scale * self.source_scale
        off = ((0.5 * map_step - 0.5) / self.scale + self.origin) * self.source_scale
        self.identity = np.array([k, 0.0, off[0], 0.0, k, off[1]])
        self.reference = self._warp(self.rest)   # the crop as the photo has it
        self.mouth = MouthInterior(self.reference, self.basis.rest, self.basis.height,
                                   softness=max(0.5, 0.45 * self.scale / self.source_scale),
                                   grain_scale=self.scale,
                                   closed=self.basis.displace(np.zeros(len(CHANNELS)))
                                   if self.basis.closing.any() else None)
        if self.basis.closing.any():
            self._fill_open_mouth()

    def _fill_open_mouth(self):
        """The photo shows teeth or an open mouth: paint that opening over with the lips' own
        colours (inpainting) in the source, so lips closed over it never show slivers of teeth."""
        poly = inner_polygon(self.rest_source[:topo.NUM_POINTS])
        x0, y0 = np.floor(poly.min(0)).astype(int) - 6
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 7
        h, w = self.source.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round((poly - [x0, y0]) * 16).astype(np.int32)], 255, cv2.LINE_8, 4)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
        self.source = self.source.copy()
        roi = np.ascontiguousarray(self.source[y0:y1, x0:x1])
        self.source[y0:y1, x0:x1] = cv2.inpaint(roi, mask, 3, cv2.INPAINT_TELEA)

    def _build_mesh(self, points, oval_photo):
        s = self.size
        oval = (oval_photo - self.origin) * self.scale
        centre = oval.mean(0)
        chin_y = points[topo.CHIN, 1]
        rings, self.ring_weights = [], []
        for scale, head_up, head_down, expr in _RINGS:
            ring = centre + (oval - centre) * scale
            head = np.where(ring[:, 1] > chin_y, head_down, head_up)
            keep = (ring > 4).all(1) & (ring < s - 5).all(1)
            rings.append(ring[keep])
            self.ring_weights.append((head[keep], expr, np.array(topo.FACE_OVAL)[keep]))
        edge = np.linspace(0, s - 1, 6)
        border = np.unique(np.concatenate([np.stack([edge, np.zeros(6)], 1),
                                           np.stack([edge, np.full(6, s - 1.0)], 1),
                                           np.stack([np.zeros(6), edge], 1),
                                           np.stack([np.full(6, s - 1.0), edge], 1)]), axis=0)
        self.rest = np.concatenate([points[:, :2], *rings, border])
        self.triangles = Delaunay(self.rest).simplices
        self.n_ring = [len(r) for r in rings]
        # backward map targets: rest positions in source-image pixels
        self.rest_source = ((self.rest / self.scale) + self.origin) * self.source_scale

    def vertices(self, motion: np.ndarray) -> tuple:
        """Moved positions of all triangulation vertices, and the moved mesh for the mouth."""
        m = np.asarray(motion, np.float64)
        mesh = self.basis.displace(m)
        no_head = m.copy()
        no_head[_HEAD] = 0
        expression = self.basis.displace(no_head) - self.basis.rest[:, :2]
        moved = [mesh]
        start = topo.NUM_POINTS
        for count, (head_w, expr_w, oval_idx) in zip(self.n_ring, self.ring_weights):
            ring = self.rest[start:start + count]
            depth = self.basis.rest[oval_idx, 2]   # its oval point's depth: no shear at the edge
            rigid = self.basis.head_transform(m, ring, depth) - ring
            moved.append(ring + head_w[:, None] * rigid + expr_w * expression[oval_idx])
            start += count
        moved.append(self.rest[start:])
        return np.concatenate(moved), mesh

    def _flow(self, moved: np.ndarray, window, triangles) -> np.ndarray:
        """Backward map (output pixel -> source pixel) over a window (y0, y1, x0, x1) of the map
        grid, piecewise affine over `triangles` moved; the rest of the window keeps the identity.
        Returns (h, w, 2) float32 in output pixels (the window times `map_step`, clipped)."""
        step = self.map_step
        gy0, gy1, gx0, gx1 = window
        dst = (moved + 0.5) / step - 0.5                    # in map-grid pixels
        tri = self.triangles[triangles]
        p0, p1, p2 = (dst[tri[:, k]] for k in range(3))
        s0, s1, s2 = (self.rest_source[tri[:, k]] for k in range(3))
        d1, d2, e1, e2 = p1 - p0, p2 - p0, s1 - s0, s2 - s0
        det = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
        ok = np.abs(det) > 1e-6
        inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        # J = [e1 e2] @ inverse([d1 d2]); source = J @ p + (s0 - J @ p0)
        j00 = (e1[:, 0] * d2[:, 1] - e2[:, 0] * d1[:, 1]) * inv_det
        j01 = (e2[:, 0] * d1[:, 0] - e1[:, 0] * d2[:, 0]) * inv_det
        j10 = (e1[:, 1] * d2[:, 1] - e2[:, 1] * d1[:, 1]) * inv_det
        j11 = (e2[:, 1] * d1[:, 0] - e1[:, 1] * d2[:, 0]) * inv_det
        c0 = s0[:, 0] - j00 * p0[:, 0] - j01 * p0[:, 1]
        c1 = s0[:, 1] - j10 * p0[:, 0] - j11 * p0[:, 1]
        coef = np.concatenate([np.stack([j00, j01, c0, j10, j11, c1]), self.identity[:, None]], 1)
        coef = coef.astype(np.float32)
        ids = np.full((gy1 - gy0, gx1 - gx0), len(tri), np.int32)   # identity where unpainted
        fixed = np.round((np.stack([p0, p1, p2], 1) - [gx0, gy0]) * 16).astype(np.int32)
        # smallest first: a triangle squeezed shut (a closing lid, lips meeting over teeth) must
        # not paint over its healthy neighbours along the shared edges
        order = np.flatnonzero(ok)[np.argsort(np.abs(det[ok]))]
        fill = cv2.fillConvexPoly
        for poly, t in zip(list(fixed[order]), order.tolist()):
            fill(ids, poly, t, cv2.LINE_8, 4)
        a = [np.take(c, ids) for c in coef]
        gx, gy = self.gx[gy0:gy1, gx0:gx1], self.gy[gy0:gy1, gx0:gx1]
        map_x, map_y = a[0] * gx, a[3] * gx
        map_x += a[1] * gy
        map_x += a[2]
        map_y += a[4] * gy
        map_y += a[5]
        # upsample exactly: pad by linear extrapolation (odd reflection) so the edge pixels are
        # interpolated, not clamped, and resize by an exact factor, then crop
        h, w = ids.shape
        y1, x1 = min(gy1 * step, self.size), min(gx1 * step, self.size)
        return tuple(cv2.resize(np.pad(m, 1, mode="reflect", reflect_type="odd"),
                                ((w + 2) * step, (h + 2) * step), interpolation=cv2.INTER_LINEAR)
                     [step:step + y1 - gy0 * step, step:step + x1 - gx0 * step] for m in (map_x, map_y))

    def _warp(self, moved: np.ndarray) -> np.ndarray:
        """The photo's pixels moved to `moved`: only the box of the triangles that move is
        remapped, the rest is the cached reference."""
        if not hasattr(self, "reference"):    # set-up: the whole crop at rest
            n = len(self.gx)
            map_x, map_y = self._flow(moved, (0, n, 0, n), np.arange(len(self.triangles)))
            return cv2.remap(self.source, map_x, map_y, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        moving = np.abs(moved - self.rest).max(1) > 1e-3
        mobile = np.flatnonzero(moving[self.triangles].any(1))
        frame = self.reference.copy()
        if not len(mobile):
            return frame
        corners = np.concatenate([moved[self.triangles[mobile]], self.rest[self.triangles[mobile]]])
        step, n = self.map_step, len(self.gx)
        (gx0, gy0), (gx1, gy1) = np.floor(corners.min((0, 1)) / step) - 1, np.ceil(corners.max((0, 1)) / step) + 2
        window = (max(int(gy0), 0), min(int(gy1), n), max(int(gx0), 0), min(int(gx1), n))
        map_x, map_y = self._flow(moved, window, mobile)
        y0, x0 = window[0] * step, window[2] * step
        frame[y0:y0 + map_x.shape[0], x0:x0 + map_x.shape[1]] = cv2.remap(
            self.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return frame

    def render(self, motion: np.ndarray) -> np.ndarray:
        """One frame: (size, size, 3) uint8 RGB, or the whole photo in `paste` mode."""
        m = np.asarray(motion, np.float64)
        if m.shape != (len(CHANNELS),) or not np.isfinite(m).all():
            raise ValueError(f"motion must be {len(CHANNELS)} finite values ({', '.join(CHANNELS)})")
        moved, mesh = self.vertices(m)
        frame = self._warp(moved)
        head_only = np.zeros_like(m)
        head_only[_HEAD] = m[_HEAD]
        jaw = head_only.copy()
        jaw[INDEX["jaw_open"]] = m[INDEX["jaw_open"]]
        self.mouth.draw(frame, mesh, self.basis.displace(head_only, UPPER),
                        self.basis.displace(jaw, LOWER), m[INDEX["jaw_open"]])
        return self._pasted(frame) if self.paste else frame

    def _pasted(self, frame):
        out = self.photo.copy()
        x0, y0 = np.round(self.origin).astype(int)
        h, w = out.shape[:2]
        ox0, oy0 = max(0, -x0), max(0, -y0)
        px0, py0 = max(0, x0), max(0, y0)
        px1, py1 = min(w, x0 + self.size), min(h, y0 + self.size)
        if px1 > px0 and py1 > py0:
            out[py0:py1, px0:px1] = frame[oy0:oy0 + py1 - py0, ox0:ox0 + px1 - px0]
        return out
