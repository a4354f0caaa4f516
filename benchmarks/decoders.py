"""Streaming decode cost per latent frame (4 video frames): the Wan VAE vs the tiny decoder.

    python benchmarks/decoders.py [--size 128] [--latents 6] [--json FILE]
Random weights (the cost does not depend on them); prints ms per latent and the ratio.
"""

import argparse
import json
import time

import torch

from models.tiny_codec import TinyCodec
from models.wan_vae import WanVaeCodec, random_vae


def per_latent_ms(codec, latents: torch.Tensor, reference: torch.Tensor, image: torch.Tensor) -> float:
    audio = torch.randn(1, 1, 16, 40)  # one latent's tokens, as the session passes them
    with torch.inference_mode():
        state = codec.start_stream(reference, image)
        codec.decode(latents[:, :, :1], state, audio)  # warm-up
        state = codec.start_stream(reference, image)
        started = time.perf_counter()
        for i in range(latents.shape[2]):
            _, state = codec.decode(latents[:, :, i:i + 1], state, audio)
    return (time.perf_counter() - started) / latents.shape[2] * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--latents", type=int, default=6)
    p.add_argument("--json")
    args = p.parse_args()
    torch.manual_seed(0)
    h = args.size // 8
    z = torch.randn(1, 16, args.latents, h, h)
    ref = torch.randn(1, 16, 1, h, h)
    image = torch.rand(1, 3, args.size, args.size) * 2 - 1
    wan = per_latent_ms(WanVaeCodec(random_vae()).eval(), z, ref, image)
    tiny = per_latent_ms(TinyCodec().eval(), z, ref, image)
    result = {"size": args.size, "threads": torch.get_num_threads(), "wan_vae_ms_per_latent": round(wan, 1),
              "tiny_ms_per_latent": round(tiny, 1), "ratio": round(wan / tiny, 1)}
    for k, v in result.items():
        print(f"{k:>22}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
