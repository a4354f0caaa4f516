"""The motion basis: channel meanings in face heights, the same vector on any face, closed lips at zero."""
import math

import numpy as np
import pytest

skdata = pytest.importorskip("skimage.data")

from models.portrait import topology as topo  # noqa: E402
from models.portrait.face_mesh import FaceMesher  # noqa: E402
from models.portrait.motion import CHANNELS, INDEX, LINEAR, MotionBasis, face_frame  # noqa: E402


@pytest.fixture(scope="module")
def mesh():
    return FaceMesher().fit(skdata.astronaut()).points   # smiling, teeth showing


def vec(**values):
    m = np.zeros(len(CHANNELS))
    for name, v in values.items():
        m[INDEX[name]] = v
    return m


def local(basis, xy):
    return (xy - basis.origin) @ basis.rot.T / basis.height


def test_zero_motion_closes_the_photos_open_mouth_and_keeps_the_rest(mesh):
    basis = MotionBasis(mesh)
    rest = local(basis, mesh[:, :2])
    gap_before = rest[list(topo.LIPS_INNER_LOWER), 1] - rest[list(topo.LIPS_INNER_UPPER), 1]
    assert gap_before.max() > 0.04      # her smile shows teeth
    q = local(basis, basis.displace(vec()))
    gap = q[list(topo.LIPS_INNER_LOWER), 1] - q[list(topo.LIPS_INNER_UPPER), 1]
    assert np.abs(gap).max() < 1e-6
    still = list(topo.RIGHT_EYE_UPPER + topo.LEFT_BROW + (topo.FOREHEAD_TOP, topo.NOSE_TIP))
    assert np.abs(q[still] - rest[still]).max() < 1e-9


def test_channel_units_in_face_heights(mesh):
    basis = MotionBasis(mesh)
    neutral = local(basis, basis.displace(vec()))
    jaw = local(basis, basis.displace(vec(jaw_open=1.0))) - neutral
    assert jaw[topo.CHIN, 1] == pytest.approx(0.10, abs=0.01)
    assert np.abs(jaw[list(topo.LIPS_INNER_UPPER[3:-3])]).max() < 1e-9   # the upper lip stays
    assert jaw[topo.MOUTH_CORNERS[0], 1] == pytest.approx(0.045)       # corners go half way
    # the lips' ends ease into the corners' drop: no step at the corner to stretch the skin
    ends = jaw[list(topo.LIPS_INNER_UPPER[1:3] + topo.LIPS_INNER_UPPER[-3:-1]), 1]
    assert (ends >= 0).all() and (ends < 0.045).all() and ends.max() > 0.005
    lower = jaw[list(topo.LIPS_INNER_LOWER), 1]
    assert jaw[topo.LOWER_LIP_INNER_MID, 1] == pytest.approx(lower.max(), abs=1e-9)
    assert 0.045 <= lower[1] < lower.max() and 0.045 <= lower[-2] < lower.max()
    gap = local(basis, basis.displace(vec(lip_gap=1.0)))
    mid = gap[topo.LOWER_LIP_INNER_MID, 1] - gap[topo.UPPER_LIP_INNER_MID, 1]
    assert mid == pytest.approx(0.04, abs=0.002)
    wide = local(basis, basis.displace(vec(mouth_wide=1.0))) - neutral
    right, left = topo.MOUTH_CORNERS
    assert wide[right, 0] == pytest.approx(-0.035, abs=0.002)
    assert wide[left, 0] == pytest.approx(0.035, abs=0.002)
    rnd = local(basis, basis.displace(vec(mouth_round=1.0))) - neutral
    assert rnd[right, 0] > 0.02 and rnd[left, 0] < -0.02
    brows = local(basis, basis.displace(vec(brows=1.0))) - neutral
    assert brows[list(topo.RIGHT_BROW), 1] == pytest.approx(-0.03)


@pytest.mark.parametrize("side", ["right", "left"])
def test_blink_shuts_one_eye(mesh, side):
    basis = MotionBasis(mesh)
    upper = list(getattr(topo, f"{side.upper()}_EYE_UPPER"))
    lower = list(getattr(topo, f"{side.upper()}_EYE_LOWER"))
    other = list(topo.LEFT_EYE_UPPER if side == "right" else topo.RIGHT_EYE_UPPER)
    q = local(basis, basis.displace(vec(**{f"blink_{side}": 1.0})))
    q0 = local(basis, mesh[:, :2])
    assert np.abs(q[lower, 1] - q[upper, 1]).max() < 1e-9      # lids meet
    assert (q0[lower, 1] - q0[upper, 1]).max() > 0.015          # they were open
    assert np.abs(q[other] - q0[other]).max() < 1e-9            # the other eye stays


def test_lips_never_cross(mesh):
    basis = MotionBasis(mesh)
    q = local(basis, basis.displace(vec(lip_press=3.0, lip_gap=-2.0, jaw_open=-1.0)))
    assert (q[list(topo.LIPS_INNER_LOWER), 1] >= q[list(topo.LIPS_INNER_UPPER), 1] - 1e-12).all()


def test_same_vector_same_motion_on_a_moved_scaled_face(mesh):
    """The basis lives in the face's own frame: rotate and scale the photo, the motion follows."""
    angle, scale, shift = math.radians(20), 1.7, np.array([40.0, -15.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = mesh.astype(np.float64).copy()
    moved[:, :2] = mesh[:, :2] @ rot.T * scale + shift
    moved[:, 2] = mesh[:, 2] * scale
    a, b = MotionBasis(mesh), MotionBasis(moved)
    m = vec(jaw_open=0.7, mouth_wide=0.4, blink_left=0.5, brows=-0.5, head_yaw=4, head_pitch=-3,
            head_roll=2, head_x=0.02, head_y=-0.01)
    expect = a.displace(m) @ rot.T * scale + shift
    assert np.abs(b.displace(m) - expect).max() < 1e-6 * b.height
    assert face_frame(moved)[2] == pytest.approx(scale * face_frame(mesh)[2])


def test_a_turned_face_opens_most_at_its_midline(mesh):
    """A face turned away shows the far half of its mouth foreshortened: the lips still part
    most at their middle (where the judge reads the gap), not halfway between the corners."""
    basis = MotionBasis(mesh)
    q = local(basis, mesh[:, :2])
    mid = q[topo.UPPER_LIP_INNER_MID, 0]
    squeezed = q.copy()
    far = q[:, 0] < mid                                    # the subject's right half, narrowed
    squeezed[far, 0] = mid + 0.5 * (q[far, 0] - mid)
    turned = mesh.astype(np.float64).copy()
    turned[:, :2] = squeezed * basis.height @ basis.rot + basis.origin
    b = MotionBasis(turned)
    opened = local(b, b.displace(vec(lip_gap=1.0))) - local(b, b.displace(vec()))
    gap = opened[list(topo.LIPS_INNER_LOWER), 1] - opened[list(topo.LIPS_INNER_UPPER), 1]
    assert int(np.argmax(gap)) == topo.LIPS_INNER_UPPER.index(topo.UPPER_LIP_INNER_MID)
    assert gap.max() == pytest.approx(0.04, abs=0.001)


def test_head_pose_moves_the_face_rigidly_in_2d_roll(mesh):
    basis = MotionBasis(mesh)
    neutral = basis.displace(vec())
    rolled = basis.displace(vec(head_roll=10.0))
    eyes = [topo.RIGHT_EYE_OUTER, topo.LEFT_EYE_OUTER]
    v0, v1 = (p[eyes[1]] - p[eyes[0]] for p in (neutral, rolled))
    turn = math.degrees(math.atan2(v1[1], v1[0]) - math.atan2(v0[1], v0[0]))
    assert turn == pytest.approx(10.0, abs=0.01)
    assert np.linalg.norm(v1) == pytest.approx(np.linalg.norm(v0))


def test_fields_shape():
    assert len(CHANNELS) == 15 and LINEAR == CHANNELS[:10]


def _between(q, points, top, bottom):
    """Which `points` lie between the curves `top` and `bottom` (index lists), by x."""
    def at(curve):
        order = np.argsort(q[curve, 0])
        return np.interp(q[points, 0], q[curve, 0][order], q[curve, 1][order])
    return (q[points, 1] > at(top) - 1e-9) & (q[points, 1] < at(bottom) + 1e-9)


def test_closing_the_photos_mouth_folds_no_upper_lip(mesh):
    """Closed from the photo's smile, the upper lip moves as one piece: the mesh's rings inside
    it stay inside it (held while its edges came down, the lip folded over them)."""
    basis = MotionBasis(mesh)
    rest, q = local(basis, mesh[:, :2]), local(basis, basis.displace(vec()))
    outer_up, inner_up = list(topo.LIPS_OUTER_UPPER), list(topo.LIPS_INNER_UPPER)
    lips = set(outer_up + inner_up + list(topo.LIPS_OUTER_LOWER) + list(topo.LIPS_INNER_LOWER))
    others = np.array([i for i in range(topo.NUM_POINTS) if i not in lips])
    within = (rest[others, 0] > rest[inner_up, 0].min()) & (rest[others, 0] < rest[inner_up, 0].max())
    inside = others[within & _between(rest, others, outer_up, inner_up)]
    assert len(inside) >= 5
    assert _between(q, inside, outer_up, inner_up).all()


def test_open_jaw_stretches_the_skin_by_the_corners_moderately(mesh):
    """The lips' ends ease into the corners' drop: the skin beside a corner is not torn into
    streaks (a step there stretched it 3.2x in area at jaw_open 1 on this face)."""
    import cv2
    from scipy.spatial import Delaunay
    basis = MotionBasis(mesh)
    tri = Delaunay(basis.rest[:, :2]).simplices
    lips = np.concatenate([basis.rest[list(topo.LIPS_OUTER_UPPER), :2],
                           basis.rest[list(topo.LIPS_OUTER_LOWER[::-1]), :2]]).astype(np.float32)
    centre = basis.q[tri].mean(1)
    skin = np.array([cv2.pointPolygonTest(lips, tuple(map(float, c)), False) < 0
                     for c in basis.rest[tri, :2].mean(1)])
    near = np.min([np.linalg.norm(centre - basis.q[c], axis=1) for c in topo.MOUTH_CORNERS], 0) < 0.1

    def area(p):
        a, b, c = (p[tri[:, k]] for k in range(3))
        return 0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    stretch = area(basis.displace(vec(jaw_open=1.0))) / area(basis.displace(vec()))
    assert stretch[skin & near].max() < 2.9
