"""Parse and track the mock's fault plan (pure: times come in as ``now_ns`` arguments).

A fault is a JSON object ``{"type": ..., ...}``. Common optional fields: ``at`` (seconds after
the fault is added before it fires, default 0), ``duration`` (seconds it stays active), ``count``
(how many frames/requests/trades it affects), and the connection filters ``path`` (substring of
the connection's path and query), ``kind`` (``"stream"`` or ``"api"``) and ``stream`` (exact
stream name of the affected frames; ``"user"`` = user-data events). Types:

* ``drop``: close matching connections at once (abort without a close frame, or ``code``).
* ``stall``: data frames of matching connections are discarded for ``duration`` (default 5) s;
  pings and answers to requests still flow. With ``stream`` it silences that one stream on a
  live connection while the connection's other streams flow (a lost subscription).
* ``delay``: each data frame waits ``ms`` plus a uniform ``jitter_ms`` before it is sent. With
  ``kind: "api"`` every WS-API answer waits too, one after the other (a slow venue).
* ``duplicate`` / ``reorder`` / ``malformed``: the next ``count`` (default 1) data frames are
  sent twice / swapped with the frame after them / preceded by a truncated copy
  (``replace: true`` sends only the truncated copy).
* ``reformat``: data frames are re-encoded as a proxy might, same JSON, other layout: ``style``
  ``spaced`` (default: ``{"stream": "...", "data": {...}}``), ``pretty`` (indented, one key per
  line) or ``reordered`` (``data`` before ``stream``); for ``duration`` s, or ``count`` frames,
  or until cleared.
* ``oversized``: the next ``count`` (default 1) data frames are padded (a top-level ``pad``
  string) to ``bytes`` (default 4 MiB + 1, one byte over the ingestor's limit) so that the
  client refuses them; the trade a padded frame carries is sent, and stays in REST history.
* ``trade_gap``: the next ``count`` (default 1) trades of ``symbol`` are not sent to anyone;
  they exist in the market and in REST. ``depth_gap``: the next ``count`` depth diff events of
  ``symbol`` on a subscribed diff stream are not sent (the next one's ``U`` is not the previous
  ``u`` + 1); diffs nobody subscribes to are not built, so they do not use the fault up.
* ``slow_reader``: a matching connection with more than ``max_queue`` (default 100) frames
  waiting is disconnected (1008) while the fault is active.
* ``rate_limit``: requests are answered ``status`` 429 (default) or 418 for ``duration``
  (default ``retry_after``, default 10) s; ``scope`` ``"rest"``, ``"ws_api"`` or ``"all"``.
* ``lifetime``: connections older than ``seconds`` are closed (like ``--lifetime``).
* ``server_shutdown``: matching connections get a ``serverShutdown`` event, then a 1001 close
  after ``grace`` (default 0.2) s.
* ``order_error``: the next ``count`` (default 1) ``order.place`` / ``POST /api/v3/order``
  requests (``kind`` ``"api"`` or ``"rest"`` to pick one) get ``mode`` ``"error"`` (a
  ``status`` 503 answer, code -1007, order not executed unless ``executed: true``),
  ``"timeout"`` (no answer, not executed) or ``"lost"`` (executed, answer never sent). REST
  cannot withhold an answer: it waits ``hang`` (default 10) s and answers 504, code -1007.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tickpipe.common.units import NS_PER_S

__all__ = [
    "FAULT_TYPES",
    "FRAME_TYPES",
    "OVERSIZED_BYTES",
    "Fault",
    "FaultError",
    "FaultPlan",
    "fault_list",
    "load_fault_file",
    "padded",
    "restyle",
]

FRAME_TYPES = ("stall", "delay", "duplicate", "reorder", "malformed", "reformat", "oversized")
ACTION_TYPES = ("drop", "server_shutdown", "lifetime")
FAULT_TYPES = (
    *FRAME_TYPES,
    *ACTION_TYPES,
    "trade_gap",
    "depth_gap",
    "slow_reader",
    "rate_limit",
    "order_error",
)
_COUNTED = (
    "duplicate", "reorder", "malformed", "oversized", "trade_gap", "depth_gap", "order_error",
)  # fmt: skip
_ORDER_MODES = ("error", "timeout", "lost")
_STYLES = ("spaced", "pretty", "reordered")
#: One byte over the ingestor's WebSocket message limit (4 MiB).
OVERSIZED_BYTES = 4 * 1024 * 1024 + 1


class FaultError(ValueError):
    """A fault description the plan cannot accept."""


@dataclass
class Fault:
    """One fault of the plan; ``spec`` is the description as given (with defaults filled)."""

    fault_id: int
    type: str
    spec: dict[str, Any]
    start_ns: int
    end_ns: int | None
    remaining: int | None
    fired: bool = False
    hits: int = 0

    def matches(self, path: str, kind: str, tag: str | None = None) -> bool:
        """Tell whether this fault applies to a connection (and a frame tagged ``tag``)."""
        want_path = self.spec.get("path")
        if want_path is not None and str(want_path) not in path:
            return False
        want_kind = self.spec.get("kind")
        if want_kind is not None and want_kind != kind:
            return False
        want_stream = self.spec.get("stream")
        return want_stream is None or tag is None or want_stream == tag

    def active(self, now_ns: int) -> bool:
        if now_ns < self.start_ns or (self.end_ns is not None and now_ns >= self.end_ns):
            return False
        return self.remaining is None or self.remaining > 0

    def describe(self) -> dict[str, Any]:
        """Return the fault as ``GET /_mock/faults`` lists it."""
        return {
            "id": self.fault_id,
            **self.spec,
            "fired": self.fired,
            "hits": self.hits,
            "remaining": self.remaining,
        }


def _number(spec: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = spec.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise FaultError(f"{name}: give a non-negative number")
    return float(value)


class FaultPlan:
    """The faults added so far; the shell asks it what applies to each frame and request."""

    def __init__(self, seed: int = 1) -> None:
        self.faults: list[Fault] = []
        self.rng = random.Random(f"faults:{seed}")
        self._ids = itertools.count(1)
        #: Called with each fault as it fires, so venues beside the one that polls the plan
        #: (the IBKR gateway) act on its drops and shutdowns too.
        self.listeners: list[Callable[[Fault, int], None]] = []

    def add(self, spec: Mapping[str, Any], now_ns: int) -> Fault:
        """Validate one fault description and add it; raise :class:`FaultError` if invalid."""
        if not isinstance(spec, Mapping):
            raise FaultError("a fault is a JSON object")
        kind = spec.get("type")
        if kind not in FAULT_TYPES:
            raise FaultError(f"type: give one of {', '.join(FAULT_TYPES)}")
        spec = {k: v for k, v in spec.items() if k not in ("id", "ts", "ev")}
        at = _number(spec, "at", 0.0) or 0.0
        duration = _number(spec, "duration", None)
        if kind == "stall" and duration is None:
            duration = spec["duration"] = 5.0
        if kind == "rate_limit":
            if spec.setdefault("status", 429) not in (429, 418):
                raise FaultError("status: give 429 or 418")
            retry = _number(spec, "retry_after", 10.0)
            spec["retry_after"] = retry
            if spec.setdefault("scope", "all") not in ("rest", "ws_api", "all"):
                raise FaultError("scope: give rest, ws_api or all")
            if duration is None:
                duration = spec["duration"] = retry
        if kind == "delay":
            _number(spec, "ms", 0.0)
            _number(spec, "jitter_ms", 0.0)
        if kind == "lifetime" and _number(spec, "seconds", None) is None:
            raise FaultError("seconds: give the connection lifetime in seconds")
        if kind in ("trade_gap", "depth_gap") and not isinstance(spec.get("symbol"), str):
            raise FaultError("symbol: give the symbol whose updates to skip")
        if kind == "slow_reader":
            spec["max_queue"] = int(_number(spec, "max_queue", 100.0) or 0)
        if kind == "order_error" and spec.setdefault("mode", "error") not in _ORDER_MODES:
            raise FaultError(f"mode: give one of {', '.join(_ORDER_MODES)}")
        if kind == "reformat" and spec.setdefault("style", "spaced") not in _STYLES:
            raise FaultError(f"style: give one of {', '.join(_STYLES)}")
        if kind == "oversized":
            spec["bytes"] = int(_number(spec, "bytes", float(OVERSIZED_BYTES)) or 0)
        remaining: int | None = None
        if kind in _COUNTED or "count" in spec:
            count = _number(spec, "count", 1.0)
            remaining = int(count or 0)
        start_ns = now_ns + int(at * NS_PER_S)
        end_ns = None if duration is None else start_ns + int(duration * NS_PER_S)
        fault = Fault(next(self._ids), str(kind), spec, start_ns, end_ns, remaining)
        self.faults.append(fault)
        return fault

    def due(self, now_ns: int) -> list[Fault]:
        """Return faults whose time has come and mark them fired (each returned once)."""
        out = []
        for fault in self.faults:
            if not fault.fired and now_ns >= fault.start_ns:
                fault.fired = True
                out.append(fault)
                for listener in self.listeners:
                    listener(fault, now_ns)
        self.faults = [f for f in self.faults if not self._spent(f, now_ns)]
        return out

    def listing(self, now_ns: int) -> list[dict[str, Any]]:
        """Return every fault not yet spent (pending or active)."""
        return [f.describe() for f in self.faults if not self._spent(f, now_ns)]

    def clear(self) -> int:
        """Remove every fault; return how many there were."""
        count = len(self.faults)
        self.faults = []
        return count

    def of_type(self, kinds: Iterable[str], now_ns: int) -> list[Fault]:
        """Return active, fired faults of the given types."""
        wanted = set(kinds)
        return [f for f in self.faults if f.type in wanted and f.fired and f.active(now_ns)]

    def frame_faults(self, path: str, kind: str, tag: str, now_ns: int) -> list[Fault]:
        """Return the frame faults that apply to a data frame tagged ``tag`` on a connection."""
        return [f for f in self.of_type(FRAME_TYPES, now_ns) if f.matches(path, kind, tag)]

    def take(self, fault: Fault) -> None:
        """Count one use of ``fault``."""
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1

    def skip_trade(self, symbol: str, now_ns: int, kind: str = "trade_gap") -> Fault | None:
        """Return the trade_gap (or ``kind``) fault that swallows the next update, if any."""
        for fault in self.of_type((kind,), now_ns):
            if str(fault.spec["symbol"]).upper() == symbol.upper():
                self.take(fault)
                return fault
        return None

    def rate_limited(self, scope: str, now_ns: int) -> Fault | None:
        """Return the active rate_limit fault for ``scope`` (``"rest"`` or ``"ws_api"``)."""
        for fault in self.of_type(("rate_limit",), now_ns):
            if fault.spec["scope"] in (scope, "all"):
                fault.hits += 1
                return fault
        return None

    def order_fault(self, path: str, now_ns: int, kind: str = "api") -> Fault | None:
        """Return (and count) the order_error fault for the next order request, if any.

        ``kind`` is ``"api"`` for the WebSocket API and ``"rest"`` for ``POST /api/v3/order``.
        """
        for fault in self.of_type(("order_error",), now_ns):
            if fault.matches(path, kind):
                self.take(fault)
                return fault
        return None

    def jitter_s(self, fault: Fault) -> float:
        """Return one delay in seconds for a ``delay`` fault: ``ms`` + uniform ``jitter_ms``."""
        ms = float(fault.spec.get("ms", 0.0))
        jitter = float(fault.spec.get("jitter_ms", 0.0))
        return (ms + self.rng.uniform(0.0, jitter)) / 1000.0

    @staticmethod
    def _spent(fault: Fault, now_ns: int) -> bool:
        if not fault.fired:
            return False
        if fault.type in ACTION_TYPES and fault.type != "lifetime":
            return True
        if fault.end_ns is not None and now_ns >= fault.end_ns:
            return True
        return fault.remaining is not None and fault.remaining <= 0


def load_fault_file(path: str | Path) -> list[dict[str, Any]]:
    """Read a fault plan: a JSON or YAML list of faults, or an object with a ``faults`` list."""
    file = Path(path)
    text = file.read_text()
    data: Any
    if file.suffix.lower() in (".yaml", ".yml"):
        import yaml  # only needed for YAML plans

        data = yaml.safe_load(text)
    else:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise FaultError(f"{file}: not JSON: {exc}") from None
    return fault_list(data)


def fault_list(data: Any) -> list[dict[str, Any]]:
    """Normalise a fault, a list of faults, or ``{"faults": [...]}`` to a list of faults."""
    if isinstance(data, Mapping) and "faults" in data:
        data = data["faults"]
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(f, Mapping) for f in data):
        raise FaultError('give a fault object, a list of them, or {"faults": [...]}')
    return [dict(f) for f in data]


def restyle(text: str, style: str) -> str:
    """Re-encode a JSON frame in another layout: ``spaced``, ``pretty`` or ``reordered``."""
    try:
        obj = json.loads(text)
    except ValueError:
        return text
    if style == "pretty":
        return json.dumps(obj, indent=2)
    if style == "reordered" and isinstance(obj, dict):
        obj = dict(reversed(list(obj.items())))
        return json.dumps(obj, separators=(",", ":"))
    return json.dumps(obj)


def padded(text: str, size: int) -> str:
    """Pad a JSON object frame with a top-level ``pad`` string to at least ``size`` bytes."""
    try:
        obj = json.loads(text)
    except ValueError:
        return text + " " * max(0, size - len(text.encode()))
    if not isinstance(obj, dict):
        obj = {"frame": obj}
    base = len(json.dumps(obj, separators=(",", ":")).encode())
    obj["pad"] = "x" * max(0, size - base - len(',"pad":""'))
    return json.dumps(obj, separators=(",", ":"))
