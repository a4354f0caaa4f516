import torch

from models.tiny_codec import TinyCodec


def test_shapes_and_streaming_decode_continues_itself():
    torch.manual_seed(0)
    codec = TinyCodec(16, (8, 16, 24)).eval()
    frames = torch.rand(1, 12, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        latents = codec.encode(frames)
        assert latents.shape == (1, 16, 3, 8, 8)
        ref = codec.encode_reference(frames[:, 0])
        assert ref.shape == (1, 16, 1, 8, 8)
        whole, _ = codec.decode(latents, codec.start_stream(ref, frames[:, 0]))
        state = codec.start_stream(ref, frames[:, 0])
        first, state = codec.decode(latents[:, :, :1], state)
        rest, state = codec.decode(latents[:, :, 1:], state)
    assert whole.shape == (1, 12, 3, 64, 64)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole)
    assert whole.abs().max() <= 1


def test_the_memory_and_the_reference_image_both_shape_the_frames():
    torch.manual_seed(0)
    codec = TinyCodec(16, (8, 16, 24)).eval()
    z = torch.randn(1, 16, 1, 8, 8)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a, _ = codec.decode(z, codec.start_stream(torch.zeros(1, 16, 1, 8, 8), image))
        b, _ = codec.decode(z, codec.start_stream(torch.randn(1, 16, 1, 8, 8), image))
        c, _ = codec.decode(z, codec.start_stream(torch.zeros(1, 16, 1, 8, 8), -image))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, c)
