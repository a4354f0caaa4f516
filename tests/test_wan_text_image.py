"""umT5 text embeddings (Wan's .pth layout mapped onto transformers) and CLIP image tokens."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from models.checkpoints import CheckpointError
from models.wan_image import ImageEncoder, load_image_encoder
from models.wan_text import T5_FILE, TextEncoder, hf_key_to_wan_t5, load_text_encoder, umt5_from_wan_file

SMALL_T5 = dict(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4,
                feed_forward_proj="gated-gelu", is_encoder_decoder=False)


def small_tokenizer():
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate("a calm face speaks softly".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def wan_layout(model):
    """Wan's T5 state dict derived from a UMT5 model through the inverse map (tied copy dropped)."""
    out = {}
    for key, value in model.state_dict().items():
        original = hf_key_to_wan_t5(key)
        if original is None:
            assert key == "encoder.embed_tokens.weight"
            continue
        out[original] = value.clone()
    return out


def test_wan_t5_file_loads_into_umt5_exactly(tmp_path):
    torch.manual_seed(0)
    source = UMT5EncoderModel(UMT5Config(**SMALL_T5)).eval()
    layout = wan_layout(source)
    assert "blocks.1.ffn.gate.0.weight" in layout and "blocks.0.pos_embedding.embedding.weight" in layout
    assert "token_embedding.weight" in layout and "norm.weight" in layout
    torch.save(layout, tmp_path / T5_FILE)
    loaded = umt5_from_wan_file(tmp_path / T5_FILE, UMT5Config(**SMALL_T5), torch.float32)
    ids = torch.tensor([[3, 4, 5, 1]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).last_hidden_state, source(input_ids=ids).last_hidden_state)
    assert loaded.shared.weight.data_ptr() == loaded.encoder.embed_tokens.weight.data_ptr()
    del layout["blocks.1.attn.q.weight"]
    torch.save(layout, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="missing .*encoder.block.1.layer.0.SelfAttention.q.weight"):
        umt5_from_wan_file(tmp_path / "broken.pth", UMT5Config(**SMALL_T5), torch.float32)


def test_text_encoder_cuts_to_true_length_and_caches():
    torch.manual_seed(0)
    enc = TextEncoder(small_tokenizer(), UMT5EncoderModel(UMT5Config(**SMALL_T5)).eval())
    a = enc("a calm  face")
    assert a.shape == (1, 4, 16)  # 3 words + </s>, no padding to 512
    assert enc("a calm face") is a  # whitespace-cleaned and cached
    assert enc("a calm face speaks softly").shape == (1, 6, 16)
    assert len(enc.cache) == 2


def test_text_encoder_loads_from_an_hf_directory_and_names_what_is_missing(tmp_path):
    base = tmp_path / "base"
    with pytest.raises(CheckpointError, match="google/umt5-xxl"):
        load_text_encoder(base)
    small_tokenizer().save_pretrained(base / "google" / "umt5-xxl")
    with pytest.raises(CheckpointError, match=f"missing weight file .*{T5_FILE}.*text_encoder"):
        load_text_encoder(base)
    torch.manual_seed(0)
    UMT5EncoderModel(UMT5Config(**SMALL_T5)).save_pretrained(base / "text_encoder")
    enc = load_text_encoder(base, torch.float32)
    assert enc("a face").shape == (1, 3, 16)


def test_image_encoder_gives_penultimate_tokens(tmp_path):
    with pytest.raises(CheckpointError, match="image_encoder/config.json.*CLIPVisionModel"):
        load_image_encoder(tmp_path, "cpu", torch.float32)
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                              image_size=224, patch_size=14)
    CLIPVisionModel(config).save_pretrained(tmp_path / "image_encoder")
    enc = load_image_encoder(tmp_path, "cpu", torch.float32)
    rgb = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    tokens = enc(rgb)
    assert tokens.shape == (1, 257, 32)  # 16 x 16 patches + class token
    with torch.no_grad():
        out = enc.model(pixel_values=enc.preprocess(rgb), output_hidden_states=True)
    torch.testing.assert_close(tokens, out.hidden_states[2])  # 3 layers: the output of the 2nd
    assert not torch.allclose(tokens, out.last_hidden_state)
    assert isinstance(enc, ImageEncoder)
