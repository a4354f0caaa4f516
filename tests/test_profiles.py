import pytest
import torch

from avatar import profiles
from avatar.errors import ProfileError, WeightsError
from models.checkpoints import CheckpointError, load_exact, read_tensors, save_modules


def test_every_profile_file_parses_with_the_fields_the_engine_needs():
    names = profiles.profile_names()
    assert {"tiny", "tiny-random", "echomimic-v3", "echomimic-v3-fast", "echomimic-v3-random"} <= set(names)
    for name in names:
        cfg = profiles.read_profile_config(name)
        for section in ("dit", "audio", "codec", "window", "sampler"):
            assert section in cfg, (name, section)
        dit = cfg["dit"]
        assert dit["in_channels"] == 2 * dit["out_channels"] + 4


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="tiny-random"):
        profiles.read_profile_config("huge")


def test_the_tiny_profile_names_its_missing_weight_file(monkeypatch, tmp_path):
    monkeypatch.setattr(profiles, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError, match=r"missing weight file.*tiny\.safetensors"):
        profiles.load_profile("tiny", "cpu")


def test_the_1_3b_profile_names_its_missing_weights(monkeypatch):
    monkeypatch.delenv("AVATAR_ECHOMIMIC_DIR", raising=False)
    with pytest.raises(WeightsError, match="AVATAR_ECHOMIMIC_DIR"):
        profiles.load_profile("echomimic-v3", "cpu")


def test_checkpoints_round_trip_and_mismatches_are_listed(tmp_path):
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    path = tmp_path / "w.safetensors"
    save_modules(path, {"dit": a}, {"steps": 10})
    state = read_tensors(path, "test")
    load_exact(b, {k[4:]: v for k, v in state.items()}, "w")
    assert torch.equal(a.weight, b.weight)
    with pytest.raises(CheckpointError, match=r"missing keys: bias[\s\S]*unexpected keys: extra"):
        load_exact(b, {"weight": a.weight, "extra": a.bias}, "w")
    with pytest.raises(CheckpointError, match="shape of weight"):
        load_exact(b, {"weight": torch.zeros(5, 3), "bias": a.bias}, "w")
    with pytest.raises(CheckpointError, match="missing weight file"):
        read_tensors(tmp_path / "none.safetensors", "test")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_tensors(tmp_path / "bad.safetensors", "test")


def test_a_weight_file_that_does_not_fit_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_modules(path, {"dit": torch.nn.Linear(2, 2)})
    with pytest.raises(WeightsError, match="does not fit the model"):
        profiles.load_profile("tiny", "cpu", weights=path)
