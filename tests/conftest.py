import numpy as np
import pytest

from avatar.samples import babble, drawn_face


@pytest.fixture(scope="session")
def tiny_profile():
    from avatar.profiles import load_profile

    return load_profile("tiny-random", "cpu")


@pytest.fixture(scope="session")
def face_image():
    return drawn_face(256)


@pytest.fixture
def speech_like():
    def make(seconds: float, seed: int = 0) -> np.ndarray:
        return babble(seconds, 16000, seed)

    return make
