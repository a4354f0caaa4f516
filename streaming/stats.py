"""The call's periodic `{"type": "stats"}` message, assembled from the call's parts."""

from __future__ import annotations

import time

from models.audio_features import SAMPLE_RATE

ENGINE_COUNTERS = ("windows", "idle_windows", "fewer_steps", "catch_ups", "skipped_frames", "late_windows",
                   "cpu_s", "late_frames", "late_causes")


class StatsReporter:
    """Keeps what a rate needs between two reports (the frames sent at the last one), and whether the
    stream is in a stretch of late frames."""

    def __init__(self):
        self._since = time.monotonic()
        self._sent_then = 0
        self._counted = (0, 0)  # frames sent and repeated at the last late_frames() check
        self._late = False

    def late_frames(self, stats: dict, limit: float) -> dict | None:
        """A "degraded" message when more than `limit` of the frames sent since the last stats were
        repeats (their own were late); once per stretch, again after an interval under it."""
        sent = stats["frames_sent"] - self._counted[0]
        repeated = stats["frames_repeated"] - self._counted[1]
        self._counted = (stats["frames_sent"], stats["frames_repeated"])
        late, was_late = sent > 0 and repeated / sent > limit, self._late
        self._late = late
        if not late or was_late:
            return None
        return {"type": "degraded", "reason": "late_frames", "repeated_share": round(repeated / sent, 3),
                "behind_s": round(max(0.0, -(stats["latency"]["slack_min_s"] or 0.0)), 3)}

    def message(self, call) -> dict:
        """The stats message for a started `streaming.call.Call` (network RTT added by the caller)."""
        with call.worker.lock:
            work = call.worker.stats.snapshot()
        now = time.monotonic()
        sent = call.video.sent
        fps = (sent - self._sent_then) / max(now - self._since, 1e-6)
        self._since, self._sent_then = now, sent
        offset = call.intake.input_offset
        return {
            "type": "stats",
            "fps": round(fps, 2),
            "frames_sent": sent,
            "frames_repeated": call.video.repeated,
            "frames_dropped": call.frames.overflowed,  # a late frame is counted once, as its slot's repeat
            "queued_frames": len(call.frames),
            "speaking": call.detector.speaking,
            "input_offset_s": None if offset is None else round(offset / SAMPLE_RATE, 4),
            "input_gaps": call.intake.gaps,
            "input_dropped": call.intake.dropped,
            "latency": {  # the budget, term by term (seconds)
                "window_s": round(call.window_s, 3),
                "lookahead_s": round(call.session.lookahead_s, 3),
                "compute_allowance_s": round(call.compute_allowance_s, 3),
                "output_delay_s": round(call.clock.delay_s, 3),
                "compute_last_s": work["compute_last_s"],
                "compute_p95_s": work["compute_p95_s"],
                "slack_min_s": work["slack_min_s"],
                "vad_onset_s": None if call.last_vad_lag is None else round(call.last_vad_lag, 3),
            },
            "engine": {k: work[k] for k in ENGINE_COUNTERS},
        }


async def network_rtt(pc) -> float | None:
    """Round-trip time the caller reports for our video (RTCP receiver reports), if any yet."""
    try:
        report = await pc.getStats()
    except Exception:  # stats are best effort; a closing connection has none
        return None
    rtts = [s.roundTripTime for s in report.values()
            if type(s).__name__ == "RTCRemoteInboundRtpStreamStats" and s.kind == "video"
            and s.roundTripTime is not None]
    return round(rtts[0], 4) if rtts else None
