from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from avatar.samples import babble, drawn_face

DATA = Path(__file__).parent / "data"


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


@pytest.fixture
def speech_hello() -> np.ndarray:
    """The recorded phrase "hello" (about 1 s), 16 kHz mono float32; a fresh copy per test."""
    from avatar.audio import load_audio_file

    return load_audio_file(DATA / "speech_hello.wav")


@pytest.fixture
def running():
    """`with running(*workers):` starts generation workers and stops them however the block ends."""
    @contextmanager
    def run(*workers):
        for worker in workers:
            worker.start()
        try:
            yield workers
        finally:
            for worker in workers:
                worker.stop()

    return run
