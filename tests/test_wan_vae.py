"""The Wan VAE codec: streaming decode with the causal cache carried in per-stream state."""

import pytest
import torch

from models.checkpoints import CheckpointError
from models.wan_vae import WanVaeCodec, load_vae, random_vae

SMALL = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True])


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return WanVaeCodec(random_vae(SMALL)).eval()


def test_chunked_stream_decode_equals_one_shot_diffusers_decode(codec):
    torch.manual_seed(1)
    latents = torch.randn(1, 16, 7, 4, 4)  # normalised: [reference, l1 .. l6]
    with torch.no_grad():
        state = codec.start_stream(latents[:, :, :1])
        pieces = []
        for a, b in ((1, 2), (2, 4), (4, 7)):  # 1 + 2 + 3 latents over three calls
            frames, state = codec.decode(latents[:, :, a:b], state)
            assert frames.shape == (1, 4 * (b - a), 3, 32, 32)
            pieces.append(frames)
        streamed = torch.cat(pieces, dim=1)
        whole = codec.vae.decode(codec.denormalise(latents)).sample  # (1, 3, 1 + 4 * 6, 32, 32)
    assert whole.shape[2] == 25
    torch.testing.assert_close(streamed, whole[:, :, 1:].transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_two_streams_on_one_codec_do_not_mix(codec):
    torch.manual_seed(2)
    a, b = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        alone, _ = codec.decode(a[:, :, 1:], codec.start_stream(a[:, :, :1]))
        sa, sb = codec.start_stream(a[:, :, :1]), codec.start_stream(b[:, :, :1])
        first_a, sa = codec.decode(a[:, :, 1:2], sa)
        _, sb = codec.decode(b[:, :, 1:2], sb)  # interleaved with stream a
        second_a, sa = codec.decode(a[:, :, 2:3], sa)
    torch.testing.assert_close(torch.cat([first_a, second_a], dim=1), alone, atol=1e-6, rtol=0)
    # decoding does not consume the state it is given: the same state decodes the same way twice
    with torch.no_grad():
        s = codec.start_stream(a[:, :, :1])
        once, _ = codec.decode(a[:, :, 1:2], s)
        again, _ = codec.decode(a[:, :, 1:2], s)
    assert torch.equal(once, again)


def test_reference_encodes_to_one_normalised_latent_that_matches_diffusers(codec):
    torch.manual_seed(3)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = codec.encode_reference(image)
        expected = codec.vae.encode(image[:, :, None]).latent_dist.mode()
    assert z.shape == (2, 16, 1, 4, 4)
    torch.testing.assert_close(codec.denormalise(z), expected, atol=1e-5, rtol=1e-5)
    mean = torch.tensor(codec.vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(codec.vae.config.latents_std).view(1, 16, 1, 1, 1)
    torch.testing.assert_close(z, (expected - mean) / std, atol=1e-4, rtol=1e-4)


def test_missing_vae_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing weight file .*Wan2\.1_VAE\.pth \(the Wan2\.1 VAE"):
        load_vae(tmp_path, "cpu", torch.float32)
