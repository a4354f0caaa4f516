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
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay

from models.portrait import topology as topo
from models.portrait.face_mesh import FaceMesh, as_rgb
from models.portrait.motion import CHANNELS, INDEX, MotionBasis
from models.portrait.mouth import LOWER, UPPER, MouthInterior, inner_polygon

_HEAD = [INDEX[k] for k in CHANNELS if k.startswith("head_")]
_SPREAD_MARGIN = 2   # coarse grid cells of still border around the crop, for the inversion
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
        self._grids = {}
        self.coarse = 2 * map_step
        self._spread = self._spread_matrix(self.coarse)
        # where the face folds and stretches (lips, closing lids) a frame rasterises the exact
        # piecewise-affine map; elsewhere it moves smoothly and the coarse inverted spread is as good
        lips = np.r_[topo.LIPS_OUTER_UPPER, topo.LIPS_OUTER_LOWER, topo.LIPS_INNER_UPPER,
                     topo.LIPS_INNER_LOWER]
        self.regions = {"mouth": np.isin(self.triangles, lips).any(1)}
        for name in ("blink_right", "blink_left"):
            lid = np.zeros(len(self.rest), bool)
            lid[:topo.NUM_POINTS] = np.abs(self.basis.fields[INDEX[name]]).max(1) > 2e-3
            self.regions[name] = lid[self.triangles].any(1)
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
        self.delaunay = Delaunay(self.rest)
        self.triangles = self.delaunay.simplices
        corners = self.rest[self.triangles]         # each vertex's reach: its triangles' box
        lo, hi = np.full_like(self.rest, np.inf), np.full_like(self.rest, -np.inf)
        for k in range(3):
            np.minimum.at(lo, self.triangles[:, k], corners.min(1))
            np.maximum.at(hi, self.triangles[:, k], corners.max(1))
        self._reach = lo, hi
        self.n_ring = [len(r) for r in rings]
        # backward map targets: rest positions in source-image pixels
        self.rest_source = ((self.rest / self.scale) + self.origin) * self.source_scale

    def vertices(self, motion: np.ndarray) -> tuple:
        """Moved positions of all triangulation vertices, and the moved mesh for the mouth."""
        m = np.asarray(motion, np.float64)
        no_head = m.copy()
        no_head[_HEAD] = 0
        still = self.basis.displace(no_head)          # the expression alone
        mesh = self.basis.head_transform(m, still, self.basis.rest[:, 2])
        expression = still - self.basis.rest[:, :2]
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

    def _spread_matrix(self, step: int):
        """(grid points, vertices) sparse weights: each point of the `step` grid as the
        barycentric mix of its rest triangle's corners, so a frame's forward displacement on the
        grid is one small sparse product."""
        n = -(-self.size // step) + 2 * _SPREAD_MARGIN   # beyond the crop nothing moves
        gy, gx = np.mgrid[0:n, 0:n] - _SPREAD_MARGIN
        at = np.stack([gx.ravel(), gy.ravel()], 1) * step + 0.5 * step - 0.5
        found = self.delaunay.find_simplex(at)
        simplex = np.maximum(found, 0)
        t = self.delaunay.transform[simplex]
        b = np.einsum("nij,nj->ni", t[:, :2], at - t[:, 2])
        weights = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1) * (found >= 0)[:, None]
        rows = np.repeat(np.arange(len(at)), 3)
        return csr_matrix((weights.ravel(), (rows, self.triangles[simplex].ravel())),
                          shape=(len(at), len(self.rest)))

    def _smooth_flow(self, moved: np.ndarray, iterations: int = 3) -> tuple:
        """Backward maps (source pixels) on the coarse grid for a face that moves smoothly: the
        forward displacement d spread over the grid (nothing moves beyond the crop) and inverted
        (x + d(x) = p) by fixed-point steps, which converge where the skin stretches by well
        under 2x."""
        step = self.coarse
        gx, gy, identity = self._grid(step)
        n, m = len(gx), _SPREAD_MARGIN
        d = np.asarray(self._spread @ (moved - self.rest), np.float32).reshape(n + 2 * m, n + 2 * m, 2)
        p = np.stack([gx, gy], -1) * step + (0.5 * step - 0.5)
        x = p - d[m:m + n, m:m + n]
        for _ in range(iterations - 1):
            grid = (x + 0.5) / step - 0.5 + m
            x = p - cv2.remap(d, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        # with nothing moved the map is one similarity: output pixel -> source pixel
        k = float(identity[0]) / step
        off_x, off_y = (float(identity[i]) - k * (0.5 * step - 0.5) for i in (2, 5))
        return k * x[..., 0] + off_x, k * x[..., 1] + off_y

    def _upsample(self, grid, step, box, factor=None):
        """A map on the `step` grid over `box` (output pixels, x0 and y0 on that grid), resized
        by `factor` (default: to pixels). Exact for a map affine between grid points: padded by
        linear extrapolation (odd reflection), so the edge is interpolated, not clamped."""
        factor = factor or step
        x0, y0, x1, y1 = box
        crop = grid[y0 // step:-(-y1 // step), x0 // step:-(-x1 // step)]
        h, w = crop.shape
        out = (-(-(y1 - y0) * factor // step), -(-(x1 - x0) * factor // step))
        return cv2.resize(np.pad(crop, 1, mode="reflect", reflect_type="odd"),
                          ((w + 2) * factor, (h + 2) * factor),
                          interpolation=cv2.INTER_LINEAR)[factor:factor + out[0], factor:factor + out[1]]

    def _grid(self, step: int):
        """Map-grid pixel indices (gx, gy) at `step` output pixels, and the map with nothing
        moved (map-grid pixel -> source pixel), for pixels no triangle covers."""
        if step not in self._grids:
            n = -(-self.size // step)
            gy, gx = np.mgrid[0:n, 0:n].astype(np.float32)
            k = step / self.scale * self.source_scale
            off = ((0.5 * step - 0.5) / self.scale + self.origin) * self.source_scale
            self._grids[step] = gx, gy, np.array([k, 0.0, off[0], 0.0, k, off[1]])
        return self._grids[step]

    def _flow(self, moved: np.ndarray, box, triangles, step: int, default=None) -> tuple:
        """Backward maps (output pixel -> source pixel) over `box` (x0, y0, x1, y1: output pixels,
        x0 and y0 on the grid), piecewise affine over the moved `triangles`, computed on a grid of
        `step` pixels and upsampled (exactly where the map is affine); elsewhere `default` (maps
        on the same grid) or the identity."""
        gx, gy, identity = self._grid(step)
        x0, y0, x1, y1 = box
        gx0, gy0, gx1, gy1 = x0 // step, y0 // step, -(-x1 // step), -(-y1 // step)
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
        coef = np.concatenate([np.stack([j00, j01, c0, j10, j11, c1]), identity[:, None]], 1)
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
        gx, gy = gx[gy0:gy1, gx0:gx1], gy[gy0:gy1, gx0:gx1]
        map_x, map_y = a[0] * gx, a[3] * gx
        map_x += a[1] * gy
        map_x += a[2]
        map_y += a[4] * gy
        map_y += a[5]
        if default is not None:
            unpainted = ids == len(tri)
            np.copyto(map_x, default[0], where=unpainted)
            np.copyto(map_y, default[1], where=unpainted)
        full = (x0 - gx0 * step, y0 - gy0 * step, x1 - gx0 * step, y1 - gy0 * step)
        return tuple(self._upsample(m, step, full) for m in (map_x, map_y))

    def _hold_border(self, map_x, map_y, box, width: int = 3):
        """The crop's edge holds still (no seam when pasted back): within `width` pixels of it
        the smooth map eases into the map with nothing moved."""
        if not hasattr(self, "_border"):
            ys, xs = np.mgrid[0:self.size, 0:self.size]
            ease = np.minimum(np.minimum(xs, ys), np.minimum(self.size - 1 - xs, self.size - 1 - ys))
            ys, xs = np.nonzero(ease < width)
            _, _, identity = self._grid(1)
            self._border = (ys, xs, (ease[ys, xs] / width).astype(np.float32),
                            (identity[0] * xs + identity[2]).astype(np.float32),
                            (identity[4] * ys + identity[5]).astype(np.float32))
        ys, xs, w, still_x, still_y = self._border
        x0, y0, x1, y1 = box
        if x0 >= width and y0 >= width and x1 <= self.size - width and y1 <= self.size - width:
            return
        inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        at = ys[inside] - y0, xs[inside] - x0
        w, still_x, still_y = w[inside], still_x[inside], still_y[inside]
        map_x[at] = still_x + w * (map_x[at] - still_x)
        map_y[at] = still_y + w * (map_y[at] - still_y)

    def _box(self, lo, hi, step: int, inside=None) -> tuple:
        """Output-pixel box around lo..hi, its corner on a `step` grid, clipped to `inside`."""
        bx0, by0, bx1, by1 = inside or (0, 0, self.size, self.size)
        x0, y0 = (np.floor(lo / step).astype(int) - 1) * step
        x1, y1 = (np.ceil(hi / step).astype(int) + 2) * step
        return max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)

    def _warp(self, moved: np.ndarray, fine=()) -> np.ndarray:
        """The photo's pixels moved to `moved`: only the box of the triangles that move is
        remapped (the rest is the cached reference), on the coarse grid but for the boxes of the
        `fine` regions (names in `regions`)."""
        step = self.map_step
        if not hasattr(self, "reference"):    # set-up: the whole crop at rest
            map_x, map_y = self._flow(moved, (0, 0, self.size, self.size),
                                      np.arange(len(self.triangles)), step)
            return cv2.remap(self.source, map_x, map_y, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        moving = np.abs(moved - self.rest).max(1) > 1e-3
        mobile = np.flatnonzero(moving[self.triangles].any(1))
        frame = self.reference.copy()
        if not len(mobile):
            return frame
        # the triangles that move: around a moving vertex, up to its neighbours at rest
        box = self._box(np.minimum(moved[moving].min(0), self._reach[0][moving].min(0)),
                        np.maximum(moved[moving].max(0), self._reach[1][moving].max(0)), self.coarse)
        smooth = self._smooth_flow(moved)
        map_x, map_y = (self._upsample(m, self.coarse, box) for m in smooth)
        self._hold_border(map_x, map_y, box)
        for name in fine:   # where the face folds and stretches: the exact piecewise-affine map
            hot = np.flatnonzero(self.regions[name][mobile])
            if not len(hot):
                continue
            pts = moved[self.triangles[mobile[hot]]].reshape(-1, 2)
            fbox = self._box(pts.min(0), pts.max(0), self.coarse, box)
            default = [self._upsample(m, self.coarse, fbox, factor=step) for m in smooth]
            fx, fy = self._flow(moved, fbox, mobile[hot], step, default)
            rows = slice(fbox[1] - box[1], fbox[3] - box[1])
            cols = slice(fbox[0] - box[0], fbox[2] - box[0])
            map_x[rows, cols], map_y[rows, cols] = fx, fy
        frame[box[1]:box[3], box[0]:box[2]] = cv2.remap(
            self.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return frame

    def render(self, motion: np.ndarray) -> np.ndarray:
        """One frame: (size, size, 3) uint8 RGB, or the whole photo in `paste` mode."""
        m = np.asarray(motion, np.float64)
        if m.shape != (len(CHANNELS),) or not np.isfinite(m).all():
            raise ValueError(f"motion must be {len(CHANNELS)} finite values ({', '.join(CHANNELS)})")
        moved, mesh = self.vertices(m)
        mouth_moves = self.basis.closing.any() or m[:INDEX["blink_right"]].any()
        fine = ["mouth"] * bool(mouth_moves) + [k for k in ("blink_right", "blink_left") if m[INDEX[k]]]
        frame = self._warp(moved, fine)
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
