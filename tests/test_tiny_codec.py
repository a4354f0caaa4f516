import torch

from models.tiny_codec import FRAMES_PER_LATENT, TinyCodec


def _codec():
    torch.manual_seed(0)
    codec = TinyCodec(16, (8, 16, 24), audio_tokens=(16, 40)).eval()
    torch.nn.init.normal_(codec.decoder.chain[-1].weight, std=0.1)  # the chain starts as a no-op
    return codec


def _inputs():
    torch.manual_seed(1)
    return torch.randn(1, 16, 1, 8, 8), torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 1, 16, 40)


def _decode(codec, z, reference_latent, image, audio):
    with torch.no_grad():
        return codec.decode(z, codec.start_stream(reference_latent, image), audio)


def _per_frame_change(a, b):
    """Mean absolute difference of each of the frames, (T,)."""
    return (a - b).abs().mean(dim=(0, 2, 3, 4))


def test_encode_and_decode_shapes():
    codec = _codec()
    frames = torch.rand(1, 12, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        latents = codec.encode(frames)
        ref = codec.encode_reference(frames[:, 0])
        whole, _ = codec.decode(latents, codec.start_stream(ref, frames[:, 0]), torch.randn(1, 3, 16, 40))
    assert latents.shape == (1, 16, 3, 8, 8)
    assert ref.shape == (1, 16, 1, 8, 8)
    assert whole.shape == (1, 12, 3, 64, 64)
    assert whole.abs().max() <= 1


def test_streaming_decode_in_pieces_equals_decoding_at_once():
    codec = _codec()
    frames = torch.rand(1, 12, 3, 64, 64) * 2 - 1
    audio = torch.randn(1, 3, 16, 40)
    with torch.no_grad():
        latents = codec.encode(frames)
        ref = codec.encode_reference(frames[:, 0])
        whole, _ = codec.decode(latents, codec.start_stream(ref, frames[:, 0]), audio)
        first, state = codec.decode(latents[:, :, :1], codec.start_stream(ref, frames[:, 0]), audio[:, :1])
        rest, _ = codec.decode(latents[:, :, 1:], state, audio[:, 1:])
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole)


def test_a_stream_continues_exactly_from_the_last_frame_shown():
    codec = _codec()
    z, image, audio = _inputs()
    with torch.no_grad():
        state = codec.start_stream(torch.zeros(1, 16, 1, 8, 8), image)
        assert torch.equal(state.last_frame, image)  # the first window continues the reference image
        frames, state = codec.decode(z, state, audio)
    assert torch.equal(state.last_frame, frames[:, -1])


def test_audio_reaches_the_frames_only_through_the_frame_chain():
    codec = _codec()
    z, image, audio = _inputs()
    ref = torch.zeros(1, 16, 1, 8, 8)
    heard = _per_frame_change(_decode(codec, z, ref, image, audio)[0], _decode(codec, z, ref, image, -audio)[0])
    assert (heard > 0.01).all(), heard  # measured 0.04-0.06 per frame
    torch.nn.init.zeros_(codec.decoder.chain[-1].weight)
    torch.nn.init.zeros_(codec.decoder.chain[-1].bias)
    assert torch.equal(_decode(codec, z, ref, image, audio)[0], _decode(codec, z, ref, image, -audio)[0])


def test_the_reference_image_shapes_every_frame():
    codec = _codec()
    z, image, audio = _inputs()
    ref = torch.zeros(1, 16, 1, 8, 8)
    change = _per_frame_change(_decode(codec, z, ref, image, audio)[0], _decode(codec, z, ref, -image, audio)[0])
    assert (change > 0.01).all(), change  # measured 0.016-0.08 per frame


def test_the_memory_of_the_reference_latent_shapes_every_frame():
    codec = _codec()
    z, image, audio = _inputs()
    a, _ = _decode(codec, z, torch.zeros(1, 16, 1, 8, 8), image, audio)
    b, _ = _decode(codec, z, torch.randn(1, 16, 1, 8, 8), image, audio)
    change = _per_frame_change(a, b)
    assert (change > 5e-4).all(), change  # measured 1.3e-3-1.7e-3 per frame


def test_the_frames_inside_a_latent_differ_from_one_another():
    codec = _codec()
    z, image, audio = _inputs()
    frames, _ = _decode(codec, z, torch.zeros(1, 16, 1, 8, 8), image, audio)
    steps = [(frames[:, j + 1] - frames[:, j]).abs().mean().item() for j in range(FRAMES_PER_LATENT - 1)]
    assert min(steps) > 0.05, steps  # measured 0.10-0.16 between neighbours
