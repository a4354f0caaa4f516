"""wav2vec2 audio tokens for the EchoMimicV3 preview profiles (transformers' Wav2Vec2Model).

wav2vec2 hops 320 samples (20 ms, 50 Hz: 2 tokens per video frame) with a 400-sample receptive
field: token j is computed from samples [320 j, 320 j + 400) of the whole input, and the model is
not causal (bidirectional attention, GroupNorm over time), so every token depends on all the audio
it is run on. To make tokens depend only on a fixed span, tokens are computed in blocks of
`block_tokens` (counted from the first token asked for), each run on its own input: its tokens plus
a fixed left context and right context, normalised to zero mean and unit variance over that input
as Wav2Vec2FeatureExtractor(do_normalize=True) does. Asking for [j0, j1) at once, or for
[j0, j0 + k * block) and then the rest, gives the same tokens. The blocks of one call run as one
batch. EchoMimicV3 encodes whole clips at once; the fixed context approximates that for a stream.

Look-ahead: the right context plus the 80 ms by which a token's receptive field passes its hop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from .audio_features import SAMPLE_RATE
from .checkpoints import CheckpointError

HOP = 320
RECEPTIVE_FIELD = 400


class Wav2Vec2Encoder:
    tokens_per_frame = 2

    def __init__(self, model: Wav2Vec2Model, left_context_s: float, right_context_s: float,
                 block_tokens: int = 8):
        self.model = model.eval().requires_grad_(False)
        self.feature_dim = model.config.hidden_size
        self.left_tokens = math.ceil(left_context_s * SAMPLE_RATE / HOP)
        self.right_tokens = math.ceil(right_context_s * SAMPLE_RATE / HOP)
        self.block_tokens = int(block_tokens)
        self.lookahead_samples = self.right_tokens * HOP + RECEPTIVE_FIELD - HOP

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _input_length(self, n_tokens: int) -> int:
        return (n_tokens + self.left_tokens + self.right_tokens - 1) * HOP + RECEPTIVE_FIELD

    def token_span(self, j0: int, j1: int) -> tuple[int, int]:
        s0 = (j0 - self.left_tokens) * HOP
        return s0, s0 + self._input_length(j1 - j0)

    def encode(self, samples: np.ndarray | torch.Tensor, n_tokens: int) -> torch.Tensor:
        """Samples of token_span(j0, j0 + n_tokens) -> (n_tokens, feature_dim) tokens, float32."""
        x = torch.as_tensor(np.asarray(samples, dtype=np.float32))
        expected = self._input_length(n_tokens)
        if x.ndim != 1 or x.shape[0] != expected:
            raise ValueError(f"{n_tokens} tokens need {expected} mono samples, got {tuple(x.shape)}")
        full, rest = divmod(n_tokens, self.block_tokens)
        out = []
        if full:
            out.append(self._run_blocks(x, [b * self.block_tokens for b in range(full)], self.block_tokens))
        if rest:
            out.append(self._run_blocks(x, [full * self.block_tokens], rest))
        return torch.cat(out)

    def _run_blocks(self, x: torch.Tensor, starts: list[int], length: int) -> torch.Tensor:
        size = self._input_length(length)
        batch = torch.stack([x[s * HOP: s * HOP + size] for s in starts])
        mean = batch.mean(dim=1, keepdim=True)
        var = batch.var(dim=1, unbiased=False, keepdim=True)
        batch = (batch - mean) / torch.sqrt(var + 1e-7)
        with torch.inference_mode():
            hidden = self.model(input_values=batch.to(self.device)).last_hidden_state
        if hidden.shape[1] != self.left_tokens + length + self.right_tokens:
            raise RuntimeError(f"wav2vec2 gave {hidden.shape[1]} tokens for {size} samples")
        tokens = hidden[:, self.left_tokens: self.left_tokens + length]
        return tokens.reshape(-1, hidden.shape[-1]).float()


WAV2VEC2_DIR = "wav2vec2-base-960h"


def load_wav2vec2(root: Path | None, device) -> Wav2Vec2Model:
    """facebook/wav2vec2-base-960h from `<root>/wav2vec2-base-960h` (HF format); random if root is None."""
    if root is None:
        return Wav2Vec2Model(Wav2Vec2Config()).to(device)
    path = Path(root) / WAV2VEC2_DIR
    if not (path / "config.json").is_file():
        raise CheckpointError(f"missing {path / 'config.json'} (facebook/wav2vec2-base-960h in Hugging Face "
                              f"format: config.json and model.safetensors or pytorch_model.bin)")
    try:
        return Wav2Vec2Model.from_pretrained(path, local_files_only=True).to(device)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot load wav2vec2 from {path}: {exc}") from exc
