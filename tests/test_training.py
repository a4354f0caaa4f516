"""A few steps of each training stage on a tiny batch: the pipeline runs and writes what it should."""

import json

import numpy as np
import pytest
import torch

from models.training.codec_stages import train_codec, train_decoder
from models.profile_config import read_profile
from models.training.data import Windows, make_dataset
from models.training.dit_stages import train_distill, train_teacher
from models.training.export import export
from models.checkpoints import read_metadata


@pytest.mark.slow
def test_each_stage_runs_resumes_and_exports(tmp_path):
    cfg = read_profile("tiny-random")
    make_dataset(tmp_path, clips=3, seconds=1.6, size=cfg.resolution[0], seed=1)
    data = np.load(tmp_path / "data.npz")
    assert data["video"].shape == (3, 40, 128, 128, 3) and data["audio"].shape == (3, 40 * 640)
    assert np.abs(data["audio"]).max() > 0.01  # real speech in it

    train_codec(tmp_path, steps=2, batch=2, lr=1e-3, cfg=cfg)
    train_codec(tmp_path, steps=3, batch=2, lr=1e-3, cfg=cfg)  # resumes at step 2
    assert torch.load(tmp_path / "codec.pt", weights_only=False)["step"] == 3
    encoder = {k: v.clone() for k, v in torch.load(tmp_path / "codec.pt", weights_only=False)["model"].items()
               if not k.startswith("decoder.")}
    train_decoder(tmp_path, steps=2, batch=2, lr=1e-3, cfg=cfg)
    tuned = torch.load(tmp_path / "decoder.pt", weights_only=False)["model"]
    assert all(torch.equal(tuned[k], v) for k, v in encoder.items())  # the DiT's latents keep their meaning
    assert any(not torch.equal(tuned[k], v) for k, v in torch.load(tmp_path / "codec.pt", weights_only=False)
               ["model"].items() if k.startswith("decoder."))
    train_teacher(tmp_path, steps=2, batch=2, lr=1e-4, cfg=cfg)
    train_distill(tmp_path, steps=1, batch=1, lr=1e-4, cfg=cfg, student_steps=2, teacher_steps=2,
                  audio_cfg=2.0)
    for stage in ("codec", "decoder", "teacher", "student"):
        lines = (tmp_path / f"{stage}.log.jsonl").read_text().splitlines()
        assert np.isfinite(json.loads(lines[-1])["loss"])

    target = tmp_path / "tiny.safetensors"
    export(tmp_path, cfg, target, "student")
    meta = read_metadata(target)
    assert meta["dit"] == "student" and meta["steps"] == 1

    from avatar.profiles import load_profile
    profile = load_profile("tiny", "cpu", weights=target)
    assert not profile.random_weights


def test_windows_are_cut_like_the_session(tmp_path):
    cfg = read_profile("tiny-random")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", video=rng.integers(0, 255, (2, 32, 128, 128, 3), dtype=np.uint8),
             refs=rng.integers(0, 255, (2, 128, 128, 3), dtype=np.uint8),
             audio=rng.normal(0, 0.1, (2, 32 * 640)).astype(np.float32))
    train_codec(tmp_path, steps=1, batch=1, lr=1e-3, cfg=cfg)
    windows = Windows(tmp_path, cfg)
    latents, audio, n_known = windows.batch(rng, 2, continuation=True)
    c, n = cfg.window.context_latents, cfg.window.new_latents
    assert n_known == 1 + c and latents.shape[2] == 1 + c + n
    assert audio.shape[:2] == (2, 1 + c + n) and torch.all(audio[:, 0] == 0)  # reference: null audio
    latents, audio, n_known = windows.batch(rng, 2, continuation=False)
    assert n_known == 1 and latents.shape[2] == 1 + n
