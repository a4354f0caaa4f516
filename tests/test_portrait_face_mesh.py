"""The face mesh on real photos (public-domain/CC0 samples shipped in scikit-image) and bad input."""
import struct
import zlib

import cv2
import numpy as np
import pytest

skdata = pytest.importorskip("skimage.data")

from models.portrait import topology as topo  # noqa: E402
from models.portrait.face_mesh import FaceMesher, FaceMeshError, as_rgb, read_photo  # noqa: E402


@pytest.fixture(scope="module")
def mesher():
    return FaceMesher()


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()   # Eileen Collins, NASA, public domain; face ~95 px wide


def _check_plausible(mesh, box):
    p = mesh.points
    assert p.shape == (topo.NUM_POINTS, 3) and np.isfinite(p).all()
    x0, y0, x1, y1 = box
    assert (p[:, 0] > x0).all() and (p[:, 0] < x1).all() and (p[:, 1] > y0).all() and (p[:, 1] < y1).all()
    eyes_y = p[[topo.RIGHT_EYE_OUTER, topo.LEFT_EYE_OUTER], 1].mean()
    assert p[topo.FOREHEAD_TOP, 1] < eyes_y < p[topo.NOSE_TIP, 1] < p[topo.UPPER_LIP_INNER_MID, 1]
    assert p[topo.UPPER_LIP_INNER_MID, 1] <= p[topo.LOWER_LIP_INNER_MID, 1] < p[topo.CHIN, 1]
    assert p[topo.RIGHT_EYE_OUTER, 0] < p[topo.LEFT_EYE_OUTER, 0]


def test_astronaut_mesh_is_where_her_face_is(mesher, astronaut):
    mesh = mesher.fit(astronaut)
    _check_plausible(mesh, (160, 60, 290, 200))   # her face in the 512x512 photo, by eye
    assert mesh.score > 0.9 and abs(mesh.yaw_deg) < 15 and mesh.notes == []
    assert 90 < mesh.face_height < 125


def test_grayscale_and_rgba_give_the_same_mesh_with_a_note(mesher, astronaut):
    ref = mesher.fit(astronaut).points
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    mesh = mesher.fit(gray)
    assert any("grayscale" in n for n in mesh.notes)
    assert np.abs(mesh.points[:, :2] - ref[:, :2]).mean() < 2.0
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 255, np.uint8)], 2)
    rgba[:40, :, 3] = 0   # a transparent band at the top
    mesh = mesher.fit(rgba)
    assert any("RGBA" in n for n in mesh.notes)
    assert np.abs(mesh.points[:, :2] - ref[:, :2]).mean() < 1.0


def test_rolled_photo_still_fits(mesher, astronaut):
    rot = cv2.getRotationMatrix2D((222, 130), 25, 1.0)
    rolled = cv2.warpAffine(astronaut, rot, (512, 512), borderMode=cv2.BORDER_REFLECT)
    mesh = mesher.fit(rolled)
    expect = mesher.fit(astronaut).points[:, :2] @ rot[:, :2].T + rot[:, 2]
    assert np.abs(mesh.points[:, :2] - expect).mean() < 3.0


def test_several_faces_use_the_largest_and_say_so(mesher, astronaut):
    face = astronaut[40:240, 120:330]
    canvas = np.full((420, 700, 3), 200, np.uint8)
    canvas[10:410, 0:420] = cv2.resize(face, (420, 400))
    canvas[150:250, 500:605] = cv2.resize(face, (105, 100))
    mesh = mesher.fit(canvas)
    assert any("2 faces" in n and "largest" in n for n in mesh.notes)
    assert mesh.points[:, 0].max() < 420


def test_tiny_face_is_refused(mesher, astronaut):
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceMeshError) as err:
        mesher.fit(small)
    assert err.value.reason == "tiny_face" and "px wide" in str(err.value)


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea"])
def test_no_human_face(mesher, name):
    with pytest.raises(FaceMeshError) as err:
        mesher.fit(getattr(skdata, name)())   # a cup, a rocket, a cat
    assert err.value.reason == "no_face"


def test_profile_view_is_refused(mesher):
    # The CC0 "cameraman": his face is seen from the side, pressed to the camera.
    with pytest.raises(FaceMeshError) as err:
        mesher.fit(skdata.camera())
    assert err.value.reason in ("profile", "no_face")


def test_image_bomb_refused_before_decoding(tmp_path):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)   # 2.5 GP RGB claimed
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    with pytest.raises(FaceMeshError) as err:
        read_photo(str(path))
    assert err.value.reason == "image_too_large"
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8000, 8000, 3))
    with pytest.raises(FaceMeshError) as err:
        as_rgb(huge, [])
    assert err.value.reason == "image_too_large"


def test_bad_arrays_and_files(tmp_path):
    for bad in (np.zeros((64, 64, 3), np.float32), np.zeros((64, 64, 2), np.uint8),
                np.zeros((16, 64, 3), np.uint8)):
        with pytest.raises(FaceMeshError) as err:
            as_rgb(bad, [])
        assert err.value.reason == "bad_image"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(FaceMeshError) as err:
        read_photo(str(junk))
    assert err.value.reason == "bad_image"


def test_read_photo_keeps_mode(tmp_path, astronaut):
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))
    assert read_photo(str(path)).ndim == 2


def test_read_photo_applies_exif_orientation(tmp_path, astronaut):
    from PIL import Image
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6   # "rotate 90 CW to view": the pixels are stored turned
    Image.fromarray(np.rot90(astronaut, 1)).save(path, exif=exif.tobytes(), quality=95)
    upright = read_photo(str(path))
    assert upright.shape == astronaut.shape
    assert np.abs(upright.astype(int) - astronaut).mean() < 8
