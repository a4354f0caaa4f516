"""The shipped tiny checkpoint: it is there, it loads without falling back, and its mouth follows
held-out speech (voices, sentences and a face identity it never trained on)."""

import pytest

from avatar.evaluate import evaluate
from avatar.profiles import load_profile
from avatar.profiles import WEIGHTS_DIR
from models.checkpoints import read_metadata

WEIGHTS = WEIGHTS_DIR / "tiny.safetensors"


def test_the_shipped_checkpoint_is_the_distilled_student():
    assert WEIGHTS.is_file(), "models/weights/tiny.safetensors is part of the repository"
    assert WEIGHTS.stat().st_size < 40e6
    meta = read_metadata(WEIGHTS)
    assert meta["dit"] == "student"
    profile = load_profile("tiny", "cpu")
    assert not profile.random_weights and profile.name == "tiny"


@pytest.mark.slow
def test_the_shipped_model_lip_syncs_held_out_speech():
    result = evaluate("tiny", minutes=0)
    assert result["lip_sync_correlation"] >= 0.6, result
    assert abs(result["lip_sync_lag_frames"]) <= 1, result
    assert result["seam_ratio"] <= 1.2, result  # the shipped model measures 1.165
