"""Hostile callers against the server in this process (issue 11): a fuzz run whose every input gets a
clear answer with no traceback in the log (harness d, fast version), and a slot freed within 2 s of
every kind of drop (harness c). The long runs are benchmarks/fuzz_server.py and slot_free.py."""

import logging
import time

import pytest

from benchmarks.fuzz_cases import TOKEN, make_cases
from benchmarks.fuzz_server import run_cases, summary
from benchmarks.slot_free import DROPS, measure
from streaming.config import ServerConfig
from streaming.server import AvatarServer

FAST_CASES = 300


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record))


@pytest.fixture
def server_log():
    handler, root = Collect(), logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("websockets.server").setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


async def test_fuzzed_input_gets_clear_answers_and_no_traceback(tiny_profile, server_log):
    config = ServerConfig(port=0, token=TOKEN, max_sessions=4, compute_allowance_s=0.2)
    srv = await AvatarServer(config, tiny_profile).start()
    started = time.monotonic()
    try:
        results = await run_cases(srv.port, make_cases(FAST_CASES, seed=0))
    finally:
        await srv.stop()
    report = summary(results, "\n".join(server_log.lines))
    assert report["cases"] == FAST_CASES and time.monotonic() - started < 90
    assert report["internal"] == report["http_5xx"] == report["no_reply"] == 0, report["failed"]
    assert report["unclear"] == report["wrong_answer"] == 0, report["failed"]
    assert report["tracebacks_in_log"] == report["error_lines_in_log"] == 0
    refusals = sum("event=refused" in line for line in server_log.lines)
    assert refusals >= report["outcomes"].get("http:400", 0) + report["outcomes"].get("error:bad_sdp", 0)
    assert report["by_kind"]["http"] > 50 and report["by_kind"]["in_call"] > 20


@pytest.mark.slow
async def test_a_dropped_caller_frees_its_slot_within_2_s(tiny_profile):
    seconds = await measure(tiny_profile, repeat=1, signaling_timeout_s=3.0)
    assert set(seconds) == set(DROPS)
    for kind, (freed_in,) in seconds.items():
        assert freed_in is not None and freed_in < 2.0, (kind, seconds)
