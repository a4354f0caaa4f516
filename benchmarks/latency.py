"""Mouth-to-pixel latency of the live server, term by term.

A Python caller (a real aiortc peer, in this process) speaks a phrase several times; for each speech
onset it measures, on one clock, the time from the onset leaving the caller to the arrival at the
caller of the first frame generated for it, and splits that into the budget's terms.

The frame's arrival is when its last RTP packet (the one with the marker bit) reaches the caller, as
a browser's receiver sees it. aiortc's video jitter buffer (aiortc/jitterbuffer.py, `_remove_frame`)
hands a frame on only when a packet with the next frame's timestamp arrives: one frame period (40 ms)
later. That hold is kept as its own term (`receiver_hold_s`, off the total), not hidden:

    python benchmarks/latency.py [--profile portrait] [--phrases 5] [--allowance 0.2] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from avatar.audio import load_audio_file  # noqa: E402
from avatar.profiles import DEFAULT_PROFILE  # noqa: E402
from streaming.config import ServerConfig  # noqa: E402
from streaming.contrib.pyclient import CallClient  # noqa: E402
from streaming.server import AvatarServer  # noqa: E402

RATE = 16000
GAP_S = 3.0
ONSET_LEVEL = 0.02
TERMS = [
    ("input_s", "caller -> server timeline (network + aiortc receive buffer)"),
    ("window_fill_s", "rest of the window + audio look-ahead arriving"),
    ("queue_s", "waiting for the worker (previous window, event loop; the VAD is not waited for)"),
    ("compute_s", "window compute (DiT steps + decode)"),
    ("compute_cpu_s", "the same in CPU time, where the session ran (what an idle machine's wall time would be)"),
    ("pacing_slack_s", "held until due (the output delay's spare)"),
    ("send_s", "encode + network, to the frame's last RTP packet (marker bit) at the caller"),
    ("total_s", "mouth-to-pixel (at the frame's last packet, as a browser receives it)"),
    ("receiver_hold_s", "aiortc's receiver holding the frame until the next one starts (not in total_s)"),
    ("total_at_yield_s", "mouth-to-pixel where aiortc yields the frame (the old figure: total + hold)"),
    ("vad_onset_s", "VAD speechstart reaching the caller (off the critical path)"),
]


def phrase() -> np.ndarray:
    return load_audio_file(ROOT / "tests" / "data" / "speech_hello.wav")


def caller_audio(count: int) -> tuple[np.ndarray, list[float]]:
    speech = phrase()
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    pieces, onsets, t = [gap[: RATE]], [], 1.0
    first = int(np.argmax(np.abs(speech) > ONSET_LEVEL))
    for _ in range(count):
        onsets.append(t + first / RATE)
        pieces += [speech, gap]
        t += (len(speech) + len(gap)) / RATE
    return np.concatenate(pieces), onsets


def rtp_time(receiver, pts: int) -> int:
    """The RTP timestamp of a frame aiortc decoded (its pts counts from the first frame's timestamp)."""
    return (pts + receiver._RTCRtpReceiver__timestamp_mapper._origin) % (1 << 32)


def recording_arrivals(receiver, arrivals: dict[int, float], marker_only: bool) -> None:
    """Record into `arrivals` when each frame's (last, if marker_only) RTP packet reaches `receiver`."""
    handle = receiver._handle_rtp_packet

    async def record(packet, arrival_time_ms):
        if packet.marker or not marker_only:
            arrivals.setdefault(packet.timestamp, time.monotonic())
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = record


def record_frame_arrivals(client) -> tuple[object, dict[int, float]]:
    """The caller's video receiver, and RTP timestamp -> when the frame's last packet (marker bit) came."""
    (receiver,) = [t.receiver for t in client.pc.getTransceivers() if t.kind == "video"]
    arrivals = {}
    recording_arrivals(receiver, arrivals, marker_only=True)
    return receiver, arrivals


def record_input_hold(call) -> list[float]:
    """Per input audio frame: seconds from its RTP packet reaching the server to its decoded frame
    reaching our intake (aiortc's audio jitter buffer holds `prefetch` packets, at least one)."""
    (receiver,) = [t.receiver for t in call.pc.getTransceivers() if t.kind == "audio"]
    arrivals, holds, push = {}, [], call.intake.push
    recording_arrivals(receiver, arrivals, marker_only=False)

    def pushed(frame, now=None):
        came = None if frame.pts is None else arrivals.pop(rtp_time(receiver, frame.pts), None)
        if came is not None:
            holds.append(time.monotonic() - came)
        return push(frame, now)

    call.intake.push = pushed
    return holds


def measure(call, client, timeline: np.ndarray, onsets: list[float], last_packet) -> list[dict]:
    clock, session = call.clock, call.session
    fpw = session.frames_per_window
    windows = {w["first_frame"]: w for w in call.worker.stats.recent}
    video = client.received.video
    pts0 = video[0][1]
    offsets = [i - (p - pts0) // 3600 for _, p, i in video if i is not None]
    first_index = max(set(offsets), key=offsets.count)
    arrival = {first_index + (p - pts0) // 3600: a for a, p, _ in video}
    receiver, packets = last_packet
    packet_arrival = {first_index + (p - pts0) // 3600: packets.get(rtp_time(receiver, p)) for _, p, _ in video}
    vad = [(a, m) for a, m in client.received.messages if m.get("type") == "vad" and m["event"] == "speechstart"]
    input_offset = call.intake.input_offset
    rows = []
    for onset in onsets:
        near = input_offset + int(onset * RATE)
        loud = np.nonzero(np.abs(timeline[max(near - 1600, 0):near + 4800]) > ONSET_LEVEL)[0]
        if not len(loud):
            continue
        sample = max(near - 1600, 0) + int(loud[0])
        frame = sample // 640
        window = windows.get(frame // fpw * fpw)
        if window is None or frame not in arrival:
            continue
        sent = client.source.started_at + onset
        heard = clock.t0 + sample / RATE
        audio_complete = clock.t0 + (frame // fpw + 1) * fpw * 640 / RATE + session.lookahead_s
        vad_at = next((a for a, m in vad if m["t"] >= sample / RATE - 0.3), None)
        # A window that finished after its first frames' deadline (due time and the track's grace) had
        # those frames dropped (the track repeated the last one): the first one shown comes later.
        shown = frame
        while clock.frame_deadline(shown) < window["done"] and shown + 1 in arrival:
            shown += 1
        at = packet_arrival[shown] or arrival[shown]
        rows.append({
            "input_s": heard - sent,
            "window_fill_s": audio_complete - heard,
            "queue_s": window["started"] - audio_complete,
            "compute_s": window["done"] - window["started"],
            "compute_cpu_s": window["cpu_s"],
            "pacing_slack_s": clock.frame_due(frame) - window["done"],
            "send_s": at - clock.frame_due(shown),
            "total_s": at - sent,
            "receiver_hold_s": arrival[shown] - at,
            "total_at_yield_s": arrival[shown] - sent,
            "frames_late": shown - frame,
            "vad_onset_s": None if vad_at is None else vad_at - heard,
            "steps": window["steps"],
        })
    return rows


async def run(args) -> dict:
    from avatar.profiles import load_profile

    profile = load_profile(args.profile, args.device)
    config = ServerConfig(port=0, stamp_frames=True, compute_allowance_s=args.allowance)
    server = await AvatarServer(config, profile).start()
    audio, onsets = caller_audio(args.phrases)
    client = await CallClient.open(f"ws://127.0.0.1:{server.port}/ws", audio, RATE)
    last_packet = record_frame_arrivals(client)
    (call,) = [c for c in server.calls.values() if c is not None]
    input_holds = record_input_hold(call)
    timeline = []
    into_engine = call.worker.push_audio
    call.worker.push_audio = lambda pcm, speech=None: (timeline.append(pcm), into_engine(pcm, speech))
    try:
        await asyncio.sleep(len(audio) / RATE + 1.0)
        rows = measure(call, client, np.concatenate(timeline), onsets, last_packet)
        stats = call.stats()
    finally:
        await client.close()
        await server.stop()
    return {"profile": profile.name, "random_weights": profile.random_weights,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "output_delay_s": round(call.clock.delay_s, 3), "window_s": stats["latency"]["window_s"],
            "lookahead_s": stats["latency"]["lookahead_s"],
            "input_hold_s": {"mean": float(np.mean(input_holds)), "frames": len(input_holds)} if input_holds else None,
            "arrival": "a frame arrives with its last RTP packet (marker bit), as a browser receives it; "
                       "total_at_yield_s is when aiortc's receiver yields it (receiver_hold_s later)",
            "onsets": rows, "server_stats": stats}


def report(result: dict) -> None:
    rows = result["onsets"]
    print(f"profile {result['profile']} (random weights: {result['random_weights']}), {result['machine']}, "
          f"load average {result['load_average']}")
    allowance = result["server_stats"]["latency"]["compute_allowance_s"]
    print(f"output delay {result['output_delay_s']} s = window {result['window_s']} s + look-ahead "
          f"{result['lookahead_s']} s + compute allowance {allowance} s; {len(rows)} speech onsets measured")
    print(f"{'term':<16}{'mean ms':>9}{'max ms':>9}  what")
    for key, what in TERMS:
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            print(f"{key:<16}{1000 * np.mean(values):>9.0f}{1000 * np.max(values):>9.0f}  {what}")
    late = [r["frames_late"] for r in rows if r["frames_late"]]
    if late:
        print(f"{len(late)} onsets had their first frames late (dropped, last frame repeated): "
              f"{late} frames; total_s counts to the first one shown")
    if result["input_hold_s"]:
        print(f"input audio held on the server (RTP packet in -> our intake): mean "
              f"{1000 * result['input_hold_s']['mean']:.0f} ms over {result['input_hold_s']['frames']} frames")
    s = result["server_stats"]
    print(f"frames sent {s['frames_sent']}, repeated {s['frames_repeated']}, dropped {s['frames_dropped']}; "
          f"windows {s['engine']['windows']}, fewer steps {s['engine']['fewer_steps']}, "
          f"late {s['engine']['late_windows']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=DEFAULT_PROFILE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--phrases", type=int, default=5)
    parser.add_argument("--allowance", type=float, default=None,
                        help="compute allowance in the output delay (s); default: measured at start-up")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(args))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    return 0 if result["onsets"] else 1


if __name__ == "__main__":
    sys.exit(main())
