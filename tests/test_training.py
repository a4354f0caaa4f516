"""The training recipe on a tiny batch: every stage runs once (one run folder for the module), and
each test checks one thing the stages promise."""

import json

import numpy as np
import pytest
import torch

from models.checkpoints import read_metadata
from models.profile_reader import read_profile
from models.training.codec_stages import train_codec, train_decoder
from models.training.data import Windows, make_dataset
from models.training.dit_stages import train_distill, train_teacher
from models.training.export import export


@pytest.fixture(scope="module")
def cfg():
    return read_profile("tiny-random")


@pytest.fixture(scope="module")
def run(tmp_path_factory, cfg):
    """A run folder after every stage; the codec is run to step 2, then again to step 3 (a resume),
    and the codec's weights are kept as they were before the decoder stage."""
    out = tmp_path_factory.mktemp("run")
    make_dataset(out, clips=3, seconds=1.6, size=cfg.resolution[0], seed=1)
    train_codec(out, steps=2, batch=2, lr=1e-3, cfg=cfg)
    train_codec(out, steps=3, batch=2, lr=1e-3, cfg=cfg)
    codec = torch.load(out / "codec.pt", weights_only=False)
    train_decoder(out, steps=2, batch=2, lr=1e-3, cfg=cfg)
    train_teacher(out, steps=2, batch=2, lr=1e-4, cfg=cfg)
    train_distill(out, steps=1, batch=1, lr=1e-4, cfg=cfg, student_steps=2, teacher_steps=2, audio_cfg=2.0)
    export(out, cfg, out / "tiny.safetensors", "student")
    return out, codec


@pytest.mark.slow
def test_data_stage_renders_clips_of_whole_latents_with_speech(run):
    data = np.load(run[0] / "data.npz")
    # 1.6 s at 25 fps = 40 frames = 10 latents of 4; 640 samples a frame
    assert data["video"].shape == (3, 40, 128, 128, 3) and data["refs"].shape == (3, 128, 128, 3)
    assert data["audio"].shape == (3, 40 * 640)
    assert np.abs(data["audio"]).max() > 0.01  # espeak speech, not silence


@pytest.mark.slow
def test_a_stage_run_again_with_more_steps_resumes_where_it_stopped(run):
    out, _ = run
    assert torch.load(out / "codec.pt", weights_only=False)["step"] == 3
    steps = [json.loads(line)["step"] for line in (out / "codec.log.jsonl").read_text().splitlines()]
    assert steps == [2, 3]  # one loss line per save, and no step trained twice


@pytest.mark.slow
def test_decoder_stage_trains_the_decoder_and_leaves_the_encoder(run):
    out, codec = run
    tuned = torch.load(out / "decoder.pt", weights_only=False)["model"]
    encoder = {k for k in tuned if not k.startswith("decoder.")}
    assert encoder and all(torch.equal(tuned[k], codec["model"][k]) for k in encoder)  # latents keep their meaning
    assert any(not torch.equal(tuned[k], codec["model"][k]) for k in tuned if k.startswith("decoder."))


@pytest.mark.slow
def test_every_stage_logs_a_finite_loss_at_its_last_step(run):
    expected_last = {"codec": 3, "decoder": 2, "teacher": 2, "student": 1}
    for stage, last in expected_last.items():
        entry = json.loads((run[0] / f"{stage}.log.jsonl").read_text().splitlines()[-1])
        assert entry["step"] == last and np.isfinite(entry["loss"]), stage


@pytest.mark.slow
def test_export_writes_weights_the_engine_loads(run):
    from avatar.profiles import load_profile

    target = run[0] / "tiny.safetensors"
    meta = read_metadata(target)
    assert meta["dit"] == "student" and meta["steps"] == 1 and meta["student_steps"] == 2
    assert not load_profile("tiny", "cpu", weights=target).random_weights


def test_windows_are_cut_like_the_session(tmp_path, cfg):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", video=rng.integers(0, 255, (2, 32, 128, 128, 3), dtype=np.uint8),
             refs=rng.integers(0, 255, (2, 128, 128, 3), dtype=np.uint8),
             audio=rng.normal(0, 0.1, (2, 32 * 640)).astype(np.float32))
    train_codec(tmp_path, steps=1, batch=1, lr=1e-3, cfg=cfg)
    windows = Windows(tmp_path, cfg)
    c, n = cfg.window.context_latents, cfg.window.new_latents
    latents, audio, n_known = windows.batch(rng, 2, continuation=True)
    assert n_known == 1 + c and latents.shape[2] == 1 + c + n
    assert audio.shape[:2] == (2, 1 + c + n) and torch.all(audio[:, 0] == 0)  # reference: null audio
    latents, audio, n_known = windows.batch(rng, 2, continuation=False)
    assert n_known == 1 and latents.shape[2] == 1 + n
