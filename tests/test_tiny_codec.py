import torch

from models.tiny_codec import TinyCodec


def _codec():
    torch.manual_seed(0)
    codec = TinyCodec(16, (8, 16, 24), audio_tokens=(16, 40)).eval()
    torch.nn.init.normal_(codec.decoder.chain[-1].weight, std=0.1)  # the chain starts as a no-op
    return codec


def test_shapes_and_streaming_decode_continues_itself():
    codec = _codec()
    frames = torch.rand(1, 12, 3, 64, 64) * 2 - 1
    audio = torch.randn(1, 3, 16, 40)
    with torch.no_grad():
        latents = codec.encode(frames)
        assert latents.shape == (1, 16, 3, 8, 8)
        ref = codec.encode_reference(frames[:, 0])
        assert ref.shape == (1, 16, 1, 8, 8)
        whole, _ = codec.decode(latents, codec.start_stream(ref, frames[:, 0]), audio)
        state = codec.start_stream(ref, frames[:, 0])
        first, state = codec.decode(latents[:, :, :1], state, audio[:, :1])
        rest, state = codec.decode(latents[:, :, 1:], state, audio[:, 1:])
    assert whole.shape == (1, 12, 3, 64, 64)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole)
    assert whole.abs().max() <= 1


def test_the_memory_the_reference_image_and_the_audio_all_shape_the_frames():
    codec = _codec()
    z = torch.randn(1, 16, 1, 8, 8)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    audio = torch.randn(1, 1, 16, 40)
    with torch.no_grad():
        a, _ = codec.decode(z, codec.start_stream(torch.zeros(1, 16, 1, 8, 8), image), audio)
        b, _ = codec.decode(z, codec.start_stream(torch.randn(1, 16, 1, 8, 8), image), audio)
        c, _ = codec.decode(z, codec.start_stream(torch.zeros(1, 16, 1, 8, 8), -image), audio)
        d, _ = codec.decode(z, codec.start_stream(torch.zeros(1, 16, 1, 8, 8), image), -audio)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, d)
    # each frame of a latent is its own: they differ from one another
    assert not torch.allclose(a[:, 1], a[:, 2])
