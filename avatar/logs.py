"""Log output: plain text lines (default) or one JSON object per line (`--log-format json`), whose
fields are the `key=value` pairs our log lines carry."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def _value(text: str):
    if text.startswith('"'):
        return text[1:-1].replace('\\"', '"')
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "message": message}
        for key, text in PAIR.findall(message):
            out.setdefault(key, _value(text))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def logging_settings() -> tuple[bool, str]:
    """What setup_logging was given (verbose, format), read back: a session's process logs alike."""
    root = logging.getLogger()
    json_lines = any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)
    return root.getEffectiveLevel() <= logging.INFO, "json" if json_lines else "text"
