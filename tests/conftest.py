import asyncio
import time
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
def portrait_profile():
    from avatar.profiles import load_profile

    return load_profile("portrait-random", "cpu")


@pytest.fixture(scope="session")
def photo():
    """A real photograph: NASA's astronaut portrait (public domain), as scikit-image ships it."""
    from skimage import data

    return data.astronaut()


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


@pytest.fixture
def turn_server(tmp_path):
    """A real TURN (and STUN) server on loopback: Debian's coturn, long-term credentials alice/s3cret.
    Yields the URL as --ice-server takes it."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("needs coturn (apt-get install coturn)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "turn.log"
    proc = subprocess.Popen(
        [binary, "-n", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", "--min-port=49200", "--max-port=49400", "--lt-cred-mech",
         "--user=alice:s3cret", "--realm=avatar.test", "--allow-loopback-peers", "--simple-log",
         f"--pidfile={tmp_path / 'turn.pid'}", f"--userdb={tmp_path / 'turn.db'}", f"--log-file={log}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (log.exists() and "Total General servers" in log.read_text(errors="replace")):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("coturn did not start")
        time.sleep(0.05)
    try:
        yield f"turn:alice:s3cret@127.0.0.1:{port}?transport=udp"
    finally:
        proc.terminate()
        proc.wait(10)


async def wait_until(predicate, timeout: float) -> float:
    """Poll `predicate` until it holds (failing after `timeout` s); the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def started_servers(profile, compute_allowance_s: float):
    """The body of a `server` fixture: yields start(**overrides) -> a running AvatarServer (stamped
    frames, a fixed compute allowance); stops every server it started afterwards."""
    from streaming.config import ServerConfig
    from streaming.server import AvatarServer

    servers = []

    async def start(**overrides):
        config = ServerConfig(port=0, stamp_frames=True, **{"compute_allowance_s": compute_allowance_s, **overrides})
        srv = await AvatarServer(config, profile).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        await srv.stop()
