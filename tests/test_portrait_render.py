"""The renderer on real photos: the photo's own pixels at rest, a mouth inside when the lips part,
the background held, paste-back, grayscale kept gray, bad motion refused."""
import cv2
import numpy as np
import pytest

skdata = pytest.importorskip("skimage.data")

from models.portrait import topology as topo  # noqa: E402
from models.portrait.face_mesh import FaceMesher  # noqa: E402
from models.portrait.motion import CHANNELS, INDEX  # noqa: E402
from models.portrait.render import PortraitRenderer  # noqa: E402


def vec(**values):
    m = np.zeros(len(CHANNELS))
    for name, v in values.items():
        m[INDEX[name]] = v
    return m


@pytest.fixture(scope="module")
def photo():
    return skdata.astronaut()


@pytest.fixture(scope="module")
def mesher():
    return FaceMesher()


@pytest.fixture(scope="module")
def renderer(photo, mesher):
    return PortraitRenderer(photo, mesher.fit(photo))


def _mouth_box(renderer, pad=0.08):
    p = renderer.basis.rest
    lips = p[list(topo.LIPS_OUTER_UPPER + topo.LIPS_OUTER_LOWER), :2]
    fh = renderer.basis.height
    (x0, y0), (x1, y1) = lips.min(0) - pad * fh, lips.max(0) + pad * fh
    return int(x0), int(y0), int(x1), int(y1 + 0.12 * fh)   # and the chin the jaw moves


def test_rest_frame_is_the_photo_above_the_mouth(renderer):
    """Her smile shows teeth, so the rest frame closes the jaw: only the face above it is as shot."""
    frame = renderer.render(vec())
    assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
    nose_y = int(renderer.basis.rest[topo.NOSE_TIP, 1])
    diff = np.abs(frame[:nose_y].astype(int) - renderer.reference[:nose_y].astype(int))
    assert diff.mean() < 0.2 and np.percentile(diff, 99.9) <= 2


def test_jaw_open_shows_a_dark_mouth_with_teeth_and_holds_the_background(renderer):
    rest = renderer.render(vec())
    frame = renderer.render(vec(jaw_open=1.0))
    up, low = renderer.basis.displace(vec(jaw_open=1.0))[[topo.UPPER_LIP_INNER_MID,
                                                         topo.LOWER_LIP_INNER_MID]]
    x = int(up[0])
    column = frame[int(up[1]) + 2:int(low[1]) - 1, x].astype(float)
    luma = column @ [0.299, 0.587, 0.114]
    assert len(luma) > 15
    assert luma.max() > 150          # teeth
    assert luma.min() < 80           # cavity or tongue
    for edge in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):   # the crop's edge is held
        assert np.abs(frame[edge].astype(int) - rest[edge]).max() <= 1


def test_head_motion_moves_the_face_but_not_the_crop_border(renderer):
    frame = renderer.render(vec(head_yaw=5, head_pitch=-4, head_roll=3, head_x=0.02))
    rest = renderer.render(vec())
    assert np.abs(frame[150:350, 150:350].astype(int) - rest[150:350, 150:350]).mean() > 5
    for edge in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):   # the crop's edge is held
        assert np.abs(frame[edge].astype(int) - rest[edge]).max() <= 1


def test_eyes_close(renderer):
    frame = renderer.render(vec(blink_right=1.0, blink_left=1.0))
    rest = renderer.render(vec())
    p = renderer.basis.rest
    for upper, lower in ((topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
                         (topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER)):
        pts = p[list(upper + lower), :2]
        (x0, y0), (x1, y1) = pts.min(0).astype(int), pts.max(0).astype(int)
        dark = lambda f: (f[y0:y1, x0:x1].astype(float) @ [0.299, 0.587, 0.114] < 90).mean()  # noqa: E731
        assert dark(rest) > 0.15 and dark(frame) < 0.5 * dark(rest)   # the iris is covered


def test_paste_mode_returns_the_whole_photo(photo, mesher):
    r = PortraitRenderer(photo, mesher.fit(photo), paste=True)
    frame = r.render(vec(jaw_open=0.8))
    assert frame.shape == photo.shape
    x0, y0 = np.round(r.origin).astype(int)
    outside = np.ones(photo.shape[:2], bool)
    outside[max(y0, 0):y0 + r.size, max(x0, 0):x0 + r.size] = False
    assert outside.any() and np.array_equal(frame[outside], photo[outside])
    rest = r.render(vec())
    ring = np.zeros(photo.shape[:2], bool)   # the crop's edge: no seam
    ring[max(y0, 0):y0 + r.size, max(x0, 0):x0 + r.size] = True
    ring[max(y0, 0) + 3:y0 + r.size - 3, max(x0, 0) + 3:x0 + r.size - 3] = False
    assert np.abs(rest[ring].astype(int) - photo[ring]).mean() < 0.5


def test_grayscale_photo_stays_gray(photo, mesher):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    r = PortraitRenderer(gray, mesher.fit(gray), size=256)
    frame = r.render(vec(jaw_open=1.0, upper_lip_raise=0.5))
    assert frame.shape == (256, 256, 3)
    assert np.ptp(frame.astype(int), axis=2).max() <= 1


@pytest.mark.parametrize("bad", [np.zeros(3), np.full(len(CHANNELS), np.nan)])
def test_bad_motion_is_refused(renderer, bad):
    with pytest.raises(ValueError, match="motion must be"):
        renderer.render(bad)


def _exact(renderer, motion):
    """The frame's warp with every triangle rasterised on every pixel (no coarse inversion)."""
    moved, _ = renderer.vertices(motion)
    map_x, map_y = renderer.flow.exact(moved, (0, 0, renderer.size, renderer.size),
                                       np.arange(len(renderer.triangles)), 1)
    return cv2.remap(renderer.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("motion", [dict(jaw_open=1.0, lip_gap=0.5, head_yaw=4),
                                    dict(blink_right=1.0, blink_left=0.7, head_pitch=-3, brows=0.5),
                                    dict(mouth_wide=0.8, upper_lip_raise=0.6, head_roll=3, head_x=0.02)])
def test_fast_warp_matches_the_exact_piecewise_affine_map(renderer, motion):
    """Smooth parts inverted on the coarse grid, lips and lids rasterised: within a gray level
    or so of rasterising every triangle on every pixel (the worst pixels, beside the stretched
    mouth corners, within 10 levels)."""
    m = vec(**motion)
    moved, _ = renderer.vertices(m)
    fine = ["mouth"] + [k for k in ("blink_right", "blink_left") if motion.get(k)]
    fast = renderer._warp(moved, fine).astype(int)
    diff = np.abs(fast - _exact(renderer, m)).max(2)
    assert diff.mean() < 0.15 and np.percentile(diff, 99.9) <= 10


def test_a_still_head_remaps_only_what_moves(renderer):
    frame = renderer.render(vec(jaw_open=0.8))
    nose_y = int(renderer.basis.rest[topo.NOSE_TIP, 1])
    assert np.array_equal(frame[:nose_y - 20], renderer.reference[:nose_y - 20])


def test_a_photo_with_lips_barely_apart_is_untouched_at_rest(renderer):
    """Lips as shut as a photo's get neither a drawn seam nor an inside at rest (the photo's own
    lip line stays), and the inside shows once they part further."""
    from models.portrait.mouth import LOWER, UPPER, MouthInterior
    points = renderer.basis.rest.copy()
    points[LOWER, 1] = points[UPPER, 1] + 1.5      # the landmark model's usual 1-2 px
    mouth = MouthInterior(renderer.reference, points, renderer.basis.height)
    frame = renderer.reference.copy()
    mouth.draw(frame, points, points[UPPER, :2], points[LOWER, :2])
    assert np.array_equal(frame, renderer.reference)
    apart = points.copy()
    apart[LOWER, 1] += 6
    mouth.draw(frame, apart, points[UPPER, :2], apart[LOWER, :2])
    assert not np.array_equal(frame, renderer.reference)


def test_the_mouth_inside_is_lit_from_above_and_warm(renderer):
    """Upper teeth bright under the lip, a dark warm cavity below them, darker corners."""
    m = vec(jaw_open=1.0, lip_gap=0.4)
    frame = renderer.render(m).astype(float)
    pts = renderer.basis.displace(m)
    up, low = pts[topo.UPPER_LIP_INNER_MID], pts[topo.LOWER_LIP_INNER_MID]
    x, top, bottom = int(up[0]), int(up[1]) + 2, int(low[1]) - 2
    luma = frame[top:bottom, x] @ [0.299, 0.587, 0.114]
    third = max(1, len(luma) // 3)
    assert luma[:third].mean() > luma[third:2 * third].mean() + 40      # teeth above the cavity
    cavity = frame[top + third:top + 2 * third, x].mean(0)
    assert cavity[0] > cavity[2]                                          # warm, not gray
    corner = pts[topo.INNER_CORNERS[0]]
    near_corner = frame[int(corner[1]) - 1:int(corner[1]) + 2,
                        int(corner[0]) + 3:int(corner[0]) + 6] @ [0.299, 0.587, 0.114]
    assert near_corner.mean() < luma[:third].mean()


def _luma_inside_the_lips(frame, points):
    from models.portrait.mouth import LUMA, inner_polygon
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(inner_polygon(points)).astype(np.int32)], 255)
    return frame[mask > 0].astype(np.float32) @ LUMA


def test_a_barely_parted_mouth_is_a_dark_slit_not_a_bar_of_teeth(renderer):
    """Light reaches the teeth through the opening: lips ~1.4% of the face apart show mostly
    shadow (at most a dim sliver of upper teeth), a wide opening shows them lit."""
    from models.portrait.mouth import LUMA
    teeth = float(renderer.mouth.teeth @ LUMA)
    slit = vec(lip_gap=0.35)
    assert np.percentile(_luma_inside_the_lips(renderer.render(slit), renderer.basis.displace(slit)),
                         90) < 0.6 * teeth
    wide = vec(jaw_open=0.8, lip_gap=0.5)
    assert np.percentile(_luma_inside_the_lips(renderer.render(wide), renderer.basis.displace(wide)),
                         95) > 0.8 * teeth


def test_a_wide_opening_narrows_toward_its_corners(renderer):
    """The cavity's ends follow the lips' rounded corners: near a corner only the middle of the
    lips' opening is painted, not a column cut square at the polygon's end."""
    from models.portrait.mouth import LOWER, UPPER
    m = vec(jaw_open=0.9, lip_gap=0.6)
    moved, mesh = renderer.vertices(m)
    bare = renderer._warp(moved, ["mouth"])
    painted = bare.copy()
    renderer.mouth.draw(painted, mesh, renderer.basis.displace(m, UPPER), renderer.basis.displace(m, LOWER),
                        m[INDEX["jaw_open"]])
    changed = np.abs(painted.astype(int) - bare.astype(int)).max(2) > 25
    up, low = mesh[UPPER], mesh[LOWER]
    mid = (up[len(up) // 2] + low[len(low) // 2]) / 2
    for corner in (up[0], up[-1]):
        x = int(round(mid[0] + 0.85 * (corner[0] - mid[0])))
        order_u, order_l = np.argsort(up[:, 0]), np.argsort(low[:, 0])
        top = np.interp(x, up[order_u, 0], up[order_u, 1])
        bottom = np.interp(x, low[order_l, 0], low[order_l, 1])
        assert bottom - top > 3                                   # the lips are apart there
        assert changed[:, x].sum() < 0.95 * (bottom - top)      # square ends: ~1.2


def test_a_mesh_lip_edge_on_the_teeth_is_lifted_to_the_lip(photo, mesher):
    """The mesh put the inner upper lip below the lip's real edge, on the teeth (painted here: 4
    rows of enamel above each of its points): those points move up over the teeth (at most 0.7
    of the way to the outer edge), and on the photo as it is (the edge on the lip) nothing moves."""
    from models.portrait.open_mouth import lift_upper_lip
    mesh = mesher.fit(photo)
    points, fh = mesh.points, mesh.face_height
    assert np.array_equal(lift_upper_lip(photo, points, fh), points)
    painted = photo.copy()
    inner = list(topo.LIPS_INNER_UPPER)[1:-1]
    for x, y in np.round(points[inner, :2]).astype(int):
        painted[y - 4:y + 1, x - 1:x + 2] = 235
    lifted = lift_upper_lip(painted, points, fh)
    rise = points[inner, 1] - lifted[inner, 1]
    band = points[inner, 1] - points[list(topo.LIPS_OUTER_UPPER)[1:-1], 1]   # her lips are thin
    assert np.all((rise >= 0) & (rise <= 0.7 * band + 1)), (rise, band)
    assert rise[inner.index(topo.UPPER_LIP_INNER_MID)] >= 1 and rise.sum() >= 5, rise
    others = [i for i in range(len(points)) if i not in inner]
    assert np.array_equal(lifted[others], points[others])


def test_teeth_in_the_lips_shadow_are_lifted_over_in_every_column(photo, mesher):
    """Teeth in the upper lip's shadow can be as dark and as red as the lips (obama2's right half):
    painted here in the lower lip's own colour, 3 rows above each inner upper point, under a dark
    row (the lip's wet underside). The points move up to that dark row; the reach is measured to
    the outer lip in the point's own column (the outer line's point of the same rank lies nearer
    the corner and lower: on obama2 level with the inner point, which left it no room)."""
    from models.portrait.mouth import LOWER, lip_colour
    from models.portrait.open_mouth import lift_upper_lip
    big = cv2.resize(photo, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)   # her lips are thin
    mesh = mesher.fit(photo)
    points, fh = mesh.points * 3, mesh.face_height * 3
    inner = list(topo.LIPS_INNER_UPPER)[3:-3]   # where her lips are thick enough
    lower_lip = np.concatenate([points[list(topo.LIPS_OUTER_LOWER), :2], points[LOWER[::-1], :2]])
    shade = np.round(lip_colour(big, lower_lip)).astype(np.uint8)
    painted = big.copy()
    for x, y in np.round(points[inner, :2]).astype(int):
        painted[y - 3:y + 1, x - 1:x + 2] = shade
        painted[y - 4, x - 1:x + 2] = 30
    lifted = lift_upper_lip(painted, points, fh)
    rise = points[inner, 1] - lifted[inner, 1]
    assert np.all((rise >= 3.5) & (rise <= 6)), rise


def _folded(renderer, motion):
    """Triangles of the lips that the motion turns over (a fold: another triangle's pixels show
    twice); a triangle squeezed flat where the lips meet is not one."""
    def signed(points):
        t = points[renderer.triangles]
        a, b = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
        return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    moved, _ = renderer.vertices(motion)
    rest, now = signed(renderer.rest), signed(moved)
    return np.flatnonzero(renderer.regions["mouth"][0] & (now * np.sign(rest) < -2.0))   # 1 px^2 turned


@pytest.mark.parametrize("motion", [{}, dict(jaw_open=0.3, lip_gap=0.2), dict(jaw_open=1.0, lip_gap=0.6,
                                                                             upper_lip_raise=0.5)])
def test_the_lips_open_and_close_without_folding(renderer, motion):
    """Her smile is closed at zero motion and opened from there: the mesh's points between the lip
    lines move with the lines around them and the skin under the corners rises no further than
    they do, so no lip triangle turns over (at rest it once folded 40, a jagged upper lip)."""
    assert len(_folded(renderer, vec(**motion))) == 0


def test_a_medium_opening_keeps_dark_between_the_teeth_and_the_lower_lip(renderer):
    """Upper teeth reaching down to the lower lip read as a shut mouth to a viewer (and to the
    landmark model): the lowest part of a medium opening is shadow."""
    from models.portrait.mouth import LUMA
    m = vec(jaw_open=0.25, lip_gap=0.3)
    frame = renderer.render(m).astype(np.float32)
    pts = renderer.basis.displace(m)
    up, low = pts[topo.UPPER_LIP_INNER_MID], pts[topo.LOWER_LIP_INNER_MID]
    assert low[1] - up[1] > 0.02 * renderer.basis.height
    column = frame[int(round(up[1])):int(round(low[1])) + 1, int(round(up[0]))] @ LUMA
    teeth = float(renderer.mouth.teeth @ LUMA)
    assert column.max() > 0.7 * teeth                    # the teeth show ...
    lowest = column[-max(2, len(column) // 5):]
    assert lowest.min() < 0.4 * teeth, column.round()    # ... above a dark band


def test_lips_just_parted_show_a_visible_dark_slit(renderer):
    """Lips 0.6% of the face apart (1.5 pixels here) are painted as a dark slit about 1.2% of the
    face wide at the middle, not a line a viewer (or the landmark model) barely sees (it was 2
    pixels)."""
    from models.portrait.mouth import LUMA
    m = vec(lip_gap=0.15)
    frame = renderer.render(m).astype(np.float32)
    shut = renderer.render(vec()).astype(np.float32)
    pts = renderer.basis.displace(m)
    x, y = (int(round(v)) for v in (pts[topo.UPPER_LIP_INNER_MID] + pts[topo.LOWER_LIP_INNER_MID]) / 2)
    fh = renderer.basis.height
    reach = int(0.02 * fh)
    darker = (shut[y - reach:y + reach + 1, x] - frame[y - reach:y + reach + 1, x]) @ LUMA > 30
    assert darker.sum() >= 0.013 * fh, darker


def test_the_lips_are_mapped_on_every_pixel(renderer):
    """Where the lips meet over her (closed) smile the map jumps from one lip to the other: the
    lips' region is rasterised per pixel, so that line has no 2-pixel stair steps, and it is the
    exact map there."""
    m = vec()
    moved, _ = renderer.vertices(m)
    box, map_x, map_y = renderer.flow.maps(moved, [renderer.regions["mouth"]])
    full_x, full_y = renderer.flow.exact(moved, (0, 0, renderer.size, renderer.size),
                                         np.flatnonzero(renderer.regions["mouth"][0]), 1)
    lips = renderer.basis.rest[list(topo.LIPS_INNER_UPPER), :2]
    (x0, y0), (x1, y1) = np.floor(lips.min(0)).astype(int) + 2, np.ceil(lips.max(0)).astype(int) - 2
    ours = map_y[y0 - box[1]:y1 - box[1], x0 - box[0]:x1 - box[0]]
    assert renderer.regions["mouth"][1] == 1
    assert np.abs(ours - full_y[y0:y1, x0:x1]).max() < 1e-3


def test_lips_pressed_at_the_middle_are_not_painted_open_there(renderer):
    """Parted at the sides but touching at the middle (a press with rounding): the slit's least
    width applies where the lips are apart, so the middle shows no more than the thin line of the
    lips' smoothed curves (forcing the width there painted it 4 pixels open)."""
    from models.portrait.mouth import LUMA, LOWER, UPPER
    m = vec(jaw_open=0.1, lip_gap=-0.35, mouth_round=0.24, lip_press=0.67)
    pts = renderer.basis.displace(m)
    gap = pts[LOWER, 1] - pts[UPPER, 1]
    assert gap.max() > 1.5 and gap[len(gap) // 2] < 0.1
    frame = renderer.render(m).astype(np.float32)
    shut = renderer.render(vec()).astype(np.float32)
    x, y = (int(round(v)) for v in (pts[topo.UPPER_LIP_INNER_MID] + pts[topo.LOWER_LIP_INNER_MID]) / 2)
    darker = (shut[y - 6:y + 7, x] - frame[y - 6:y + 7, x]) @ LUMA > 30
    assert darker.sum() <= 2, darker
