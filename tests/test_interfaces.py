"""The codec and audio-encoder contracts (models/interfaces.py) and the classes that implement them."""

import inspect

import pytest

from models.audio_features import MelEncoder
from models.interfaces import AudioEncoder, Codec, PhotoCodec
from models.portrait.codec import MotionCodec
from models.tiny_codec import TinyCodec
from models.wan_audio import Wav2Vec2Encoder
from models.wan_vae import WanVaeCodec, random_vae


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def contract_methods(protocol) -> list[str]:
    return [name for name, value in vars(protocol).items() if inspect.isfunction(value) and not name.startswith("_")]


@pytest.mark.parametrize("protocol, implementation", [
    (Codec, TinyCodec), (Codec, WanVaeCodec), (Codec, MotionCodec), (PhotoCodec, MotionCodec),
    (AudioEncoder, MelEncoder), (AudioEncoder, Wav2Vec2Encoder)])
def test_each_implementation_takes_the_contracts_arguments(protocol, implementation):
    names = contract_methods(protocol)
    assert len(names) >= 2
    for name in names:
        assert parameters(getattr(implementation, name)) == parameters(getattr(protocol, name)), name


def test_both_codecs_are_codecs():
    assert isinstance(TinyCodec(), Codec)
    assert isinstance(WanVaeCodec(random_vae(dict(base_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1))), Codec)


def test_only_the_portrait_codec_takes_the_whole_photo():
    assert isinstance(MotionCodec(), PhotoCodec) and not isinstance(TinyCodec(), PhotoCodec)


def test_the_mel_encoder_is_an_audio_encoder():
    assert isinstance(MelEncoder(), AudioEncoder)


def test_a_part_without_the_contract_is_not_a_codec():
    assert not isinstance(MelEncoder(), Codec)
