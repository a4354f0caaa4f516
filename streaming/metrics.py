"""The server's figures in Prometheus' text format (GET /metrics), one registry per server.

Windows are read from each call's worker at scrape time and when the call ends (its last 200 windows
are kept: ample for scrapes a minute apart at 25 fps); frame counts likewise, so the calls' hot paths
carry no metrics code. Each video frame slot is counted once: sent = new + repeated."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

COMPUTE_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
SLACK_BUCKETS = (-2.0, -1.0, -0.5, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
FRAME_COUNTS = ("sent", "repeated", "dropped")


def frame_counts(call) -> dict:
    return {"sent": call.video.sent, "repeated": call.video.repeated, "dropped": call.frames.overflowed}


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, server):
        self._server = server
        self._windows_seen: dict[int, int] = {}  # id(call) -> windows already observed
        self._ended = dict.fromkeys(FRAME_COUNTS, 0)
        registry = self.registry = CollectorRegistry()
        Gauge("avatar_sessions", "Session slots in use", registry=registry).set_function(
            lambda: len(server.calls))
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

    def _live_calls(self) -> list:
        return [call for call in self._server.calls.values() if call is not None]

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def call_ended(self, call) -> None:
        self._observe_windows(call)
        self._windows_seen.pop(id(call), None)
        for key, value in frame_counts(call).items():
            self._ended[key] += value

    def render(self) -> bytes:
        for call in self._live_calls():
            self._observe_windows(call)
        return generate_latest(self.registry)

    def collect(self):
        totals = dict(self._ended)
        for call in self._live_calls():
            for key, value in frame_counts(call).items():
                totals[key] += value
        family = CounterMetricFamily(
            "avatar_frames", "Video frames: sent (every slot), repeated (a slot that showed the previous frame "
            "again because its own was late), dropped (pushed out of a full buffer, never late)", labels=["kind"])
        for key in FRAME_COUNTS:
            family.add_metric([key], totals[key])
        yield family

    def _observe_windows(self, call) -> None:
        worker = call.worker
        if worker is None:
            return
        with worker.lock:
            total = worker.stats.windows
            recent = list(worker.stats.recent)
        new = total - self._windows_seen.get(id(call), 0)
        self._windows_seen[id(call)] = total
        due = call.clock.frame_due
        for window in recent[len(recent) - min(new, len(recent)):]:
            self.windows.labels("idle" if window["idle"] else "speech").inc()
            self.compute.observe(window["done"] - window["started"])
            slack = due(window["first_frame"]) - window["done"]
            self.slack.observe(slack)
            if slack < 0:
                self.late_windows.inc()
