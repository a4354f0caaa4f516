"""The engine's commands: render, bench, eval. The `avatar` command itself, which adds `serve`, is
`streaming/cli.py` (the one module allowed to import every layer); `python -m avatar.cli` runs these
three without the transport."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import AvatarError
from .photo import OUTPUT_MODES
from .logs import setup_logging
from .profiles import DEFAULT_PROFILE, profile_names
from .threads import set_torch_threads

log = logging.getLogger("avatar")


def add_model_args(p: argparse.ArgumentParser, default_device: str = "cpu") -> None:
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"one of: {', '.join(profile_names())} (default {DEFAULT_PROFILE})")
    p.add_argument("--weights", help="weights directory (1.3B profiles) or file (tiny, portrait); see README.md")
    p.add_argument("--device", default=default_device, help="cpu, cuda or auto")
    p.add_argument("--size", type=int, help="portrait profiles: the face crop's side in pixels (default: the profile's, 512)")


def add_output_mode_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-mode", choices=OUTPUT_MODES, default="crop",
                   help="portrait profiles: the face crop (default), or the whole photo with the face pasted back")


def _add_conditioning_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conditioning", choices=("inpaint", "clean-tokens"),
                   help="override the profile's window conditioning (how the reference and context enter the DiT)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive_int,
                   help="torch's CPU threads (default: OMP_NUM_THREADS if set, else the cores less one, as the server)")


def cmd_render(args) -> int:
    from .audio import load_audio_file
    from .profiles import load_profile
    from .session import Session
    from .video import Mp4Writer

    threads = set_torch_threads(args.threads)
    audio = load_audio_file(args.audio)
    if len(audio) == 0:
        raise AvatarError(f"{args.audio} holds no audio samples")
    profile = load_profile(args.profile, args.device, args.weights, args.size).with_conditioning(args.conditioning)
    for note in profile.notes:
        print(f"note: {note}", file=sys.stderr)
    session = Session(profile, args.image, prompt=args.prompt, seed=args.seed, output_mode=args.output_mode)
    if not session.reference.face_found:
        print("note: no face found in the reference image; using a centre crop", file=sys.stderr)
    for note in session.reference.notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        writer = Mp4Writer(args.out, profile.fps, session.reference.image.shape[:2], audio_rate=profile.sample_rate)
        compute = _render_into(writer, session, audio, args.quiet)
    except OSError as exc:  # av's errors: the file cannot be written, or the RTMP server refused or went away
        raise AvatarError(f"cannot write {args.out}: {exc}") from None
    media = len(audio) / profile.sample_rate
    print(f"wrote {args.out}: {writer.frames} frames, {media:.2f} s at {profile.fps} fps, "
          f"compute {compute:.2f} s, real-time factor {compute / media:.2f}, torch threads {threads}")
    return 0


def _render_into(writer, session, audio, quiet: bool) -> float:
    """Every frame of the audio with its audio beside it (a live rtmp:// output needs the two
    interleaved); the compute time."""
    from tqdm import tqdm

    from models.audio_features import SAMPLES_PER_FRAME

    from .session import stream_file

    started = time.perf_counter()
    with tqdm(total=-(-len(audio) // SAMPLES_PER_FRAME), unit="frame", desc="render", disable=quiet) as bar:
        for frames in stream_file(session, audio):
            for frame in frames:
                writer.write(frame.image, frame.index)
                writer.write_audio(audio[writer.audio_samples:(frame.index + 1) * SAMPLES_PER_FRAME])
                bar.update(1)
    compute = time.perf_counter() - started
    writer.write_audio(audio[writer.audio_samples:])
    writer.close()
    return compute


def cmd_bench(args) -> int:
    from .bench import run_bench

    set_torch_threads(args.threads)
    return _report(run_bench(args.profile, args.seconds, args.device, args.weights, steps=args.steps,
                             conditioning=args.conditioning, size=args.size), args.json)


def _report(result: dict, json_path: str | None) -> int:
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:>{width}}: {value}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
        print(f"wrote {json_path}")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate

    set_torch_threads(args.threads)
    return _report(evaluate(args.profile, args.weights, args.steps, args.minutes, args.device, args.seed,
                            args.audio_guidance, args.size), args.json)


def build_parser(more_commands: Callable[[argparse._SubParsersAction], None] | None = None) -> argparse.ArgumentParser:
    """The engine's commands; `more_commands(subparsers)` adds those of a layer above (serve)."""
    parser = argparse.ArgumentParser(prog="avatar", description="Streaming talking-avatar engine and server")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text or as one JSON object each (default text)")
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render a talking-head mp4 from an image and a speech file")
    render.add_argument("--image", required=True)
    render.add_argument("--audio", required=True)
    render.add_argument("--out", required=True, help="an .mp4 file, or an rtmp:// URL to push to (FLV)")
    render.add_argument("--prompt")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    add_output_mode_arg(render)
    _add_conditioning_arg(render)
    add_model_args(render)
    _add_threads_arg(render)
    render.set_defaults(func=cmd_render)

    bench = sub.add_parser("bench", help="real-time factor, window latency, fps and memory of a profile")
    bench.add_argument("--seconds", type=float, default=10.0)
    bench.add_argument("--steps", type=int, help="override the profile's sampling steps")
    bench.add_argument("--json", help="also write the figures to this JSON file")
    _add_conditioning_arg(bench)
    add_model_args(bench)
    _add_threads_arg(bench)
    bench.set_defaults(func=cmd_bench)

    evaluation = sub.add_parser("eval", help="lip sync, seams and drift on held-out speech")
    evaluation.add_argument("--minutes", type=float, default=10.0, help="length of the drift stream (0: skip)")
    evaluation.add_argument("--steps", type=int, help="override the profile's sampling steps")
    evaluation.add_argument("--audio-guidance", type=float,
                            help="audio classifier-free guidance at every step (e.g. the teacher: 2.0)")
    evaluation.add_argument("--seed", type=int, default=0)
    evaluation.add_argument("--json", help="also write the figures to this JSON file")
    add_model_args(evaluation)
    _add_threads_arg(evaluation)
    evaluation.set_defaults(func=cmd_eval)

    if more_commands is not None:
        more_commands(sub)
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    setup_logging(args.verbose, args.log_format)
    try:
        return args.func(args)
    except AvatarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
