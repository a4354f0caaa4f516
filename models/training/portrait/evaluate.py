"""Held-out lip-sync figures of a portrait weights file (`python -m models.training portrait-eval`).

Each held-out voice (`dataset.held_out_example`: voices and sentences training never heard) is
turned into motion by `rollout.generate` (the product's window loop, student steps, context from
the previous window). Figures, beside those of the speech targets themselves:
- from the motion: the lip opening the motion asks for (`motion_gap`, face heights) against the
  voice's loudness (`lagged_correlation`, lag > 0 = late), its 90th percentile in speech and its
  median in silence;
- through the renderer (`--render`): the same clips rendered on scikit-image's astronaut photo by
  PortraitRenderer and measured by the landmark judge on the frames (`Judge.evaluate`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.checkpoints import load_exact, read_tensors, split_prefix
from models.portrait.motion import INDEX
from models.profile_config import ProfileConfig
from models.training.dit_stages import build_dit
from models.training.metrics import audio_envelope
from models.training.portrait.dataset import held_out_example
from models.training.portrait.judge import lagged_correlation
from models.training.portrait.rollout import generate

LOUD, QUIET = 0.3, 0.02   # envelope levels of speech and of silence (as benchmarks/portrait_preview.py)


def load_weights(path: Path, cfg: ProfileConfig) -> tuple:
    """(dit, motion_mean, motion_std) from a portrait weights file, loaded as the engine loads it."""
    state = read_tensors(path, "portrait motion generator")
    dit = build_dit(cfg)
    load_exact(dit, {k: v.float() for k, v in split_prefix(state, "dit").items()}, str(path))
    codec = split_prefix(state, "codec")
    return dit.eval(), codec["motion_mean"].float(), codec["motion_std"].float()


def motion_gap(motion: np.ndarray) -> np.ndarray:
    """The inner-lip opening a motion asks for, in face heights (models.portrait.motion's units:
    jaw_open 0.10, lip_gap 0.04, upper_lip_raise and lower_lip_drop 0.02 at 1.0)."""
    m = lambda name: motion[:, INDEX[name]]  # noqa: E731
    gap = 0.10 * m("jaw_open") + 0.04 * m("lip_gap") + 0.02 * (m("upper_lip_raise") + m("lower_lip_drop"))
    return np.clip(gap, 0, None)


def gap_figures(gap: np.ndarray, audio: np.ndarray) -> dict:
    loud = audio_envelope(audio)[:len(gap)]
    gap = gap[:len(loud)]
    sync = lagged_correlation(gap, loud, 5)
    return {"correlation": round(sync["correlation"], 3), "lag_frames": sync["lag_frames"],
            "correlation_lag0": round(sync["by_lag"].get(0, 0.0), 3),
            "gap_p90_speech": round(float(np.percentile(gap[loud > LOUD], 90)), 4),
            "gap_median_silence": round(float(np.median(gap[loud < QUIET])), 4)}


def render_figures(motion: np.ndarray, audio: np.ndarray, photo: np.ndarray, mesher) -> dict:
    from models.portrait.render import PortraitRenderer
    from models.training.portrait.judge import Judge
    renderer = PortraitRenderer(photo, mesher.fit(photo), size=512)
    frames = [renderer.render(m) for m in motion]
    report = Judge(mesher).evaluate(frames, renderer.reference, audio)
    gaps = report["lip_gap"]
    loud = audio_envelope(audio)[:len(gaps)]
    sync = report["lip_sync"]
    return {"correlation": round(sync["correlation"], 3), "lag_frames": sync["lag_frames"],
            "correlation_lag0": round(sync["by_lag"].get(0, 0.0), 3),
            "gap_p90_speech": round(float(np.nanpercentile(gaps[loud > LOUD], 90)), 4),
            "gap_median_silence": round(float(np.nanmedian(gaps[loud < QUIET])), 4),
            "frames_without_face": report["frames_without_face"]}


def evaluate(path: Path, cfg: ProfileConfig, voices: int = 4, render: bool = False) -> dict:
    dit, mean, std = load_weights(path, cfg)
    photo = mesher = None
    if render:
        from skimage import data
        from models.portrait.face_mesh import FaceMesher
        photo, mesher = data.astronaut(), FaceMesher()
    rows = []
    for index in range(voices):
        example = held_out_example(index)
        motion = generate(dit, cfg, mean, std, example.audio)
        row = {"voice": example.voice, "seconds": round(len(example.audio) / 16000, 2),
               "generated": gap_figures(motion_gap(motion), example.audio),
               "targets": gap_figures(motion_gap(example.motion), example.audio)}
        if render:
            row["rendered"] = render_figures(motion, example.audio, photo, mesher)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {kind: {key: round(float(np.mean([r[kind][key] for r in rows])), 4)
                      for key in rows[0][kind] if key != "lag_frames"} for kind in rows[0] if isinstance(rows[0][kind], dict)}
    return {"weights": str(path), "profile": cfg.name, "steps": cfg.sampler.steps,
            "guidance": str(cfg.sampler.guidance), "voices": rows, "mean": summary}


def main(out: Path, cfg: ProfileConfig, args) -> None:
    path = args.target or out / "portrait.safetensors"
    report = evaluate(path, cfg, args.voices, args.render)
    print(json.dumps(report["mean"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
