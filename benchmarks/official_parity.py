"""Our DiT and window inputs against the official EchoMimicV3 (preview) code, one chunk, float32.

    python benchmarks/official_parity.py --official DIR [--weights FILE] [--blocks 2]

DIR: a checkout of antgroup/echomimic_v3 (its `src/` is imported; it needs its own requirements,
einops among them). FILE: the published transformer/diffusion_pytorch_model.safetensors (all 30
blocks); without it both models get the same seeded random weights (--blocks of them). One chunk
[reference | 5 latents] on a 64x64 image, three guidance rows (null audio, null audio, audio) with a
face box: the official forward (its ip_mask and its own audio windowing of the chunk's tokens)
against ours (face_token_mask, official_audio_window, audio_slots). Prints the relative L2, and
what leaving out the face mask or the zero slots would cost.
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avatar.profiles import read_profile_config  # noqa: E402
from models.echomimic_inputs import face_token_mask, official_audio_window  # noqa: E402
from models.wan_dit import build_dit, load_dit_file  # noqa: E402

LATENTS, FIRST, BOX = 5, 4, (10, 20, 50, 60)  # chunk latents after the reference; our first latent; x1 y1 x2 y2


class ChunkEncoder:
    """Gives our token j the chunk's token j - c0 (chunk-local token 0 is the reference's frame)."""

    tokens_per_frame = 2

    def __init__(self, chunk: torch.Tensor, c0: int):
        self.chunk, self.c0 = chunk, c0

    def token_span(self, j0, j1):
        return j0 * 320, j1 * 320

    def encode(self, samples, n):
        return self.chunk[torch.as_tensor(np.asarray(samples[::320]) // 320 - self.c0)]


def official_model(official_cls, blocks: int, weights: str | None):
    model = official_cls(model_type="i2v", patch_size=(1, 2, 2), text_len=512, in_dim=36, dim=1536, ffn_dim=8960,
                         freq_dim=256, text_dim=4096, out_dim=16, num_heads=12, num_layers=blocks, in_channels=36,
                         hidden_size=1536, cross_attn_norm=True, qk_norm=True, eps=1e-6)
    if weights:
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
        print(f"official load: {len(missing)} missing, {len(unexpected)} unexpected keys")
    else:
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                gain = 1.0 if p.ndim == 1 and "norm" in name and name.endswith("weight") else 0.0
                p.copy_(torch.randn_like(p) * (0.05 if p.ndim > 1 else 0.1) + gain)
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--official", required=True, help="a checkout of antgroup/echomimic_v3")
    p.add_argument("--weights", help="the published transformer safetensors (default: random weights)")
    p.add_argument("--blocks", type=int, default=2, help="blocks of the random-weight models")
    p.add_argument("--scratch", default="/tmp/official_parity.safetensors", help="where random weights are written")
    args = p.parse_args()
    sys.path.insert(0, args.official)
    from src.wan_transformer3d_audio import WanTransformerAudioMask3DModel

    blocks = 30 if args.weights else args.blocks
    official = official_model(WanTransformerAudioMask3DModel, blocks, args.weights)
    path = args.weights
    if not path:
        path = args.scratch
        save_file({k: v.contiguous() for k, v in official.state_dict().items()}, path)
    layout = replace(read_profile_config("echomimic-v3").dit, num_layers=blocks)
    ours = load_dit_file(build_dit(layout, "meta"), path, "the transformer", "cpu", torch.float32).eval()

    frames_in_chunk = 1 + 4 * LATENTS
    g = torch.Generator().manual_seed(1)
    chunk = torch.randn(2 * frames_in_chunk, 768, generator=g)
    encoder = ChunkEncoder(chunk, 8 * FIRST - 2)
    features, slots = official_audio_window(encoder, lambda s0, s1: np.arange(s0, s1), FIRST, LATENTS, 4, 5, 4)
    t = 1 + LATENTS
    x, y = torch.randn(3, 16, t, 8, 8, generator=g), torch.randn(3, 20, t, 8, 8, generator=g)
    timestep = torch.full((3,), 937.5)
    text, clip = torch.randn(7, 4096, generator=g), torch.randn(1, 257, 1280, generator=g)
    mask = face_token_mask(BOX, 64, 64)[None]
    official_audio = torch.stack([torch.zeros_like(chunk), torch.zeros_like(chunk), chunk])
    our_audio = torch.stack([torch.zeros_like(features), torch.zeros_like(features), features])
    hidden = torch.cat([x, y], dim=1)
    with torch.no_grad():
        reference = official(x=x, t=timestep, context=([text] * 3, official_audio, t, mask.repeat(3, 1), 1.0),
                             seq_len=t * 16, clip_fea=clip.repeat(3, 1, 1), y=y)
        context = ours.prepare_context(text[None], clip)
        exact = ours(hidden, timestep, context, our_audio, audio_mask=mask, audio_slots=slots[None])
        no_mask = ours(hidden, timestep, context, our_audio, audio_slots=slots[None])
        no_slots = ours(hidden, timestep, context, our_audio, audio_mask=mask)

    def rel(a):
        return float((a - reference).norm() / reference.norm())

    print(f"{blocks} blocks, {'published' if args.weights else 'random'} weights, rows (null, null, audio)")
    print(f"ours vs official:                         rel L2 {rel(exact):.2e}")
    print(f"  without the face mask:                  rel L2 {rel(no_mask):.3f}")
    print(f"  zero features instead of zero slots:    rel L2 {rel(no_slots):.3f}")


if __name__ == "__main__":
    main()
