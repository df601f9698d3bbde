"""Describe market scenarios that bend the simulated price walk and trade rate (pure).

A :class:`Regime` runs from ``start_ns`` for ``duration`` seconds on one symbol (or all):

* ``calm``: the default mean-reverting walk (a no-op marker).
* ``trend``: the walk's anchor moves ``pct`` percent (default +2) over the duration, and stays.
* ``crash``: the anchor falls ``pct`` percent (default 10) over the duration (default 30 s), and
  stays there.
* ``spike``: the anchor jumps ``pct`` percent (default +5) at the start and decays back to the
  start price over the duration (default 10 s).
* ``halt``: no trades for the duration (default 10 s).
* ``burst``: the trade rate is multiplied by ``factor`` (default 20) for the duration (default 5 s).

While a trend, crash or spike is active the price follows the anchor closely (reversion 0.3 per
trade instead of the calm walk's). Text form for ``--scenario``: comma-separated
``NAME[:SYMBOL][@AT][+DURATION]``, e.g. ``crash:BTCUSDT@10+30,burst@0+5``, or a JSON list of
``{"name", "symbol", "at", "duration", "pct", "factor"}`` objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tickpipe.common.units import NS_PER_S

__all__ = ["DEFAULTS", "SCENARIOS", "Regime", "ScenarioError", "parse_scenarios", "regime_from"]

SCENARIOS = ("calm", "trend", "crash", "spike", "halt", "burst")
#: name -> (default duration s, default pct, default factor)
DEFAULTS: dict[str, tuple[float, float, float]] = {
    "calm": (0.0, 0.0, 1.0),
    "trend": (60.0, 2.0, 1.0),
    "crash": (30.0, 10.0, 1.0),
    "spike": (10.0, 5.0, 1.0),
    "halt": (10.0, 0.0, 1.0),
    "burst": (5.0, 0.0, 20.0),
}
FOLLOW_REVERSION = 0.3
_TEXT_RE = re.compile(
    r"^(?P<name>[a-z]+)(:(?P<symbol>[A-Za-z0-9]+))?(@(?P<at>[0-9.]+))?(\+(?P<dur>[0-9.]+))?$"
)


class ScenarioError(ValueError):
    """A scenario description that cannot be used."""


@dataclass(frozen=True)
class Regime:
    """One scheduled scenario; ``symbol`` None applies to every symbol."""

    name: str
    symbol: str | None
    start_ns: int
    duration_s: float
    pct: float
    factor: float

    @property
    def end_ns(self) -> int:
        return self.start_ns + int(self.duration_s * NS_PER_S)

    def applies(self, symbol: str) -> bool:
        return self.symbol is None or self.symbol == symbol

    def active(self, t_ns: int) -> bool:
        return self.start_ns <= t_ns < self.end_ns

    def _progress(self, t_ns: int) -> float:
        if self.duration_s <= 0:
            return 1.0
        return min(1.0, max(0.0, (t_ns - self.start_ns) / (self.duration_s * NS_PER_S)))

    def anchor_multiplier(self, t_ns: int) -> float:
        """Return the factor on the symbol's anchor price at ``t_ns``."""
        if t_ns < self.start_ns:
            return 1.0
        frac = self._progress(t_ns)
        if self.name == "trend":
            return 1.0 + self.pct / 100 * frac
        if self.name == "crash":
            return 1.0 - self.pct / 100 * frac
        if self.name == "spike" and t_ns < self.end_ns:
            return 1.0 + self.pct / 100 * (1.0 - frac)
        return 1.0

    def rate_factor(self, t_ns: int) -> float:
        return self.factor if self.name == "burst" and self.active(t_ns) else 1.0

    def halts(self, t_ns: int) -> bool:
        return self.name == "halt" and self.active(t_ns)

    def steers(self, t_ns: int) -> bool:
        return self.name in ("trend", "crash", "spike") and self.active(t_ns)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "symbol": self.symbol,
            "start_ns": self.start_ns,
            "duration": self.duration_s,
            "pct": self.pct,
            "factor": self.factor,
        }


def regime_from(spec: Mapping[str, Any], now_ns: int, symbols: Iterable[str]) -> Regime:
    """Build a regime from ``{"name", "symbol"?, "at"?, "duration"?, "pct"?, "factor"?}``."""
    name = spec.get("name")
    if name not in SCENARIOS:
        raise ScenarioError(f"name: give one of {', '.join(SCENARIOS)}")
    duration, pct, factor = DEFAULTS[str(name)]
    symbol = spec.get("symbol")
    if symbol is not None:
        symbol = str(symbol).upper()
        if symbol not in {s.upper() for s in symbols}:
            raise ScenarioError(f"symbol {symbol}: not listed")
    values = {}
    for key, default in (("at", 0.0), ("duration", duration), ("pct", pct), ("factor", factor)):
        value = spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{key}: give a number")
        values[key] = float(value)
    if values["at"] < 0 or values["duration"] < 0 or values["factor"] <= 0:
        raise ScenarioError("at and duration must be >= 0 and factor > 0")
    return Regime(
        str(name),
        symbol,
        now_ns + int(values["at"] * NS_PER_S),
        values["duration"],
        values["pct"],
        values["factor"],
    )


def parse_scenarios(text: str) -> list[dict[str, Any]]:
    """Parse ``--scenario`` text (``NAME[:SYMBOL][@AT][+DURATION],...`` or JSON) to specs."""
    text = text.strip()
    if text.startswith(("[", "{")):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ScenarioError(f"not JSON: {exc}") from None
        data = [data] if isinstance(data, dict) else data
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise ScenarioError("give a JSON object or a list of them")
        return [dict(d) for d in data]
    out: list[dict[str, Any]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _TEXT_RE.match(part)
        if match is None:
            raise ScenarioError(f"{part!r}: give NAME[:SYMBOL][@AT][+DURATION]")
        spec: dict[str, Any] = {"name": match["name"]}
        if match["symbol"]:
            spec["symbol"] = match["symbol"]
        if match["at"]:
            spec["at"] = float(match["at"])
        if match["dur"]:
            spec["duration"] = float(match["dur"])
        out.append(spec)
    return out
