"""The server's figures in Prometheus' text format (GET /metrics), one registry per server.

A call's parts are noted when it starts (its video track, frame buffer, clock and worker counters,
which outlive the call's own references to them) and read at scrape time and once more when the
call has ended, so the calls' hot paths carry no metrics code. A worker keeps its last 200 windows:
ample for scrapes a minute apart. Each video frame slot is counted once: sent = new + repeated."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

COMPUTE_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
SLACK_BUCKETS = (-2.0, -1.0, -0.5, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
FRAME_KINDS = ("sent", "repeated", "dropped")


@dataclass
class _CallParts:
    video: object  # the paced video track: sent, repeated
    frames: object  # the frame buffer: overflowed
    frame_due: object  # the call's clock: frame index -> due time
    worker_stats: object  # windows, recent (per window: first frame, started, done, idle)
    lock: object  # the worker's lock over worker_stats
    windows_seen: int = 0

    def frame_counts(self) -> dict:
        return {"sent": self.video.sent, "repeated": self.video.repeated, "dropped": self.frames.overflowed}


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, server):
        self._calls: dict[str, _CallParts] = {}
        self._ended = dict.fromkeys(FRAME_KINDS, 0)
        registry = self.registry = CollectorRegistry()
        Gauge("avatar_sessions", "Session slots in use", registry=registry).set_function(lambda: len(server.calls))
        self.refusals = Counter("avatar_refusals", "Connections and messages refused, by reason", ["reason"],
                                registry=registry)
        self.windows = Counter("avatar_windows", "Windows generated, by kind (speech or idle)", ["kind"],
                               registry=registry)
        self.late_windows = Counter("avatar_late_windows", "Windows whose first frame was ready after its due time",
                                    registry=registry)
        self.compute = Histogram("avatar_window_compute_seconds", "Compute time of one window", registry=registry,
                                 buckets=COMPUTE_BUCKETS)
        self.slack = Histogram("avatar_window_slack_seconds", "A window's first frame: due time less ready time "
                               "(negative: late)", registry=registry, buckets=SLACK_BUCKETS)
        registry.register(self)  # collect() below: the frame counters

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def call_started(self, call) -> None:
        self._calls[call.id] = _CallParts(call.video, call.frames, call.clock.frame_due, call.worker.stats,
                                          call.worker.lock)

    def call_ended(self, call) -> None:
        parts = self._calls.pop(call.id, None)
        if parts is not None:
            self._observe_windows(parts)
            for kind, count in parts.frame_counts().items():
                self._ended[kind] += count

    def render(self) -> bytes:
        for parts in list(self._calls.values()):
            self._observe_windows(parts)
        return generate_latest(self.registry)

    def collect(self):
        totals = dict(self._ended)
        for parts in list(self._calls.values()):
            for kind, count in parts.frame_counts().items():
                totals[kind] += count
        family = CounterMetricFamily(
            "avatar_frames", "Video frames: sent (every slot), repeated (a slot that showed the previous frame "
            "again because its own was late), dropped (pushed out of a full buffer, never late)", labels=["kind"])
        for kind in FRAME_KINDS:
            family.add_metric([kind], totals[kind])
        yield family

    def _observe_windows(self, parts: _CallParts) -> None:
        with parts.lock:
            total = parts.worker_stats.windows
            recent = list(parts.worker_stats.recent)
        new, parts.windows_seen = total - parts.windows_seen, total
        for window in recent[len(recent) - min(new, len(recent)):]:
            self.windows.labels("idle" if window["idle"] else "speech").inc()
            self.compute.observe(window["done"] - window["started"])
            slack = parts.frame_due(window["first_frame"]) - window["done"]
            self.slack.observe(slack)
            if slack < 0:
                self.late_windows.inc()
