"""Trade the quote's mid price against the average close of the last final bars (an example).

Per symbol it keeps the closes of the last ``lookback`` final bars of ``interval``. When the mid
of the best bid and ask is ``threshold_bps`` above that average it buys ``qty`` at the ask, when
it is as far below it sells at the bid; it then waits for the opposite move before signalling
again. Revised bars replace the close they revise. Settings (``TICKPIPE_STRATEGY_MOMENTUM_*``):
``LOOKBACK``, ``INTERVAL``, ``THRESHOLD_BPS`` and ``QTY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from tickpipe.common.schema import Bar, Quote
from tickpipe.processor.strategies import BAR_REVISIONS, BARS, QUOTES, SignalSpec, Strategy

__all__ = ["Momentum", "MomentumSettings"]

_BPS = Decimal(10_000)


@dataclass(frozen=True)
class MomentumSettings:
    """What ``TICKPIPE_STRATEGY_MOMENTUM_<FIELD>`` may set."""

    lookback: int = 5
    interval: str = "1s"
    threshold_bps: Decimal = Decimal("2")
    qty: Decimal = Decimal("0.001")

    def __post_init__(self) -> None:
        if self.lookback < 1:
            raise ValueError("LOOKBACK must be at least 1")
        if self.qty <= 0:
            raise ValueError("QTY must be positive")


class Momentum(Strategy):
    """Buy above the recent average, sell below it, one signal per crossing."""

    name: ClassVar[str] = "momentum"
    inputs: ClassVar[frozenset[str]] = frozenset({QUOTES, BARS, BAR_REVISIONS})
    params: ClassVar[type[Any] | None] = MomentumSettings

    def __init__(self, settings: MomentumSettings) -> None:
        self.settings = settings
        self.closes: dict[str, list[list[Any]]] = {}  # symbol -> [[ts_open, close], ...]
        self.sides: dict[str, str] = {}  # symbol -> last side signalled

    def on_bar(self, bar: Bar, ts_now: int) -> list[SignalSpec]:
        if bar.interval == self.settings.interval:
            closes = self.closes.setdefault(bar.symbol, [])
            closes.append([bar.ts_open, bar.close])
            del closes[: -self.settings.lookback]
        return []

    def on_bar_revision(self, bar: Bar, ts_now: int) -> list[SignalSpec]:
        for item in self.closes.get(bar.symbol, []):
            if bar.interval == self.settings.interval and item[0] == bar.ts_open:
                item[1] = bar.close
        return []

    def on_quote(self, quote: Quote, ts_now: int) -> list[SignalSpec]:
        closes = self.closes.get(quote.symbol, [])
        if len(closes) < self.settings.lookback:
            return []
        average = sum(Decimal(c) for _, c in closes) / len(closes)
        mid = (Decimal(quote.bid_price) + Decimal(quote.ask_price)) / 2
        band = average * self.settings.threshold_bps / _BPS
        if mid >= average + band:
            side, price = "buy", quote.ask_price
        elif mid <= average - band:
            side, price = "sell", quote.bid_price
        else:
            return []
        if self.sides.get(quote.symbol) == side:
            return []
        self.sides[quote.symbol] = side
        why = f"mid {mid} vs {len(closes)}-bar average {average:.8f} ({self.settings.interval})"
        return [SignalSpec(quote.symbol, side, str(self.settings.qty), price, why)]

    def to_state(self) -> dict[str, Any]:
        return {"closes": self.closes, "sides": self.sides}

    def load_state(self, data: Any) -> None:
        closes = dict(data.get("closes", {}))
        self.closes = {str(s): [[int(t), str(c)] for t, c in v] for s, v in closes.items()}
        self.sides = {str(s): str(v) for s, v in dict(data.get("sides", {})).items()}
