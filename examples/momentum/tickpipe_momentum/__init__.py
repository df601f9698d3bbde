"""Quote passively against the average close of the last final bars (an example strategy).

Per symbol it keeps the closes of the last ``lookback`` final bars of ``interval``. When the mid
of the best bid and ask is ``threshold_bps`` above that average it bids ``qty`` at the best bid,
when it is as far below it offers at the best ask: post-only LIMIT orders (Binance
``LIMIT_MAKER``), which rest on the book or are refused by the venue if they would take. It
then waits for the opposite move before signalling again. A working order is cancelled when
the signal reverses (the cancel goes out just before the new order) and when it is still
working after ``cancel_after_bars`` final bars. Revised bars replace the close they revise.

The strategy does not follow its fills (no ``orders`` input), so its signals stay a pure
function of the raw stream and a backtest gives the live ones: it counts an order as working
until it cancels it, and a cancel of an order that filled meanwhile cancels nothing.
Settings (``TICKPIPE_STRATEGY_MOMENTUM_*``): ``LOOKBACK``, ``INTERVAL``, ``THRESHOLD_BPS``,
``QTY`` and ``CANCEL_AFTER_BARS``.
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
    cancel_after_bars: int = 5

    def __post_init__(self) -> None:
        if self.lookback < 1:
            raise ValueError("LOOKBACK must be at least 1")
        if self.qty <= 0:
            raise ValueError("QTY must be positive")
        if self.threshold_bps < 0:
            raise ValueError("THRESHOLD_BPS must be 0 or more")
        if self.cancel_after_bars < 1:
            raise ValueError("CANCEL_AFTER_BARS must be at least 1")


class Momentum(Strategy):
    """Bid above the recent average, offer below it (post-only), cancel what stays unfilled."""

    name: ClassVar[str] = "momentum"
    inputs: ClassVar[frozenset[str]] = frozenset({QUOTES, BARS, BAR_REVISIONS})
    params: ClassVar[type[Any] | None] = MomentumSettings

    def __init__(self, settings: MomentumSettings) -> None:
        self.settings = settings
        self.closes: dict[str, list[list[Any]]] = {}  # symbol -> [[ts_open, close], ...]
        self.sides: dict[str, str] = {}  # symbol -> last side signalled
        self.working: dict[str, int] = {}  # symbol -> final bars since its order was placed

    def on_bar(self, bar: Bar, ts_now: int) -> list[SignalSpec]:
        if bar.interval != self.settings.interval:
            return []
        closes = self.closes.setdefault(bar.symbol, [])
        closes.append([bar.ts_open, bar.close])
        del closes[: -self.settings.lookback]
        if bar.symbol not in self.working:
            return []
        self.working[bar.symbol] += 1
        if self.working[bar.symbol] < self.settings.cancel_after_bars:
            return []
        del self.working[bar.symbol]
        why = f"unfilled after {self.settings.cancel_after_bars} bars ({bar.interval})"
        return [_cancel(bar.symbol, bar.close, why)]

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
            side, price = "buy", quote.bid_price  # our own side of the quote: we make
        elif mid <= average - band:
            side, price = "sell", quote.ask_price
        else:
            return []
        if self.sides.get(quote.symbol) == side:
            return []
        self.sides[quote.symbol] = side
        specs = []
        if self.working.pop(quote.symbol, None) is not None:
            specs.append(_cancel(quote.symbol, price, f"signal reversed to {side}"))
        why = f"mid {mid} vs {len(closes)}-bar average {average:.8f} ({self.settings.interval})"
        specs.append(SignalSpec(quote.symbol, side, str(self.settings.qty), price, why,
                                order_type="LIMIT", post_only=True))  # fmt: skip
        self.working[quote.symbol] = 0
        return specs

    def to_state(self) -> dict[str, Any]:
        return {"closes": self.closes, "sides": self.sides, "working": self.working}

    def load_state(self, data: Any) -> None:
        closes = dict(data.get("closes", {}))
        self.closes = {str(s): [[int(t), str(c)] for t, c in v] for s, v in closes.items()}
        self.sides = {str(s): str(v) for s, v in dict(data.get("sides", {})).items()}
        self.working = {str(s): int(n) for s, n in dict(data.get("working", {})).items()}


def _cancel(symbol: str, price: str, why: str) -> SignalSpec:
    """Cancel the symbol's working orders (the trader cancels every one of them)."""
    return SignalSpec(symbol, "buy", "0", price, why, action="cancel")
