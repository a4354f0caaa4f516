"""A session in a process of its own (avatar/remote.py): the frames this process would make, the
engine's errors as they are, a dead process an error and not a hang, a closed one gone; in the server,
a call whose session process dies ends alone, and the other call goes on."""

import asyncio
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar.errors import FaceError
from avatar.remote import RemoteSession, SessionEnded
from avatar.session import Session
from streaming.config import ServerConfig
from streaming.contrib.pyclient import CallClient
from streaming.server import AvatarServer


def session_processes():
    return [p for p in multiprocessing.active_children() if p.name == "avatar-session"]


@pytest.fixture
def one_thread():
    """Both sides compute on one thread (float sums in another order would differ in the last bits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def drive(session, audio):
    """Audio in 20 ms pushes, speech marks after it, an interrupt and a skip midway; the frames back."""
    frames, results = [], []
    for n, start in enumerate(range(0, len(audio), 320)):
        pcm = audio[start:start + 320]
        session.push_audio(pcm, 16000)
        session.mark_speech(start, start + len(pcm), bool(n % 50 < 40))
        if n == 60:
            assert session.interrupt() == session.frames_done * 640
        if n == 90:
            session.skip(2)
        while session.windows_ready():
            result = session.run_window(None, deliver=frames.extend)
            results.append((result.window, result.first_frame, result.steps, result.idle, len(result.frames)))
            assert 0 < session.window_cpu_s == result.cpu_s
    return frames, results


def test_a_session_in_its_own_process_makes_the_frames_this_one_would(tiny_profile, face_image, speech_like,
                                                                      one_thread):
    audio = speech_like(3.0)
    local = Session(tiny_profile, face_image, seed=3)
    remote = RemoteSession(tiny_profile, face_image, seed=3, threads=1)
    try:
        assert np.array_equal(remote.reference.image, local.reference.image)
        made, made_results = drive(local, audio)
        got, got_results = drive(remote, audio)
    finally:
        remote.close()
    # the remote result travels without its frames (they came through `deliver`)
    assert [r[:4] for r in got_results] == [r[:4] for r in made_results] and {r[4] for r in got_results} == {0}
    assert [f.index for f in got] == [f.index for f in made] and len(made) > 20
    assert all(np.array_equal(a.image, b.image) and a.speech == b.speech for a, b in zip(got, made))


def test_the_engines_errors_come_back_as_they_are(portrait_profile):
    with pytest.raises(FaceError) as refused:
        RemoteSession(portrait_profile, np.full((256, 256, 3), 128, np.uint8))
    assert refused.value.reason == "no_face"
    assert session_processes() == []


def test_a_dead_session_process_is_an_error_at_once_not_a_hang(tiny_profile, face_image, speech_like):
    session = RemoteSession(tiny_profile, face_image)
    session.push_audio(speech_like(1.0), 16000)
    session.run_window()
    os.kill(session._process.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(SessionEnded, match="exit code -9"):
        session.run_window()
    assert time.monotonic() - started < 2.0
    session.close()
    assert session_processes() == []


def test_close_ends_the_process_even_mid_window(tiny_profile, face_image, speech_like):
    sessions = [RemoteSession(tiny_profile, face_image) for _ in range(2)]
    assert len(session_processes()) == 2
    assert Path("/proc/self/maps").read_text().count("memfd:avatar-frames") == 2  # each call's frame slots
    for session in sessions:
        session.close()
        session.close()  # a second close is nothing
    assert session_processes() == []
    assert "memfd:avatar-frames" not in Path("/proc/self/maps").read_text()


async def test_a_call_whose_session_process_dies_ends_alone(tiny_profile, speech_hello):
    server = await AvatarServer(ServerConfig(port=0, compute_allowance_s=0.2), tiny_profile).start()
    url = f"ws://127.0.0.1:{server.port}/ws"
    clients = []
    try:
        clients = [await CallClient.open(url, np.tile(speech_hello, 4), 16000, read_stamps=False) for _ in range(2)]
        deadline = time.monotonic() + 30
        while min(len(c.received.video) for c in clients) < 10:
            assert time.monotonic() < deadline, "no video"
            await asyncio.sleep(0.05)
        doomed, survivor = (server.calls[cid] for cid in sorted(server.calls))
        os.kill(doomed.session._process.pid, signal.SIGKILL)
        while doomed.id in server.calls:
            assert time.monotonic() < deadline + 10, "the call with no session went on"
            await asyncio.sleep(0.05)
        errors = [m for c in clients for m in c.received.of_type("error")]
        assert [m["code"] for m in errors] == ["generation_failed"]
        assert "SessionEnded" in errors[0]["message"]
        seen = len(clients[1].received.video) + len(clients[0].received.video)
        await asyncio.sleep(1.0)
        assert survivor.id in server.calls and survivor.worker.alive
        assert len(clients[1].received.video) + len(clients[0].received.video) > seen + 10  # still streaming
        assert len(session_processes()) == 1
    finally:
        for client in clients:
            await client.close()
        await server.stop()
    assert session_processes() == []
