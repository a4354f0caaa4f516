"""--log-format json: one JSON object per line, the key=value pairs of our log lines as fields."""

import json
import logging
import os
import subprocess
import sys

from avatar.logs import JsonFormatter


def test_a_server_log_line_becomes_json_fields():
    record = logging.LogRecord("streaming.server", logging.INFO, __file__, 1,
                               'call=%s event=refused_message code=%s message="%s" sessions=%d',
                               ("c7", "bad_sdp", 'the offer is not "valid"', 2), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "info" and data["logger"] == "streaming.server" and data["time"].endswith("+00:00")
    assert data["call"] == "c7" and data["event"] == "refused_message" and data["code"] == "bad_sdp"
    assert data["message"].startswith("call=c7") and data["sessions"] == 2


def test_an_exception_stays_inside_its_json_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("streaming.server", logging.ERROR, __file__, 1, "call=%s event=message_failed",
                                   ("c1",), sys.exc_info())
    data = json.loads(JsonFormatter().format(record))
    assert data["event"] == "message_failed" and "RuntimeError: boom" in data["exception"]


def test_the_cli_logs_json_lines():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "avatar.cli", "-v", "--log-format", "json", "bench", "--profile",
                          "tiny-random", "--seconds", "0.5"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert any(line["logger"] == "avatar.profiles" and "loaded profile" in line["message"] for line in lines), run.stderr
