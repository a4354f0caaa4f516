"""Robustness of the live server, measured from outside: a real `avatar serve --profile PROFILE`
subprocess and real aiortc callers (streaming.contrib.pyclient) over loopback.

    python benchmarks/robustness.py pause [--pauses 0.3 1 3]       # SIGSTOP the server mid-call
    python benchmarks/robustness.py churn [--calls 100]            # set-ups (to the first frame) and tear-downs, every hang-up style
    python benchmarks/robustness.py soak [--minutes 30] [--callers 2]
    common: [--profile NAME] (default: the default profile; `tiny` for a checkout older than portrait)
            [--server-tree DIR] (run the server from another checkout, e.g. an older commit's worktree)
            [--json out.json] [--key NAME] (store the result under NAME in out.json, keeping its other
            keys, e.g. "before" and "after"; an earlier NAME is kept as NAME_previous)
            [--verbose] (the server runs with -v: its log has a line per late window, with its cause)

Each prints its figures with the machine's load (`uptime`): figures taken on a loaded machine say
more about the machine than about the server, and the output says so. The soak also prints per
caller the share of windows made with fewer steps, the frames handed to the track late by cause
(streaming/lateness.py: where the repeated frames came from), and the CPU budget of a call (CPU
seconds per media second: server, generation, the rest of the server, the harness's caller), which
the load hardly changes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path

import numpy as np

from live_server import DEFAULT_PROFILE, ROOT, Probe, Server, load, open_probe  # benchmarks/
from soak_figures import av_offset, cpu_budget, engine_counts  # benchmarks/

SILENT_RMS = 0.003  # returned voice quieter than this is silence (the phrase's quiet parts are ~0.01)
CHANGED = 2.0  # a frame whose thumbnail differs from the one before by more than this somewhere (0-255) moved


# ---- (a) pause ---------------------------------------------------------------------------------
def fresh_fraction(video, t0: float, t1: float) -> float | None:
    frames = [(a, thumb) for a, _, thumb in video if t0 <= a < t1]
    if len(frames) < 2:
        return None
    changed = [np.abs(b[1] - a[1]).max() > CHANGED for a, b in zip(frames, frames[1:])]
    return round(float(np.mean(changed)), 3)


def voiced_fraction(audio, t0: float, t1: float) -> float | None:
    levels = [rms for a, _, rms in audio if t0 <= a < t1]
    return round(float(np.mean([r > SILENT_RMS for r in levels])), 3) if levels else None


def server_fresh(rec, t0: float, t1: float) -> list[tuple[float, float]]:
    """(arrival, share of frames sent fresh rather than repeated) per stats interval ending in [t0, t1)."""
    stats = [(a, m) for a, m in rec.messages if m.get("type") == "stats"]
    out = []
    for (_, m0), (a, m1) in zip(stats, stats[1:]):
        sent = m1["frames_sent"] - m0["frames_sent"]
        if t0 <= a < t1 and sent > 0:
            out.append((a, 1 - (m1["frames_repeated"] - m0["frames_repeated"]) / sent))
    return out


def share(values) -> float | None:
    return round(float(np.mean(values)), 3) if len(values) else None


def back_after(series, t_end: float, ok, span: float = 0.5, limit: float = 15.0) -> float | None:
    """Seconds from t_end to the first instant from which `ok(t, t + span)` holds."""
    t = t_end
    while t < t_end + limit:
        if ok(t, t + span):
            return round(t - t_end, 2)
        t += 0.1
    return None


async def run_pause(server: Server, pauses: list[float], observe_s: float = 10.0) -> dict:
    client = await open_probe(server)
    rec = client.received
    try:
        await asyncio.sleep(12.0)  # settle
        t = time.monotonic()
        baseline = {"fresh_server": share([f for _, f in server_fresh(rec, t - 8, t)]),
                    "moving_client": fresh_fraction(rec.video, t - 8, t), "voiced": voiced_fraction(rec.audio, t - 8, t)}
        results = []
        for pause in pauses:
            os.kill(server.proc.pid, signal.SIGSTOP)
            await asyncio.sleep(pause)
            os.kill(server.proc.pid, signal.SIGCONT)
            t_end = time.monotonic()
            await asyncio.sleep(observe_s)
            fresh = server_fresh(rec, t_end, t_end + observe_s)[1:]  # the first interval holds the pause
            face = back_after(rec.video, t_end, lambda a, b: (fresh_fraction(rec.video, a, b) or 0) >= 0.5)
            voice = back_after(rec.audio, t_end, lambda a, b: (voiced_fraction(rec.audio, a, b) or 0) >= 0.5)
            degraded = [m for a, m in rec.messages if m.get("type") == "degraded" and a >= t_end - pause]
            results.append({
                "pause_s": pause, "face_back_s": face, "voice_back_s": voice,
                "face_back_server_within_s": next((round(a - t_end, 2) for a, f in fresh if f >= 0.5), None),
                "fresh_server_after": share([f for a, f in fresh if a >= t_end + 3]),
                "moving_client_after": fresh_fraction(rec.video, t_end + 2, t_end + observe_s),
                "voiced_after": voiced_fraction(rec.audio, t_end + 2, t_end + observe_s),
                "video_fps_after": round(sum(t_end + 2 <= a < t_end + observe_s for a, _, _ in rec.video)
                                         / (observe_s - 2), 2),
                "jumps": [(m.get("behind_s"), m.get("skipped_frames")) for m in degraded],
                "call_alive": client.ws.close_code is None, "load": load(),
            })
            print(json.dumps(results[-1]), flush=True)
        return {"baseline": baseline, "pauses": results}
    finally:
        await client.close()


# ---- (b) churn ---------------------------------------------------------------------------------
STYLES = ("bye", "close", "vanish", "peer-only")


async def hang_up(client: Probe, style: str) -> None:
    if style == "bye":
        await client.send({"type": "bye"})
        await client.close()
    elif style == "close":
        await client.close()
    elif style == "vanish":  # the socket drops without a goodbye; the peer connection is left open
        client.ws.transport.abort()
    elif style == "peer-only":  # the media ends; the socket stays until the server closes it
        await client.pc.close()


async def run_churn(server: Server, calls: int) -> dict:
    rows = []
    for i in range(calls):
        style = STYLES[i % len(STYLES)]
        started = time.monotonic()
        client = await open_probe(server)
        try:
            while len(client.received.video) < 10 and time.monotonic() - started < 30:
                await asyncio.sleep(0.05)
            frames = len(client.received.video)
            first_frame_s = client.received.video[0][0] - started if frames else None
            await hang_up(client, style)
            hung_up = time.monotonic()
            while server.sessions() and time.monotonic() - hung_up < 20:
                await asyncio.sleep(0.05)
            freed_s = time.monotonic() - hung_up
        finally:
            await client.close()
        await asyncio.sleep(0.3)
        memory_mb, threads = server.memory()
        rows.append({"call": i + 1, "style": style, "frames": frames,
                     "first_frame_s": None if first_frame_s is None else round(first_frame_s, 2),
                     "freed_s": round(freed_s, 2),
                     "memory_mb": round(memory_mb, 1), "threads": threads})
        print(json.dumps(rows[-1]), flush=True)
    ref = rows[min(9, len(rows) - 1)]
    last = rows[-1]
    firsts = [r["first_frame_s"] for r in rows if r["first_frame_s"] is not None]
    return {"calls": rows, "summary": {
        "memory_mb_at_10": ref["memory_mb"], "memory_mb_at_end": last["memory_mb"],
        "memory_growth_after_10": round(last["memory_mb"] / ref["memory_mb"] - 1, 4),
        "threads_at_10": ref["threads"], "threads_at_end": last["threads"],
        "threads_max": max(r["threads"] for r in rows),
        "freed_s_max": max(r["freed_s"] for r in rows), "calls_without_frames": sum(r["frames"] < 10 for r in rows),
        "first_frame_s_first_call": rows[0]["first_frame_s"],
        "first_frame_s_median": round(float(np.median(firsts)), 2) if firsts else None,
        "load": load()}}


# ---- (e) soak ----------------------------------------------------------------------------------
async def run_soak(server: Server, minutes: float, callers: int, warmup_s: float = 15.0) -> dict:
    clients = [await open_probe(server) for _ in range(callers)]
    start = time.monotonic()
    await asyncio.sleep(warmup_s)
    # (memory, threads) every 10 s after the warm-up, read on a thread: walking /proc must not hold up
    # this loop, which sends the callers' audio (late audio is a late window on the server)
    memory = [await asyncio.to_thread(server.memory)]
    cpu_then = server.cpu_s(), time.process_time()
    try:
        while time.monotonic() - start < warmup_s + minutes * 60 and all(c.ws.close_code is None for c in clients):
            await asyncio.sleep(10)
            memory.append(await asyncio.to_thread(server.memory))
    finally:
        end = time.monotonic()
        cpu_used = server.cpu_s() - cpu_then[0], time.process_time() - cpu_then[1]
        alive = [c.ws.close_code is None for c in clients]
        for c in clients:
            await c.close()
    t0 = start + warmup_s
    results, counts = [], []
    for c, up in zip(clients, alive):
        counts.append(engine_counts(c, t0, end))
        sent, repeated, windows = counts[-1]["sent"], counts[-1]["repeated"], counts[-1]["windows"]
        frames = sum(t0 <= a < end for a, _, _ in c.received.video)
        results.append({
            "fps": round(frames / (end - t0), 2),
            "repeated_pct": round(100 * repeated / sent, 2) if sent else None,
            "fewer_steps_pct": round(100 * counts[-1]["fewer_steps"] / windows, 1) if windows else None,
            # of the windows with speech (idle ones have their own one-step path): made at full steps
            "full_steps_speech_windows": windows - counts[-1]["idle_windows"] - counts[-1]["fewer_steps"],
            "speech_windows": windows - counts[-1]["idle_windows"],
            "output_delay_s": counts[-1]["output_delay_s"],
            "av_offset_first_min_s": av_offset(c, t0, t0 + 60),
            "av_offset_last_min_s": av_offset(c, end - 60, end),
            "late_frames": counts[-1]["late_frames"], "late_causes": counts[-1]["late_causes"],
            "input_dropped": counts[-1]["input_dropped"],
            "catch_ups": len([m for _, m in c.received.messages if m.get("type") == "degraded"
                              and m.get("reason") == "catch-up"]),
            "call_alive": up})
    return {"minutes": round((end - t0) / 60, 2), "callers": results,
            **cpu_budget(*cpu_used, counts, end - t0),
            "memory_mb_start_end": [round(memory[0][0], 1), round(memory[-1][0], 1)],
            "threads_start_end": [memory[0][1], memory[-1][1]], "load": load()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harness", choices=("pause", "churn", "soak"))
    parser.add_argument("--pauses", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--callers", type=int, default=2)
    parser.add_argument("--server-tree", type=Path, default=ROOT)
    parser.add_argument("--profile", default=DEFAULT_PROFILE)
    parser.add_argument("--json")
    parser.add_argument("--key", help="store the result under this key of the --json file, keeping the others")
    parser.add_argument("--verbose", action="store_true",
                        help="run the server with -v (its log, named in the output, has a line per late window)")
    args = parser.parse_args()
    server = await Server(args.server_tree.resolve(), profile=args.profile, verbose=args.verbose).ready()
    print(f"server: {' '.join(server.cmd)} (tree {args.server_tree}, log {server.log.name}), load {load()}",
          flush=True)
    try:
        if args.harness == "pause":
            result = await run_pause(server, args.pauses)
        elif args.harness == "churn":
            result = await run_churn(server, args.calls)
        else:
            result = await run_soak(server, args.minutes, args.callers)
    finally:
        server.stop()
    result = {"harness": args.harness, "server_tree": str(args.server_tree), **result}
    summary = {k: v for k, v in result.items() if k != "calls"}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(stored(Path(args.json), args.key, result), indent=1))


def stored(path: Path, key: str | None, result: dict) -> dict:
    """What the --json file holds after this run: the result, or (with a key) its other keys and the
    result under the key, an earlier result there kept as KEY_previous."""
    if key is None:
        return result
    kept = json.loads(path.read_text()) if path.exists() else {}
    if key in kept:
        kept[f"{key}_previous"] = kept.pop(key)
    return kept | {key: result}


if __name__ == "__main__":
    asyncio.run(main())
