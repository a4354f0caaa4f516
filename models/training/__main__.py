"""Training of the embedded tiny model, resumable, stage by stage (the shipped weights' exact
commands, times and losses: models/weights/TINY_MODEL_CARD.md):

    python -m models.training data    --clips 500 --seconds 4
    python -m models.training codec   --steps 3000 --batch 4 --lr 1e-3
    python -m models.training teacher --steps 5000 --batch 8 --lr 5e-4
    python -m models.training decoder --steps 3000 --batch 4 --lr 3e-4
    python -m models.training distill --steps 600 --batch 4 --lr 1e-4 --teacher-steps 8
    python -m models.training export  --which student

The portrait profile's motion generator (models/weights/PORTRAIT_MODEL_CARD.md) trains the same way,
in --out runs/portrait with the portrait-random profile's shapes; models/training/portrait/train.sh
chains its stages, resumably, with the shipped weights' settings:

    python -m models.training portrait-data    --clips 2000 --seconds 6
    python -m models.training portrait-data    --engine flite --clips 400 --seconds 6
    python -m models.training portrait-teacher --steps 8000 --batch 64 --lr 1e-3
    python -m models.training portrait-student --steps 400 --batch 48 --lr 2e-4 --teacher-steps 8 --truth-weight 3
    python -m models.training portrait-export  --which student
    python -m models.training portrait-eval

Each stage keeps a checkpoint in --out (default runs/tiny, under the working directory) and continues
from it when run again; export writes --target (default <out>/tiny.safetensors). The same DiT class,
sampler, window layout and audio windowing as the engine are used, only smaller.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from .codec_stages import train_codec, train_decoder
from ..profile_reader import read_profile
from .data import make_dataset
from .dit_stages import train_distill, train_teacher
from .export import export
from .portrait import stages as portrait


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m models.training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["data", "codec", "decoder", "teacher", "distill", "export", *portrait.STAGES])
    p.add_argument("--out", type=Path, default=None, help="the run folder (default runs/tiny, runs/portrait)")
    p.add_argument("--profile", default=None, help="profile whose shapes are trained (default tiny-random, "
                                                   "portrait-random)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", choices=["espeak", "flite"], default="espeak",
                   help="portrait-data: the voices (espeak-ng's, or flite's recorded speakers)")
    p.add_argument("--student-steps", type=int, default=2)
    p.add_argument("--teacher-steps", type=int, default=16)
    p.add_argument("--audio-cfg", type=float, default=2.0)
    p.add_argument("--truth-weight", type=float, default=0.0,
                   help="portrait-student: weight of the pull of the mouth toward the data's own, every frame")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="bf16: autocast matrix work to bfloat16 (fast on CPUs with AVX-512 BF16 / AMX)")
    p.add_argument("--which", choices=["teacher", "student"], default="student")
    p.add_argument("--voices", type=int, default=4, help="portrait-eval: held-out voices")
    p.add_argument("--render", action="store_true", help="portrait-eval: also render and judge the frames")
    p.add_argument("--sweep", action="store_true", help="portrait-eval: r of each sampling plan (steps, guidance)")
    p.add_argument("--json", type=Path, default=None, help="portrait-eval: write the figures here")
    p.add_argument("--target", type=Path, default=None,
                   help="export's weights file (default <out>/tiny.safetensors; the shipped one is "
                        "models/weights/tiny.safetensors in a source checkout)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.manual_seed(args.seed)
    if args.stage in portrait.STAGES:
        portrait.run(args)
        return
    args.out = args.out or Path("runs") / "tiny"
    cfg = read_profile(args.profile or "tiny-random")
    size = cfg.resolution[0]
    bf16 = args.precision == "bf16"
    if args.stage == "data":
        make_dataset(args.out, args.clips, args.seconds, size, args.seed)
    elif args.stage == "codec":
        train_codec(args.out, args.steps, args.batch, args.lr, cfg, bf16)
    elif args.stage == "decoder":
        train_decoder(args.out, args.steps, args.batch, args.lr, cfg, bf16)
    elif args.stage == "teacher":
        train_teacher(args.out, args.steps, args.batch, args.lr, cfg, bf16)
    elif args.stage == "distill":
        train_distill(args.out, args.steps, args.batch, args.lr, cfg, args.student_steps, args.teacher_steps,
                      args.audio_cfg, bf16)
    else:
        export(args.out, cfg, args.target or args.out / "tiny.safetensors", args.which)


if __name__ == "__main__":
    main()
