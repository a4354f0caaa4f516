import dataclasses
import inspect
import re
import shutil

import pytest
import torch

from avatar import profiles
from avatar.errors import ProfileError, WeightsError
from models.checkpoints import CheckpointError, cast_keeping_fp32, load_exact, read_tensors, save_modules
from models.dit import AudioWanTransformer
from models.profile_config import DitConfig, ProfileConfig, ProfileConfigError
from models.profile_reader import PROFILE_DIR, read_profile
from models.sampler import Branch, GuidancePhase, GuidancePlan, GuidanceTerm

SHIPPED = {"portrait", "portrait-random", "tiny", "tiny-random", "echomimic-v3", "echomimic-v3-fast",
           "echomimic-v3-random"}


@pytest.fixture
def profile_dir(tmp_path):
    """A profile directory holding a copy of tiny-random, for files that extend it."""
    shutil.copy(PROFILE_DIR / "tiny-random.toml", tmp_path)
    return tmp_path


def write(directory, name, text):
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_profile_reads_to_a_typed_config(name):
    cfg = profiles.read_profile_config(name)
    assert isinstance(cfg, ProfileConfig) and cfg.name == name
    assert cfg.dit.in_channels == 2 * cfg.dit.out_channels + 4  # Wan-Fun-InP: noisy + mask + known
    assert cfg.sampler.idle_steps <= cfg.sampler.steps


def test_the_shipped_profiles_are_the_ones_listed():
    assert set(profiles.profile_names()) == SHIPPED


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="unknown profile 'huge'.*tiny-random"):
        profiles.read_profile_config("huge")


def refusal(directory, body: str) -> tuple:
    """Write a profile that extends tiny-random with `body`: its path, and the reader's error."""
    path = write(directory, "bad", 'extends = "tiny-random"\n' + body)
    with pytest.raises(ProfileConfigError) as err:
        read_profile("bad", directory)
    return path, str(err.value)


def test_a_misspelt_key_is_refused_naming_the_key_and_the_file(profile_dir):
    path, message = refusal(profile_dir, "[sampler]\nstpes = 4\n")
    assert message == f"{path}: unknown key 'sampler.stpes'; [sampler] takes: steps, idle_steps, shift, sigmas, guidance, guidance_nested, guidance_schedule, noise_scale"


def test_a_starting_noise_scale_outside_0_to_1_is_refused(profile_dir):
    for value in ("0", "1.5", "-0.5"):
        path, message = refusal(profile_dir, f"[sampler]\nnoise_scale = {value}\n")
        assert message == f"{path}: sampler.noise_scale must be in (0, 1], not {float(value)}"


def test_a_misspelt_key_in_the_extended_file_names_that_file(profile_dir):
    base = write(profile_dir, "base", 'colour = "red"\n' + (PROFILE_DIR / "tiny-random.toml").read_text())
    write(profile_dir, "child", 'extends = "base"\n')
    with pytest.raises(ProfileConfigError, match=rf"{re.escape(str(base))}: unknown key 'colour'"):
        read_profile("child", profile_dir)


def test_a_misspelt_guidance_condition_is_refused_naming_the_file(profile_dir):
    path, message = refusal(profile_dir, "[sampler]\nguidance = [{ min_sigma = 0.5, audoi = 2.0 }]\n")
    assert message == (f"{path}: unknown key 'sampler.guidance[0].audoi'; "
                       f"a phase takes: min_sigma, audio, text, negative")


def test_a_guidance_phase_without_its_min_sigma_is_refused(profile_dir):
    path, message = refusal(profile_dir, "[sampler]\nguidance = [{ audio = 2.0 }]\n")
    assert message == f"{path}: missing key 'sampler.guidance[0].min_sigma'"


def test_a_value_of_the_wrong_type_is_refused_naming_the_key(profile_dir):
    path, message = refusal(profile_dir, '[window]\nnew_latents = "two"\n')
    assert message == f"{path}: window.new_latents must be an integer, not 'two'"


def test_a_value_outside_its_choices_is_refused_naming_them(profile_dir):
    path, message = refusal(profile_dir, '[codec]\nkind = "h264"\n')
    assert message == f"{path}: codec.kind = 'h264' is not one of tiny, wan-vae, portrait"


@pytest.mark.parametrize("body, refused", [
    ('[window]\nconditioning = "outpaint"\n', "window.conditioning = 'outpaint' is not one of clean-tokens, inpaint"),
    ('[audio]\nslots = "zeros"\n', "audio.slots = 'zeros' is not one of features, official"),
    ('[sampler]\nsigmas = "karras"\n', "sampler.sigmas = 'karras' is not one of linear, flow-match-euler"),
    ('[sampler]\nguidance_schedule = "linear"\n', "sampler.guidance_schedule = 'linear' is not one of constant, cosine"),
])
def test_the_echomimic_input_choices_are_refused_outside_their_values(profile_dir, body, refused):
    path, message = refusal(profile_dir, body)
    assert message == f"{path}: {refused}"


def test_the_echomimic_profiles_choose_their_inputs():
    official, fast, tiny = read_profile("echomimic-v3"), read_profile("echomimic-v3-fast"), read_profile("tiny")
    assert (official.window.conditioning, official.audio.slots, official.audio.face_mask) == ("inpaint", "official", True)
    assert official.sampler.guidance.nested and official.sampler.guidance.schedule == "cosine"
    assert fast.window.conditioning == "clean-tokens" and not fast.sampler.guidance.nested
    assert (tiny.window.conditioning, tiny.audio.slots, tiny.audio.face_mask) == ("clean-tokens", "features", False)


def test_a_missing_required_key_is_named(profile_dir):
    text = (PROFILE_DIR / "tiny-random.toml").read_text().replace("new_latents = 2", "")
    write(profile_dir, "short", text)
    with pytest.raises(ProfileConfigError, match="missing key 'window.new_latents'"):
        read_profile("short", profile_dir)


def test_extends_merges_tables_key_by_key_and_replaces_other_values(profile_dir):
    write(profile_dir, "child", 'extends = "tiny-random"\nresolution = [64, 64]\n[sampler]\nsteps = 6\n')
    base, child = read_profile("tiny-random", profile_dir), read_profile("child", profile_dir)
    assert child.resolution == (64, 64) and child.sampler.steps == 6
    assert child.sampler.shift == base.sampler.shift and child.sampler.guidance == base.sampler.guidance
    assert child.dit == base.dit and child.window == base.window


def test_a_file_that_extends_itself_is_refused(profile_dir):
    write(profile_dir, "a", 'extends = "b"\n')
    write(profile_dir, "b", 'extends = "a"\n')
    with pytest.raises(ProfileConfigError, match="loops back"):
        read_profile("a", profile_dir)


def test_defaults_live_in_the_schema(profile_dir):
    write(profile_dir, "plain", (PROFILE_DIR / "tiny-random.toml").read_text().replace("idle_steps = 1", ""))
    cfg = read_profile("plain", profile_dir)
    assert cfg.sampler.idle_steps == cfg.sampler.steps == 2  # idle windows default to the full steps
    assert cfg.sampler.noise_scale == 1.0   # the starting noise is a standard normal
    assert cfg.text.negative_prompt == "" and cfg.dtype == "float32"


def test_the_dit_schema_defaults_are_the_networks_own():
    network = inspect.signature(AudioWanTransformer.__init__).parameters
    for f in dataclasses.fields(DitConfig):
        if f.default is not dataclasses.MISSING and f.name not in ("image_dim", "added_kv_proj_dim"):
            assert f.default == network[f.name].default, f.name


def test_the_dtype_rule_is_dtype_on_cuda_and_cpu_dtype_elsewhere():
    tiny, wan = read_profile("tiny"), read_profile("echomimic-v3")
    assert tiny.torch_dtype("cpu") == torch.bfloat16 and tiny.torch_dtype("cuda") == torch.float32
    assert wan.torch_dtype("cpu") == torch.float32 and wan.torch_dtype("cuda") == torch.bfloat16


def test_a_loaded_config_cannot_be_changed():
    cfg = read_profile("tiny-random")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sampler.steps = 8


def test_a_sampler_override_is_a_copy(tiny_profile):
    from avatar.evaluate import with_sampler

    before = tiny_profile.config
    teacher = with_sampler(tiny_profile, steps=8, audio_guidance=2.0)
    assert teacher.steps == teacher.idle_steps == 8
    assert teacher.guidance == GuidancePlan((GuidancePhase(0.0, (GuidanceTerm(Branch.AUDIO, 2.0),)),))
    assert teacher.dit is tiny_profile.dit  # the models are shared, not copied
    assert tiny_profile.config is before and tiny_profile.steps == 2


def test_a_weights_override_is_a_copy_of_the_config(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_modules(path, {"dit": torch.nn.Linear(2, 2)})
    with pytest.raises(WeightsError, match=rf"{re.escape(str(path))} does not fit the model"):
        profiles.load_profile("tiny", "cpu", weights=path)
    assert profiles.read_profile_config("tiny").weights == "tiny.safetensors"


def test_the_tiny_profile_names_its_missing_weight_file(monkeypatch, tmp_path):
    monkeypatch.setattr(profiles, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(WeightsError, match=r"missing weight file.*tiny\.safetensors"):
        profiles.load_profile("tiny", "cpu")


def test_the_1_3b_profile_names_its_missing_weights(monkeypatch):
    monkeypatch.delenv("AVATAR_ECHOMIMIC_DIR", raising=False)
    with pytest.raises(WeightsError, match="AVATAR_ECHOMIMIC_DIR"):
        profiles.load_profile("echomimic-v3", "cpu")


def test_checkpoints_round_trip(tmp_path):
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    path = tmp_path / "w.safetensors"
    save_modules(path, {"dit": a}, {"steps": 10})
    load_exact(b, {k[4:]: v for k, v in read_tensors(path, "test").items()}, "w")
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_missing_and_unexpected_keys_are_listed():
    a = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match=r"missing keys: bias[\s\S]*unexpected keys: extra"):
        load_exact(torch.nn.Linear(3, 2), {"weight": a.weight, "extra": a.bias}, "w")


def test_a_misshapen_key_is_listed_with_both_shapes():
    with pytest.raises(CheckpointError, match=r"shape of weight: file \(5, 3\), model \(2, 3\)"):
        load_exact(torch.nn.Linear(3, 2), {"weight": torch.zeros(5, 3), "bias": torch.zeros(2)}, "w")


def test_a_missing_weight_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=re.escape(f"missing weight file {tmp_path / 'none.safetensors'}")):
        read_tensors(tmp_path / "none.safetensors", "test")


def test_a_corrupt_weight_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        read_tensors(tmp_path / "bad.safetensors", "test")


def test_the_cast_keeps_the_float32_modules():
    dit = AudioWanTransformer(**read_profile("tiny-random").dit.kwargs())
    cast_keeping_fp32(dit, torch.bfloat16)
    assert dit.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert dit.scale_shift_table.dtype == torch.float32  # modulation
    assert dit.blocks[0].norm2.weight.dtype == torch.float32  # the affine norm before cross-attention
    assert dit.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
