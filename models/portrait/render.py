"""Motion vector -> a frame made of the photo's own pixels, with only the mouth's inside drawn.

Per avatar: a square crop around the face (`crop_scale` face heights), the mesh in output pixels,
and a triangulation of the mesh plus two rings around the face oval (hair, ears, neck) and points on
the crop's border. Per frame: the mesh moves (`MotionBasis`), the inner ring follows the head
(the neck less), the outer ring and the border stay, so the background is held and nothing tears
at the face's edge. Each triangle's affine map from its moved place back to its rest place gives
the backward flow (`flow.Flow`: exact where lips and lids fold, a coarse inverted spread where the
face moves smoothly), applied with one `cv2.remap` of the photo over the box that moves; the rest
of the crop is the cached reference. Then the mouth's inside is painted where the lips part
(`mouth.MouthInterior`).

`paste=True` renders the crop at the photo's own scale and returns the whole photo with it pasted
back (the crop's border does not move, so there is no seam).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from models.portrait import topology as topo
from models.portrait.face_mesh import FaceMesh, as_rgb
from models.portrait.flow import Flow
from models.portrait.motion import CHANNELS, INDEX, MotionBasis
from models.portrait.mouth import LOWER, UPPER, MouthInterior, inner_polygon
from models.portrait.open_mouth import fill_opening, lift_upper_lip

_HEAD = [INDEX[k] for k in CHANNELS if k.startswith("head_")]
# scale, head above/below chin, expression: the hair and neck near the face follow it, the outer
# ring holds still, and so does the crop beyond it (a frame remaps only the box inside)
_RINGS = ((1.25, 1.0, 0.45, 0.5), (1.7, 0.0, 0.0, 0.0))


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
        if self.scale < 0.5:  # the face is larger than needed: shrink the photo once, not per
            # frame, to twice the output's scale (a moving frame samples it between its pixels:
            # at the output's own scale that blurs a sharp photo to half its detail)
            self.source_scale = 2 * self.scale
            self.source = cv2.resize(self.photo, None, fx=self.source_scale, fy=self.source_scale,
                                     interpolation=cv2.INTER_AREA)
        points = lift_upper_lip(self.photo, mesh.points, fh)
        points[:, :2] = (points[:, :2] - self.origin) * self.scale
        points[:, 2] *= self.scale
        self.basis = MotionBasis(points)
        self._build_mesh(points, oval)
        self.map_step = map_step
        self.flow = Flow(self.rest, self.delaunay, self.size,
                         (self.scale, self.origin, self.source_scale), map_step)
        self.rest_source = self.flow.rest_source
        # where the face folds and stretches (lips, closing lids) a frame rasterises the exact
        # piecewise-affine map; elsewhere it moves smoothly and the coarse inverted spread is as good
        lips = np.r_[topo.LIPS_OUTER_UPPER, topo.LIPS_OUTER_LOWER, topo.LIPS_INNER_UPPER,
                     topo.LIPS_INNER_LOWER]
        # name -> (its triangles, the grid step it is rasterised on); the lips on every pixel: where
        # they meet over a photo's open mouth the map jumps from one lip to the other, and a
        # 2-pixel grid cut that line into stair steps
        self.regions = {"mouth": (np.isin(self.triangles, lips).any(1), 1)}
        for name in ("blink_right", "blink_left"):
            lid = np.zeros(len(self.rest), bool)
            lid[:topo.NUM_POINTS] = np.abs(self.basis.fields[INDEX[name]]).max(1) > 2e-3
            self.regions[name] = (lid[self.triangles].any(1), map_step)
        self.reference = self._warp(self.rest)   # the crop as the photo has it
        self.mouth = MouthInterior(self.reference, self.basis.rest, self.basis.height,
                                   softness=max(0.5, 0.45 * self.scale / self.source_scale),
                                   grain_scale=self.scale,
                                   closed=self.basis.displace(np.zeros(len(CHANNELS)))
                                   if self.basis.closing.any() else None)
        if self.basis.closing.any():   # lips closed over the photo's opening show no teeth
            self.source = fill_opening(self.source, inner_polygon(self.rest_source[:topo.NUM_POINTS]),
                                       self.mouth.lip, fh * self.source_scale)

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
        self.n_ring = [len(r) for r in rings]

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

    def _warp(self, moved: np.ndarray, fine=()) -> np.ndarray:
        """The photo's pixels moved to `moved`: only the box of the triangles that move is
        remapped (the rest is the cached reference), exactly where the `fine` regions fold."""
        if not hasattr(self, "reference"):    # set-up: the whole crop at rest
            map_x, map_y = self.flow.exact(moved, (0, 0, self.size, self.size),
                                           np.arange(len(self.triangles)), self.map_step)
            return cv2.remap(self.source, map_x, map_y, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        frame = self.reference.copy()
        box, map_x, map_y = self.flow.maps(moved, [self.regions[name] for name in fine])
        if box is not None:
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
