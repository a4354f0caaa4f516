"""Held-out espeak voice -> speech targets -> portrait renderer: mp4, PNG strips and the judge.

    python benchmarks/portrait_preview.py [--image face.png] [--variant color,gray,turned,rolled]
        [--voice 0] [--out runs/portrait-preview] [--size 512] [--json FILE]

Without --image: scikit-image's public-domain astronaut photo (smiling, teeth showing), as is
(`color`), as an old grayscale print (`gray`), turned 30 degrees in yaw by the renderer's own head
rotation (`turned`: not a real photo; the landmark model reads it as ~19 degrees), or turned 12
degrees in the picture plane (`rolled`). Real photos turned 18-21 degrees: `tests/test_images/`
`obama2.jpg` and `biden.jpg` in the face_recognition 1.3.0 sdist (`pip download --no-deps
--no-binary :all: face_recognition==1.3.0`, then untar it; not a dependency of ours). Several
variants, comma-separated, go to one sub-folder each. Takes `dataset.held_out_example(voice)` (a
held-out voice, two held-out sentences, a pause), renders its motion, and writes preview.mp4 (with
the voice), strip.png (16 frames), mouth.png (the mouth of the same frames, enlarged) and
judge.json (the landmark model on the output frames: lip sync vs loudness, lip gap in speech and in
silence, identity SSIM, sharpness, render ms per frame).
"""
import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from avatar.video import Mp4Writer
from models.training.metrics import audio_envelope
from models.portrait import topology as topo
from models.portrait.face_mesh import FaceMesher, read_photo
from models.portrait.motion import CHANNELS, INDEX
from models.portrait.render import PortraitRenderer
from models.training.portrait.dataset import held_out_example
from models.training.portrait.judge import Judge, lip_gap
from models.training.portrait.targets import FPS


def sample_photo(variant: str) -> np.ndarray:
    from skimage import data
    photo = data.astronaut()
    if variant == "gray":   # an old print: gray, faded, grainy
        gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
        noise = np.random.default_rng(0).normal(0, 6, gray.shape)
        return np.clip(60 + 0.65 * gray + noise, 0, 255).astype(np.uint8)
    if variant == "rolled":
        rot = cv2.getRotationMatrix2D((256, 256), 12, 1.0)
        return cv2.warpAffine(photo, rot, (512, 512), borderMode=cv2.BORDER_REFLECT)
    if variant == "turned":
        turn = np.zeros(len(CHANNELS))
        turn[INDEX["head_yaw"]] = 30
        return PortraitRenderer(photo, FaceMesher().fit(photo), paste=True).render(turn)
    return photo


def preview(photo, name: str, voice_index: int, size: int, out: Path, mesher) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    example = held_out_example(voice_index)
    audio, motion, voice = example.audio, example.motion, example.voice
    renderer = PortraitRenderer(photo, mesher.fit(photo), size=size)
    frames, started = [], time.process_time()
    for m in motion:
        frames.append(renderer.render(m))
    cpu_ms = (time.process_time() - started) / len(frames) * 1e3
    writer = Mp4Writer(out / "preview.mp4", FPS, (size, size))
    for frame in frames:
        writer.write(frame)
    writer.close(audio)
    picks = np.linspace(0, len(frames) - 1, 16).astype(int)
    small = [cv2.resize(frames[i], (256, 256), interpolation=cv2.INTER_AREA) for i in picks]
    strip = np.concatenate([np.concatenate(small[:8], 1), np.concatenate(small[8:], 1)], 0)
    cv2.imwrite(str(out / "strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    lips = renderer.basis.rest[list(topo.LIPS_OUTER_UPPER + topo.LIPS_OUTER_LOWER), :2]
    fh = renderer.basis.height
    (x0, y0), (x1, y1) = (lips.min(0) - 0.12 * fh).astype(int), (lips.max(0) + 0.12 * fh).astype(int)
    mouths = [cv2.resize(frames[i][max(y0, 0):y1, max(x0, 0):x1], None, fx=2, fy=2,
                         interpolation=cv2.INTER_CUBIC) for i in picks]
    mouth = np.concatenate([np.concatenate(mouths[:8], 1), np.concatenate(mouths[8:], 1)], 0)
    cv2.imwrite(str(out / "mouth.png"), cv2.cvtColor(mouth, cv2.COLOR_RGB2BGR))
    report = Judge(mesher).evaluate(frames, renderer.reference, audio, FPS)
    gaps = report.pop("lip_gap")
    report["lip_sync"].pop("by_lag")
    loud = audio_envelope(audio, FPS)[:len(gaps)]
    report.update({
        "voice": voice, "photo": name,
        "lip_gap_p90_speech": float(np.nanpercentile(gaps[loud > 0.3], 90)),
        "lip_gap_median_silence": float(np.nanmedian(gaps[loud < 0.02])),
        # what the landmark model reads on this face with the lips shut (the all-zero motion)
        "lip_gap_shut": lip_gap(mesher.fit(renderer.render(np.zeros(motion.shape[1]))).points),
        "render_cpu_ms_per_frame": round(cpu_ms, 2), "strip_frames": picks.tolist(),
    })
    (out / "judge.json").write_text(json.dumps(report, indent=1))
    return report


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--image")
    p.add_argument("--variant", default="color",
                   help="comma-separated: color, gray, turned, rolled (without --image)")
    p.add_argument("--voice", type=int, default=0)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--out", default="runs/portrait-preview")
    p.add_argument("--json", help="also write every photo's judge figures to this file")
    args = p.parse_args()
    mesher = FaceMesher()
    if args.image:
        photos = {Path(args.image).stem: (read_photo(args.image), args.image)}
    else:
        names = args.variant.split(",")
        unknown = set(names) - {"color", "gray", "turned", "rolled"}
        if unknown:
            p.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
        photos = {v: (sample_photo(v), f"astronaut ({v})") for v in names}
    reports = {}
    for key, (photo, name) in photos.items():
        out = Path(args.out) / key if len(photos) > 1 else Path(args.out)
        reports[key] = preview(photo, name, args.voice, args.size, out, mesher)
        print(json.dumps(reports[key]))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
