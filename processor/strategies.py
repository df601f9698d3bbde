"""Turn trades into trading decisions with small, checkpointable strategy rules (pure, no I/O).

A strategy sees every new trade of its partition, in order, once (duplicates are removed before
it), and answers with a list of :class:`SignalSpec`. It must be deterministic: the same trades in
the same order give the same specs, whatever the batch boundaries, and its whole state must
survive :meth:`Strategy.to_state` / :meth:`Strategy.load_state` (msgpack-friendly values), because
the processor saves it in the partition checkpoint and a takeover resumes from there. The processor
turns specs into :class:`common.schema.Signal` events with deterministic ids.
"""

from __future__ import annotations

import decimal
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from common.schema import Trade

__all__ = ["SignalSpec", "Strategy", "ThresholdCross"]

_CTX = decimal.Context(prec=40)
_BPS = Decimal(10_000)
ABOVE = "above"
BELOW = "below"


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """What a strategy wants: ``action`` ``place`` or ``cancel``, side ``buy`` or ``sell``."""

    symbol: str
    side: str
    qty: str
    price: str
    reason: str
    action: str = "place"


class Strategy(ABC):
    """A deterministic rule from trades to signal specs, with checkpointable state."""

    #: Stable name; part of every signal id, so never rename a strategy that is in use.
    name: ClassVar[str]

    @abstractmethod
    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        """Return the signals this trade causes (usually none).

        ``ts_now`` is the processing time, for stamps only: a decision that depended on it would
        make the outputs differ between a first run and a replay.
        """

    @abstractmethod
    def to_state(self) -> Any:
        """Return the state as msgpack-friendly values."""

    @abstractmethod
    def load_state(self, data: Any) -> None:
        """Replace the state with one returned by :meth:`to_state`."""


class ThresholdCross(Strategy):
    """Buy when the price crosses up through a level, sell when it crosses down, with hysteresis.

    Per symbol the level comes from ``levels`` or, when absent, is the first trade's price. The
    state starts unknown; it becomes ``above`` at ``price >= level * (1 + h)`` and ``below`` at
    ``price <= level * (1 - h)``, with ``h = hysteresis_bps / 10000``; prices inside the band keep
    the state. Going below -> above emits a buy, above -> below a sell; the first state reached
    emits nothing.
    """

    name: ClassVar[str] = "threshold_cross"

    def __init__(self, levels: Mapping[str, str], *, hysteresis_bps: str, order_qty: str) -> None:
        self.levels = dict(levels)
        self.hysteresis_bps = hysteresis_bps
        self.order_qty = order_qty
        self._h = _CTX.divide(Decimal(hysteresis_bps), _BPS)
        # symbol -> [level, state]; state is "" (unknown), ABOVE or BELOW.
        self.symbols: dict[str, list[str]] = {}
        self._bands: dict[str, tuple[Decimal, Decimal]] = {}

    def _band(self, symbol: str, level: str) -> tuple[Decimal, Decimal]:
        band = self._bands.get(symbol)
        if band is None:
            value = Decimal(level)
            band = (
                _CTX.multiply(value, _CTX.add(1, self._h)),
                _CTX.multiply(value, _CTX.subtract(1, self._h)),
            )
            self._bands[symbol] = band
        return band

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        configured = self.levels.get(trade.symbol)
        entry = self.symbols.get(trade.symbol)
        if entry is None or (configured is not None and entry[0] != configured):
            # A new symbol, or a level changed in the configuration since the checkpoint.
            entry = [configured or trade.price, ""]
            self.symbols[trade.symbol] = entry
            self._bands.pop(trade.symbol, None)
        level, state = entry
        upper, lower = self._band(trade.symbol, level)
        price = Decimal(trade.price)
        if price >= upper:
            new_state = ABOVE
        elif price <= lower:
            new_state = BELOW
        else:
            return []
        entry[1] = new_state
        if state == BELOW and new_state == ABOVE:
            return [self._spec(trade, "buy", f"crossed above {level} (+{self.hysteresis_bps} bps)")]
        if state == ABOVE and new_state == BELOW:
            return [
                self._spec(trade, "sell", f"crossed below {level} (-{self.hysteresis_bps} bps)")
            ]
        return []

    def _spec(self, trade: Trade, side: str, why: str) -> SignalSpec:
        return SignalSpec(
            symbol=trade.symbol,
            side=side,
            qty=self.order_qty,
            price=trade.price,
            reason=f"price {trade.price} {why}",
        )

    def to_state(self) -> dict[str, list[str]]:
        return {symbol: list(entry) for symbol, entry in self.symbols.items()}

    def load_state(self, data: Any) -> None:
        self.symbols = {str(symbol): [str(e[0]), str(e[1])] for symbol, e in dict(data).items()}
        self._bands.clear()
