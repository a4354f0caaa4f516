"""Backward maps (output pixel -> source pixel) of a moved triangulation over a square crop.

The map is piecewise affine: each triangle's affine from its moved place back to its rest place.
Where the face folds and stretches (lips, closing lids) `exact` rasterises it on a fine grid of
`step` pixels; elsewhere the face moves smoothly and `smooth` is as good at a fraction of the cost:
the vertices' displacement spread over a coarse grid by fixed barycentric weights (one sparse
product) and inverted there by fixed-point steps. Both are upsampled exactly where the map is affine
between grid points (bilinear), and the crop's edge holds still.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.sparse import csr_matrix

SPREAD_MARGIN = 2   # coarse grid cells of still border around the crop, for the inversion


class Flow:
    def __init__(self, rest, delaunay, size: int, to_source, step: int = 2):
        """rest: (V, 2) vertices in output pixels, triangulated by `delaunay`; to_source: (scale,
        origin, source_scale): output pixel p is source pixel (p / scale + origin) * source_scale
        when nothing moves; step: the fine grid (`maps` takes each fine region's own), the coarse
        grid twice it."""
        self.rest, self.delaunay, self.triangles = rest, delaunay, delaunay.simplices
        self.size, self.coarse = size, 2 * step
        self.scale, self.origin, self.source_scale = to_source
        self.rest_source = (rest / self.scale + self.origin) * self.source_scale
        self._grids = {}
        self.spread = self._spread_matrix(self.coarse)
        corners = rest[self.triangles]         # each vertex's reach: its triangles' box
        lo, hi = np.full_like(rest, np.inf), np.full_like(rest, -np.inf)
        for k in range(3):
            np.minimum.at(lo, self.triangles[:, k], corners.min(1))
            np.maximum.at(hi, self.triangles[:, k], corners.max(1))
        self.reach = lo, hi

    def maps(self, moved: np.ndarray, fine=()) -> tuple:
        """(box, map_x, map_y) over the box of the triangles that move (None if none does),
        exact over the triangles of each (boolean mask, grid step) in `fine`, smooth elsewhere."""
        moving = np.abs(moved - self.rest).max(1) > 1e-3
        mobile = np.flatnonzero(moving[self.triangles].any(1))
        if not len(mobile):
            return None, None, None
        # the triangles that move: around a moving vertex, up to its neighbours at rest
        box = self.box(np.minimum(moved[moving].min(0), self.reach[0][moving].min(0)),
                       np.maximum(moved[moving].max(0), self.reach[1][moving].max(0)), self.coarse)
        smooth = self.smooth(moved)
        map_x, map_y = (self.upsample(m, self.coarse, box) for m in smooth)
        self.hold_border(map_x, map_y, box)
        for region, step in fine:
            hot = np.flatnonzero(region[mobile])
            if not len(hot):
                continue
            pts = moved[self.triangles[mobile[hot]]].reshape(-1, 2)
            fbox = self.box(pts.min(0), pts.max(0), self.coarse, box)
            default = [self.upsample(m, self.coarse, fbox, factor=self.coarse // step) for m in smooth]
            fx, fy = self.exact(moved, fbox, mobile[hot], step, default)
            rows = slice(fbox[1] - box[1], fbox[3] - box[1])
            cols = slice(fbox[0] - box[0], fbox[2] - box[0])
            map_x[rows, cols], map_y[rows, cols] = fx, fy
        return box, map_x, map_y

    def _spread_matrix(self, step: int):
        """(grid points, vertices) sparse weights: each point of the `step` grid as the
        barycentric mix of its rest triangle's corners, so a frame's forward displacement on the
        grid is one small sparse product."""
        n = -(-self.size // step) + 2 * SPREAD_MARGIN   # beyond the crop nothing moves
        gy, gx = np.mgrid[0:n, 0:n] - SPREAD_MARGIN
        at = np.stack([gx.ravel(), gy.ravel()], 1) * step + 0.5 * step - 0.5
        found = self.delaunay.find_simplex(at)
        simplex = np.maximum(found, 0)
        t = self.delaunay.transform[simplex]
        b = np.einsum("nij,nj->ni", t[:, :2], at - t[:, 2])
        weights = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1) * (found >= 0)[:, None]
        rows = np.repeat(np.arange(len(at)), 3)
        return csr_matrix((weights.ravel(), (rows, self.triangles[simplex].ravel())),
                          shape=(len(at), len(self.rest)))

    def smooth(self, moved: np.ndarray, iterations: int = 3) -> tuple:
        """Backward maps (source pixels) on the coarse grid for a face that moves smoothly: the
        forward displacement d spread over the grid (nothing moves beyond the crop) and inverted
        (x + d(x) = p) by fixed-point steps, which converge where the skin stretches by well
        under 2x."""
        step = self.coarse
        gx, gy, identity = self.grid(step)
        n, m = len(gx), SPREAD_MARGIN
        d = np.asarray(self.spread @ (moved - self.rest), np.float32).reshape(n + 2 * m, n + 2 * m, 2)
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

    def upsample(self, grid, step, box, factor=None):
        """A map on the `step` grid over `box` (output pixels, x0 and y0 on that grid), resized
        by `factor` (default: to pixels). Exact for a map affine between grid points: padded by
        linear extrapolation (odd reflection), so the edge is interpolated, not clamped."""
        factor = factor or step
        x0, y0, x1, y1 = box
        crop = grid[y0 // step:-(-y1 // step), x0 // step:-(-x1 // step)]
        h, w = crop.shape
        out = (-(-(y1 - y0) * factor // step), -(-(x1 - x0) * factor // step))
        return cv2.resize(_pad_odd(crop), ((w + 2) * factor, (h + 2) * factor),
                          interpolation=cv2.INTER_LINEAR)[factor:factor + out[0], factor:factor + out[1]]

    def grid(self, step: int):
        """Map-grid pixel indices (gx, gy) at `step` output pixels, and the map with nothing
        moved (map-grid pixel -> source pixel), for pixels no triangle covers."""
        if step not in self._grids:
            n = -(-self.size // step)
            gy, gx = np.mgrid[0:n, 0:n].astype(np.float32)
            k = step / self.scale * self.source_scale
            off = ((0.5 * step - 0.5) / self.scale + self.origin) * self.source_scale
            self._grids[step] = gx, gy, np.array([k, 0.0, off[0], 0.0, k, off[1]])
        return self._grids[step]

    def exact(self, moved: np.ndarray, box, triangles, step: int, default=None) -> tuple:
        """Backward maps (output pixel -> source pixel) over `box` (x0, y0, x1, y1: output pixels,
        x0 and y0 on the grid), piecewise affine over the moved `triangles`, computed on a grid of
        `step` pixels and upsampled (exactly where the map is affine); elsewhere `default` (maps
        on the same grid) or the identity."""
        gx, gy, identity = self.grid(step)
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
        return tuple(self.upsample(m, step, full) for m in (map_x, map_y))

    def hold_border(self, map_x, map_y, box, width: int = 3):
        """The crop's edge holds still (no seam when pasted back): within `width` pixels of it
        the smooth map eases into the map with nothing moved."""
        if not hasattr(self, "_border"):
            ys, xs = np.mgrid[0:self.size, 0:self.size]
            ease = np.minimum(np.minimum(xs, ys), np.minimum(self.size - 1 - xs, self.size - 1 - ys))
            ys, xs = np.nonzero(ease < width)
            _, _, identity = self.grid(1)
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

    def box(self, lo, hi, step: int, inside=None) -> tuple:
        """Output-pixel box around lo..hi, its corner on a `step` grid, clipped to `inside`."""
        bx0, by0, bx1, by1 = inside or (0, 0, self.size, self.size)
        x0, y0 = (np.floor(lo / step).astype(int) - 1) * step
        x1, y1 = (np.ceil(hi / step).astype(int) + 2) * step
        return max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)


def _pad_odd(a: np.ndarray) -> np.ndarray:
    """np.pad(a, 1, mode="reflect", reflect_type="odd") (the same arithmetic, rows then columns)
    without its per-call overhead, which cost more than the resize it feeds."""
    if min(a.shape) < 2:
        return np.pad(a, 1, mode="reflect", reflect_type="odd")
    out = np.empty((a.shape[0] + 2, a.shape[1] + 2), a.dtype)
    out[1:-1, 1:-1] = a
    out[0, 1:-1] = 2 * a[0] - a[1]
    out[-1, 1:-1] = 2 * a[-1] - a[-2]
    out[:, 0] = 2 * out[:, 1] - out[:, 2]
    out[:, -1] = 2 * out[:, -2] - out[:, -3]
    return out
