"""wav2vec2 in a stream: block-streamed tokens against the whole-clip encode EchoMimicV3 uses.

    python benchmarks/wav2vec2_streaming.py [--weights DIR] [--audio FILE] [--settings L:R:B ...] [--json FILE]

The official pipeline encodes a whole clip at once (normalised over the clip, last_hidden_state);
a stream cannot, so `Wav2Vec2Encoder` encodes blocks of B tokens with L seconds of audio behind and
R seconds ahead. For each setting this prints the relative L2 of the streamed tokens against the
whole-clip tokens, the look-ahead the setting costs and the encoder work per token delivered.
--weights: a directory holding wav2vec2-base-960h/ (the profile's layout) or the model folder
itself; without it a seeded random-weight wav2vec2-base is used (sizes only, not the real figure).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avatar.audio import load_audio_file  # noqa: E402
from models.audio_features import SAMPLE_RATE  # noqa: E402
from models.wan_audio import HOP, RECEPTIVE_FIELD, WAV2VEC2_DIR, Wav2Vec2Encoder, load_wav2vec2  # noqa: E402

DEFAULT_SETTINGS = ["2:0.16:8", "2:0.32:8", "2:0.64:8", "4:0.32:8", "4:0.64:8", "8:0.64:8", "4:2.0:8", "4:0.64:32"]


def whole_clip_tokens(model, samples: torch.Tensor) -> torch.Tensor:
    """The official encode: the whole clip normalised (Wav2Vec2FeatureExtractor), last_hidden_state."""
    x = (samples - samples.mean()) / torch.sqrt(samples.var(unbiased=False) + 1e-7)
    with torch.inference_mode():
        return model(input_values=x[None]).last_hidden_state[0].float()


def streamed_tokens(encoder: Wav2Vec2Encoder, samples: torch.Tensor, n_tokens: int) -> torch.Tensor:
    s0, s1 = encoder.token_span(0, n_tokens)
    padded = torch.zeros(s1 - s0)  # silence outside the clip, as the session's timeline reads it
    lo, hi = max(s0, 0), min(s1, len(samples))
    padded[lo - s0:hi - s0] = samples[lo:hi]
    return encoder.encode(padded, n_tokens)


def measure(model, samples: torch.Tensor, settings: list[str]) -> list[dict]:
    reference = whole_clip_tokens(model, samples)
    n = reference.shape[0]
    rows = []
    for setting in settings:
        left, right, block = setting.split(":")
        encoder = Wav2Vec2Encoder(model, float(left), float(right), int(block))
        tokens = streamed_tokens(encoder, samples, n)
        cosine = torch.nn.functional.cosine_similarity(tokens, reference, dim=-1)
        rows.append({
            "left_s": float(left), "right_s": float(right), "block_tokens": int(block),
            "lookahead_ms": round(encoder.lookahead_samples / SAMPLE_RATE * 1000, 1),
            "work_per_token": round((encoder.left_tokens + int(block) + encoder.right_tokens) / int(block), 1),
            "rel_l2": round(float((tokens - reference).norm() / reference.norm()), 4),
            "cosine_median": round(float(cosine.median()), 4),
            "cosine_min": round(float(cosine.min()), 4),
        })
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="directory with wav2vec2-base-960h/ in it, or that folder itself")
    p.add_argument("--audio", default=str(Path(__file__).resolve().parent.parent / "tests/data/speech_hello.wav"))
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="LEFT_S:RIGHT_S:BLOCK_TOKENS")
    p.add_argument("--json")
    args = p.parse_args()
    torch.manual_seed(0)
    root = None
    if args.weights:
        root = Path(args.weights)
        root = root.parent if root.name == WAV2VEC2_DIR else root
    model = load_wav2vec2(root, "cpu").eval()
    samples = torch.from_numpy(load_audio_file(args.audio, SAMPLE_RATE))
    rows = measure(model, samples, args.settings)
    weights = "real weights from " + str(root) if root else "random weights (sizes only)"
    print(f"{Path(args.audio).name}: {len(samples) / SAMPLE_RATE:.2f} s, "
          f"{(len(samples) - RECEPTIVE_FIELD) // HOP + 1} tokens, wav2vec2-base with {weights}")
    print(f"{'left_s':>6} {'right_s':>7} {'block':>5} {'lookahead_ms':>12} {'work/token':>10} "
          f"{'rel_l2':>7} {'cos_med':>7} {'cos_min':>7}")
    for r in rows:
        print(f"{r['left_s']:>6} {r['right_s']:>7} {r['block_tokens']:>5} {r['lookahead_ms']:>12} "
              f"{r['work_per_token']:>10} {r['rel_l2']:>7} {r['cosine_median']:>7} {r['cosine_min']:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps({"audio": args.audio, "weights": weights, "rows": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
