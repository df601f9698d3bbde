"""Plan the default demo of ``tickpipe up`` on the mock exchange (pure: values in, values out).

With no settings, ``tickpipe up`` should show both trading actions within a minute or two: a
MARKET order on a threshold crossing and the cancel of a resting LIMIT order on a rapid move.
The calm mock market rarely moves fast enough for either, so, when it starts the mock (never
against a real venue), ``tickpipe up`` adds (``--no-demo`` switches all of it off):

* market moves on every mock symbol, scheduled from the seed (:func:`demo_scenarios`), one
  round every :data:`ROUND_S` seconds: a ``spike`` (the price jumps 2.5-3.5 % and decays back
  over 10 s), a ``crash`` (it falls 3.5-4.5 % over 5 s, about 0.8 % a second) and a ``trend``
  that brings it back to where it was; the same seed gives the same plan;
* the strategies that act on them, for the settings the user left unset
  (:func:`demo_settings`): ``rapid_move`` before ``threshold_cross`` (a move first cancels what
  rests, then a crossing places its orders), and the threshold strategy's passive order at
  :data:`PASSIVE_BPS`: each crossing is a MARKET entry and a LIMIT on the same side behind the
  crossing price, which rests while the market runs away from it until a rapid move cancels it.

What the user set in the environment or the dotenv file is never overridden. The risk limits
stay as configured; the passive order sits well inside the default price band of the risk
check (``TICKPIPE_PRICE_BAND_BPS`` 100), so no demo order is refused for its price.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FIRST_MOVE_S",
    "HORIZON_S",
    "PASSIVE_BPS",
    "ROUND_S",
    "STRATEGIES",
    "demo_scenarios",
    "demo_settings",
]

#: The strategies of the demo, in the order they see each trade.
STRATEGIES = "rapid_move,threshold_cross"
#: How far behind the crossing price the passive order rests (the risk check's band is 100 bps).
PASSIVE_BPS = "40"
_PASSIVE_KEY = "TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS"
#: When the first spike starts, in seconds after the mock (the stages are up and trading by then).
FIRST_MOVE_S = 12.0
#: One round of spike, crash and recovery every this many seconds.
ROUND_S = 75.0
#: Rounds are scheduled for this long after the start; the market stays calm afterwards.
HORIZON_S = 3600.0


def demo_scenarios(seed: int, *, horizon_s: float = HORIZON_S) -> list[dict[str, Any]]:
    """Return the demo's market moves for ``seed`` as ``--scenario`` objects (every symbol)."""
    rng = random.Random(f"tickpipe-demo-{seed}")
    out: list[dict[str, Any]] = []
    start = FIRST_MOVE_S
    while start < horizon_s:
        spike_at = start + rng.uniform(0, 3)
        crash_at = spike_at + 15 + rng.uniform(0, 3)
        crash_pct = round(rng.uniform(3.5, 4.5), 2)
        back_pct = round(crash_pct / (100 - crash_pct) * 100, 4)  # (1 - c)(1 + b) = 1
        out += [
            {"name": "spike", "at": round(spike_at, 2), "duration": 10,
             "pct": round(rng.uniform(2.5, 3.5), 2)},
            {"name": "crash", "at": round(crash_at, 2), "duration": 5, "pct": crash_pct},
            {"name": "trend", "at": round(crash_at + 12, 2), "duration": 30, "pct": back_pct},
        ]  # fmt: skip
        start += ROUND_S
    return out


def demo_settings(given: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Return the demo's settings the user left unset in ``given``, and notes to print.

    ``given`` holds what the environment and the dotenv file set.
    """
    extra: dict[str, str] = {}
    notes: list[str] = []
    strategies = given.get("TICKPIPE_STRATEGIES")
    if strategies is None:
        extra["TICKPIPE_STRATEGIES"] = strategies = STRATEGIES
    names = {s.strip().lower() for s in strategies.split(",")}
    if "rapid_move" not in names:
        notes.append("TICKPIPE_STRATEGIES has no rapid_move: no cancel on rapid moves")
    if "threshold_cross" not in names:
        notes.append("TICKPIPE_STRATEGIES has no threshold_cross: no order on crossings")
    elif _PASSIVE_KEY not in given:
        extra[_PASSIVE_KEY] = PASSIVE_BPS
    return extra, notes
