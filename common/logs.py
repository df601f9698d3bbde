"""Set up JSON-lines logging with ``service`` and ``instance`` on every line and secrets masked.

Masking replaces each whole secret value with ``***``: every form it can take in a line (as is,
escaped inside a JSON string, percent-encoded in a URL) is matched in one pass, longest first, so
a secret that contains another is never left half shown. Matching is by value, not by word: a
secret glued to other text (``%3DKEY``) is still masked. Settings refuse a secret shorter than
``common.settings.MIN_SECRET_CHARS``, which could not be told from ordinary text.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import quote

import orjson

__all__ = ["JsonFormatter", "secret_pattern", "setup_logging"]

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def secret_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """Return a regex matching every form of every secret, longest first (``None``: no secret)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            json_form = orjson.dumps(secret).decode()[1:-1]
            forms.update((secret, json_form, quote(secret, safe=""), quote(secret)))
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object; extra attributes become fields; secrets become ***."""

    def __init__(self, service: str, instance: str, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.service = service
        self.instance = instance
        self.secrets = secret_pattern(secrets)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "instance": self.instance,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(out, default=str).decode()
        return line if self.secrets is None else self.secrets.sub("***", line)


def setup_logging(
    service: str,
    instance: str,
    *,
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route every ``logging`` record to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service, instance, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("websockets", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel("WARNING")
