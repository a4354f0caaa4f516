"""Prompt embeddings for the 1.3B profiles: umT5-XXL encoder (transformers' UMT5EncoderModel).

Sources, in order: a Hugging Face-format `<base>/text_encoder/` (+ `<base>/tokenizer/` or
`<base>/google/umt5-xxl/`), or Wan's own `<base>/models_t5_umt5-xxl-enc-bf16.pth` mapped onto
UMT5 by `WAN_T5_TO_HF` (Wan's T5 is a re-implementation of umT5 with other names: per-layer
relative position buckets (32, max distance 128), gated tanh-GELU FFN, RMS norms, no attention
scaling, exactly as transformers' UMT5). Embeddings are cut to the prompt's true token length (the
DiT zero-pads to 512), computed on the CPU once per prompt and cached by prompt string.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from .checkpoints import CheckpointError, load_exact

T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
TEXT_LEN = 512

# Wan's umT5-XXL encoder (wan/modules/t5.py: umt5_xxl, encoder only).
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, is_encoder_decoder=False)

WAN_T5_TO_HF = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def wan_t5_key_to_hf(key: str) -> list[str]:
    """HF UMT5EncoderModel names of one Wan T5 key (the token embedding is shared by two)."""
    if key == "token_embedding.weight":
        return ["shared.weight", "encoder.embed_tokens.weight"]
    if key == "norm.weight":
        return ["encoder.final_layer_norm.weight"]
    m = _BLOCK.match(key)
    if m and m.group(2) in WAN_T5_TO_HF:
        return [f"encoder.block.{m.group(1)}.{WAN_T5_TO_HF[m.group(2)]}"]
    return [key]


def hf_key_to_wan_t5(key: str) -> str | None:
    """The inverse (None for the tied copy `encoder.embed_tokens.weight`)."""
    if key == "shared.weight":
        return "token_embedding.weight"
    if key == "encoder.final_layer_norm.weight":
        return "norm.weight"
    m = re.match(r"^encoder\.block\.(\d+)\.(.+)$", key)
    inverse = {v: k for k, v in WAN_T5_TO_HF.items()}
    if m and m.group(2) in inverse:
        return f"blocks.{m.group(1)}.{inverse[m.group(2)]}"
    return None


def umt5_from_wan_file(path: Path, config: UMT5Config, dtype: torch.dtype) -> UMT5EncoderModel:
    """Load Wan's T5 encoder .pth into UMT5EncoderModel, exactly (every key used, none missing)."""
    try:
        original = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {path} (Wan's umT5-XXL text encoder): {exc}") from exc
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    state = {}
    for key, value in original.items():
        for name in wan_t5_key_to_hf(key):
            state[name] = value
    shared = original["token_embedding.weight"].to(dtype)
    state = {k: (shared if "embed" in k or k == "shared.weight" else v.to(dtype)) for k, v in state.items()}
    load_exact(model, state, f"{path} (Wan's umT5-XXL text encoder)", assign=True)
    return model.eval().requires_grad_(False)


class TextEncoder:
    """prompt -> (1, L, 4096) umT5 embeddings, L the true token length (<= 512), cached per prompt."""

    def __init__(self, tokenizer, model: UMT5EncoderModel, max_length: int = TEXT_LEN):
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, prompt: str) -> torch.Tensor:
        prompt = " ".join(prompt.split())  # Wan cleans whitespace the same way
        if prompt not in self.cache:
            ids = self.tokenizer(prompt, truncation=True, max_length=self.max_length, return_tensors="pt").input_ids
            with torch.inference_mode():
                out = self.model(input_ids=ids.to(self.model.device)).last_hidden_state
            self.cache[prompt] = out.float().cpu()
        return self.cache[prompt]


def load_text_encoder(base: Path, dtype: torch.dtype = torch.bfloat16) -> TextEncoder:
    base = Path(base)
    hf_dir = base / "text_encoder"
    tok_dir = next((d for d in (base / "tokenizer", base / "google" / "umt5-xxl") if d.is_dir()), None)
    if tok_dir is None:
        raise CheckpointError(f"missing tokenizer: {base / 'google' / 'umt5-xxl'} (google/umt5-xxl's tokenizer "
                              f"files, as shipped in Wan2.1-Fun-V1.1-1.3B-InP) or {base / 'tokenizer'}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load the umT5 tokenizer from {tok_dir}: {exc}") from exc
    if (hf_dir / "config.json").is_file():
        model = UMT5EncoderModel.from_pretrained(hf_dir, torch_dtype=dtype, local_files_only=True).eval()
    elif (base / T5_FILE).is_file():
        model = umt5_from_wan_file(base / T5_FILE, UMT5Config(**UMT5_XXL), dtype)
    else:
        raise CheckpointError(
            f"missing weight file {base / T5_FILE} (Wan's umT5-XXL text encoder), or a Hugging Face-format "
            f"UMT5EncoderModel in {hf_dir} (e.g. text_encoder/ of Wan-AI/Wan2.1-T2V-1.3B-Diffusers)")
    return TextEncoder(tokenizer, model)
