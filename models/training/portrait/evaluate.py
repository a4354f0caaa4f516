"""Held-out lip-sync figures of a portrait weights file (`python -m models.training portrait-eval`).

Each held-out voice (`dataset.held_out_example`: voices and sentences training never heard) is
turned into motion by `rollout.generate` (the product's window loop, student steps, context from
the previous window). Figures, beside those of the speech targets themselves:
- from the motion: the lip opening the motion asks for (`motion_gap`, face heights) against the
  voice's loudness (`lagged_correlation`, lag > 0 = late), its 90th percentile in speech and its
  median in silence;
- through the renderer (`--render`, the canonical held-out lip-sync measure): the same clips rendered
  on scikit-image's astronaut photo by the product's decode (`MotionCodec.decode_images`: the motion
  clamped, its jaw and head turns shown through the profile's `codec.jaw_curve` and
  `codec.head_turn_scale`, and with its `codec.silence_close_ms` the mouth eased shut where the
  session's energy gate marks no speech) and measured by the landmark judge on the frames
  (`Judge.evaluate`), with the judge's reading of the mouth rendered shut (`gap_shut`: what
  "closed in silence" reads as on this photo);
- `--sweep`: the motion-level r of each sampling plan (steps, guidance scale and phases, the
  starting noise's scale) with its DiT forwards per window.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.checkpoints import load_exact, read_tensors, split_prefix
from models.portrait.motion import INDEX
from models.profile_config import ProfileConfig
from models.sampler import Branch, GuidancePhase, GuidancePlan, GuidanceTerm, flow_sigmas
from models.training.dit_stages import build_dit
from models.training.metrics import audio_envelope
from models.training.portrait.dataset import held_out_example
from models.training.portrait.judge import lagged_correlation
from models.training.portrait.rollout import generate, speech_frames

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


def render_figures(motion: np.ndarray, audio: np.ndarray, photo: np.ndarray, mesher,
                   cfg: ProfileConfig) -> dict:
    import torch
    from models.portrait.codec import MotionCodec
    from models.portrait.render import PortraitRenderer
    from models.portrait.silence import LEAD_FRAMES
    from models.training.portrait.judge import Judge, lip_gap
    renderer = PortraitRenderer(photo, mesher.fit(photo), size=512)
    shut = lip_gap(mesher.fit(renderer.render(np.zeros(motion.shape[1], np.float32))).points)
    # the profile's decode at 512x512; a fresh codec's mean is 0 and std 1: its latents are the motion
    codec = MotionCodec.from_config(replace(cfg, resolution=(512, 512)))
    speech = speech_frames(audio, 0, len(motion) + LEAD_FRAMES)   # the session's flags without a VAD
    frames, _ = codec.decode_images(codec.encode(torch.from_numpy(motion)[None]), renderer, speech)
    report = Judge(mesher).evaluate(frames, renderer.reference, audio)
    gaps = report["lip_gap"]
    loud = audio_envelope(audio)[:len(gaps)]
    sync = report["lip_sync"]
    return {"correlation": round(sync["correlation"], 3), "lag_frames": sync["lag_frames"],
            "correlation_lag0": round(sync["by_lag"].get(0, 0.0), 3),
            "gap_p90_speech": round(float(np.nanpercentile(gaps[loud > LOUD], 90)), 4),
            "gap_median_silence": round(float(np.nanmedian(gaps[loud < QUIET])), 4),
            "gap_shut": round(shut, 4),   # the judge's reading of the same photo rendered with the mouth shut
            "frames_without_face": report["frames_without_face"]}


def plans() -> dict:
    """Sampling plans to compare: name -> (steps, guidance plan, starting noise's scale)."""
    def audio(scale: float, min_sigma: float = 0.0) -> GuidancePlan:
        guided = GuidancePhase(min_sigma, (GuidanceTerm(Branch.AUDIO, scale),))
        return GuidancePlan((guided, GuidancePhase(0.0)) if min_sigma else (guided,))
    table = {f"2 steps, audio {g} on both": (2, audio(g), 1.0) for g in (1.5, 2.0, 3.0)}
    noise = {f"2 steps, audio 2.0 on both, noise {s}": (2, audio(2.0), s) for s in (0.7, 0.5, 0.3)}
    return {"2 steps, no guidance": (2, GuidancePlan(), 1.0), **table, **noise,
            "2 steps, audio 2.0 on step 1": (2, audio(2.0, 0.8), 1.0),
            "1 step, no guidance": (1, GuidancePlan(), 1.0), "1 step, audio 2.0": (1, audio(2.0), 1.0)}


def forwards(steps: int, plan: GuidancePlan, shift: float) -> int:
    """The DiT forwards of one speech window: per step 1 + the terms guiding at its sigma."""
    return sum(1 + len(plan.terms_at(float(sigma))) for sigma in flow_sigmas(steps, shift)[:-1])


def sweep(path: Path, cfg: ProfileConfig, voices: int) -> dict:
    """Motion-level held-out r of each sampling plan of `plans()`, per voice and mean, and its CPU
    time per frame (the window loop with its mel features; run it with OMP_NUM_THREADS=1)."""
    dit, mean, std = load_weights(path, cfg)
    examples = [held_out_example(index) for index in range(voices)]
    rows = {}
    for name, (steps, plan, noise) in plans().items():
        plan_cfg = replace(cfg, sampler=replace(cfg.sampler, steps=steps, guidance=plan, noise_scale=noise))
        r, cpu, frames = [], 0.0, 0
        for e in examples:
            started = time.process_time()
            motion = generate(dit, plan_cfg, mean, std, e.audio)
            cpu, frames = cpu + time.process_time() - started, frames + len(motion)
            r.append(gap_figures(motion_gap(motion), e.audio)["correlation"])
        rows[name] = {"forwards": forwards(steps, plan, cfg.sampler.shift), "per_voice": r,
                      "mean": round(float(np.mean(r)), 3), "cpu_ms_per_frame": round(1000 * cpu / frames, 2)}
        print(json.dumps({name: rows[name]}), flush=True)
    return {"weights": str(path), "voices": [e.voice for e in examples], "plans": rows}


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
            row["rendered"] = render_figures(motion, example.audio, photo, mesher, cfg)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {kind: {key: round(float(np.mean([r[kind][key] for r in rows])), 4)
                      for key in rows[0][kind] if key != "lag_frames"} for kind in rows[0] if isinstance(rows[0][kind], dict)}
    return {"weights": str(path), "profile": cfg.name, "steps": cfg.sampler.steps,
            "guidance": str(cfg.sampler.guidance), "voices": rows, "mean": summary}


def main(out: Path, cfg: ProfileConfig, args) -> None:
    path = args.target or out / "portrait.safetensors"
    command = "python -m models.training " + " ".join(sys.argv[1:])
    if args.sweep:
        report = {"command": command, **sweep(path, cfg, args.voices)}
    else:
        report = {"command": command, **evaluate(path, cfg, args.voices, args.render)}
        print(json.dumps(report["mean"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
