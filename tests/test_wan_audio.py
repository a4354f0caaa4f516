"""wav2vec2 audio tokens: exact counts, fixed spans, and pieces equal to one call."""

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from avatar.samples import babble
from models.audio_features import lookahead_seconds
from models.checkpoints import CheckpointError
from models.wan_audio import Wav2Vec2Encoder, load_wav2vec2


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    return Wav2Vec2Encoder(Wav2Vec2Model(config), left_context_s=0.5, right_context_s=0.16, block_tokens=8)


@pytest.fixture(scope="module")
def audio():
    return babble(4.0, 16000, seed=3)


def read(audio, s0, s1):
    """Silence outside the audio, as the session's timeline reads."""
    out = np.zeros(s1 - s0, np.float32)
    a, b = max(s0, 0), min(s1, len(audio))
    if b > a:
        out[a - s0:b - s0] = audio[a:b]
    return out


def tokens(encoder, audio, j0, j1):
    s0, s1 = encoder.token_span(j0, j1)
    return encoder.encode(read(audio, s0, s1), j1 - j0)


def test_shapes_span_and_lookahead(encoder, audio):
    assert encoder.left_tokens == 25 and encoder.right_tokens == 8
    s0, s1 = encoder.token_span(40, 73)
    assert s0 == (40 - 25) * 320
    assert s1 - 73 * 320 == encoder.lookahead_samples == 8 * 320 + 80  # right context + 80 ms field
    out = tokens(encoder, audio, 40, 73)
    assert out.shape == (33, 32) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="33 tokens need"):
        encoder.encode(np.zeros(s1 - s0 - 1, np.float32), 33)
    # 4 ahead tokens (80 ms) + the encoder's own look-ahead, as the session states it
    assert lookahead_seconds(encoder, 4) == pytest.approx((4 * 320 + 8 * 320 + 80) / 16000)


def test_deterministic_and_dependent_only_on_the_span(encoder, audio):
    a = tokens(encoder, audio, 40, 73)
    b = tokens(encoder, audio, 40, 73)
    assert torch.equal(a, b)
    s0, s1 = encoder.token_span(40, 73)
    changed = audio.copy()
    changed[s1:] = 0.5 * np.sign(changed[s1:])  # audio after the span
    changed[:s0] = -changed[:s0]  # and before it
    torch.testing.assert_close(tokens(encoder, changed, 40, 73), a, atol=0, rtol=0)
    inside = audio.copy()
    inside[s1 - 200:s1] = 0.0  # the span's last samples do matter
    assert not torch.allclose(tokens(encoder, inside, 40, 73), a)


def test_pieces_at_block_boundaries_equal_one_call(encoder, audio):
    whole = tokens(encoder, audio, 11, 51)  # 40 tokens: 5 blocks
    pieces = torch.cat([tokens(encoder, audio, 11, 19), tokens(encoder, audio, 19, 43),
                        tokens(encoder, audio, 43, 51)])
    torch.testing.assert_close(pieces, whole, atol=1e-5, rtol=1e-5)
    # a partial last block is computed with the same fixed context
    tail = tokens(encoder, audio, 11, 56)
    torch.testing.assert_close(tail[:40], whole, atol=1e-5, rtol=1e-5)
    assert tail.shape == (45, 32)


def test_input_is_normalised_per_block_so_gain_does_not_matter(encoder, audio):
    a = tokens(encoder, audio, 40, 56)
    b = tokens(encoder, 3.0 * audio, 40, 56)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_before_the_audio_starts_it_reads_silence(encoder, audio):
    out = tokens(encoder, audio, -5, 12)  # EchoMimicV3's first latent window starts before token 0
    assert out.shape == (17, 32) and torch.isfinite(out).all()


def test_missing_wav2vec2_dir_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing .*wav2vec2-base-960h/config\.json \(facebook/wav2vec2"):
        load_wav2vec2(tmp_path, "cpu")


def test_a_saved_model_loads_from_its_directory(tmp_path, encoder):
    encoder.model.save_pretrained(tmp_path / "wav2vec2-base-960h")
    loaded = load_wav2vec2(tmp_path, "cpu")
    for (k, a), (_, b) in zip(encoder.model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
