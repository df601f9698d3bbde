"""Simulate a seeded market per symbol: trades on a mean-reverting random walk (pure, no I/O).

Each symbol has its own random generator derived from ``(seed, symbol)``, so adding a symbol never
changes another symbol's trades. Trades arrive as a Poisson process at ``trades_per_s`` per
symbol; the price follows a discrete Ornstein-Uhlenbeck walk around the start price
(``p += theta * (p0 - p) + sigma * p0 * N(0, 1)`` per trade) on a 0.01 tick, so a demo keeps
crossing the start price. Time only comes in as ``now_ns`` arguments: for a given seed and the
same sequence of ``now_ns`` values the trades are identical. Scheduled scenarios
(:mod:`mock_ws.scenarios`) move the anchor price, halt trading or multiply the trade rate.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from tickpipe.common.units import MS, NS_PER_S
from tickpipe.mock_ws.scenarios import FOLLOW_REVERSION, Regime, regime_from

__all__ = [
    "DEFAULT_START_PRICE",
    "START_PRICES",
    "MarketSim",
    "SimTrade",
    "format_units",
]

#: Start price of a symbol not listed in START_PRICES.
DEFAULT_START_PRICE = "100"
START_PRICES: dict[str, str] = {"BTCUSDT": "61800", "ETHUSDT": "2680"}
TICKS_PER_UNIT = 100  # price tick 0.01
QTY_UNITS = 100_000  # quantity step 0.00001
#: Mean notional of a generated trade, in quote currency.
MEAN_NOTIONAL = 500.0


#: scale -> (the fraction's format, the zeros that pad it to 8 decimals)
_FORMATS: dict[int, tuple[str, str]] = {}


def format_units(units: int, scale: int) -> str:
    """Format ``units / scale`` (scale a power of ten <= 1e8) as an 8-decimal string."""
    spec = _FORMATS.get(scale)
    if spec is None:
        digits = len(str(scale)) - 1
        spec = _FORMATS[scale] = (f"0{digits}d", "0" * (8 - digits))
    whole, frac = divmod(units, scale)
    return f"{whole}.{frac:{spec[0]}}{spec[1]}"


class SimTrade(NamedTuple):
    """One public trade, with price and quantity as Binance-style 8-decimal strings.

    A named tuple, so it unpacks into the plain tuple
    :class:`mock_ws.binance.feed.TradeHistory` keeps.
    """

    symbol: str
    trade_id: int
    price: str
    qty: str
    trade_time_ms: int
    buyer_is_maker: bool

    def payload(self, event_time_ms: int | None = None) -> dict[str, Any]:
        """Return the ``<symbol>@trade`` payload exactly as Binance sends it."""
        return {
            "e": "trade",
            "E": self.trade_time_ms if event_time_ms is None else event_time_ms,
            "s": self.symbol,
            "t": self.trade_id,
            "p": self.price,
            "q": self.qty,
            "T": self.trade_time_ms,
            "m": self.buyer_is_maker,
            "M": True,
        }


class _SymbolState:
    """Price walk and trade schedule of one symbol."""

    def __init__(self, symbol: str, seed: int, start_price: str) -> None:
        self.symbol = symbol
        self.rng = random.Random(f"{seed}:{symbol}")
        self.start = float(Decimal(start_price))
        self.price = self.start
        self.ticks = round(self.start * TICKS_PER_UNIT)
        self.next_trade_id = 1
        self.next_due_ns: int | None = None
        self.generated = 0


class MarketSim:
    """Generate trades for several symbols from one seed; see the module docstring."""

    def __init__(
        self,
        symbols: Iterable[str],
        seed: int,
        trades_per_s: float,
        *,
        start_prices: Mapping[str, str] | None = None,
        sigma_bps: float = 1.0,
        reversion: float = 0.02,
        max_backlog_s: float = 5.0,
    ) -> None:
        if not trades_per_s > 0:
            raise ValueError("trades_per_s must be positive")
        prices = {**START_PRICES, **(start_prices or {})}
        self.seed = seed
        self.trades_per_s = trades_per_s
        self.sigma = sigma_bps / 10_000
        self.reversion = reversion
        self._max_backlog = max(100, int(trades_per_s * max_backlog_s))
        self._states = {
            s.upper(): _SymbolState(s.upper(), seed, prices.get(s.upper(), DEFAULT_START_PRICE))
            for s in symbols
        }
        if not self._states:
            raise ValueError("give at least one symbol")
        self._pending: list[SimTrade] = []
        self.regimes: list[Regime] = []

    def schedule(self, spec: Mapping[str, Any], now_ns: int) -> Regime:
        """Add a scenario (see :func:`mock_ws.scenarios.regime_from`); return its regime."""
        regime = regime_from(spec, now_ns, self._states)
        self.regimes.append(regime)
        return regime

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._states)

    def has_symbol(self, symbol: str) -> bool:
        return symbol.upper() in self._states

    def start_price(self, symbol: str) -> str:
        return format_units(round(self._state(symbol).start * TICKS_PER_UNIT), TICKS_PER_UNIT)

    def last_price(self, symbol: str) -> str:
        """Return the symbol's current price as an 8-decimal string."""
        return format_units(self._state(symbol).ticks, TICKS_PER_UNIT)

    def trades_generated(self) -> dict[str, int]:
        """Return how many trades each symbol has produced so far."""
        return {s: st.generated for s, st in self._states.items()}

    def trades_due(self, now_ns: int) -> list[SimTrade]:
        """Return every trade due since the last call, in trade-time order per symbol."""
        self._advance(now_ns)
        out, self._pending = self._pending, []
        return out

    def record_fill(
        self, symbol: str, qty: str, buyer_is_maker: bool, now_ns: int, price: str | None = None
    ) -> SimTrade:
        """Book a trade at ``price`` (default: the current price), e.g. an order's fill.

        A trade at another price moves the symbol's price there.

        The trade takes the symbol's next trade id and is returned by the next ``trades_due``,
        after every scheduled trade due before ``now_ns``, so trade ids stay contiguous and in
        trade-time order.
        """
        state = self._state(symbol)
        self._advance(now_ns)
        units = round(Decimal(qty) * QTY_UNITS)
        if price is not None:
            state.ticks = round(Decimal(price) * TICKS_PER_UNIT)
            state.price = state.ticks / TICKS_PER_UNIT
        trade = SimTrade(
            symbol=state.symbol,
            trade_id=state.next_trade_id,
            price=format_units(state.ticks, TICKS_PER_UNIT),
            qty=format_units(units, QTY_UNITS),
            trade_time_ms=now_ns // MS,
            buyer_is_maker=buyer_is_maker,
        )
        state.next_trade_id += 1
        state.generated += 1
        self._pending.append(trade)
        return trade

    def _state(self, symbol: str) -> _SymbolState:
        try:
            return self._states[symbol.upper()]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    def _gap_ns(self, state: _SymbolState, at_ns: int | None = None) -> int:
        rate = self.trades_per_s
        if at_ns is not None:
            for regime in self.regimes:
                if regime.applies(state.symbol):
                    rate *= regime.rate_factor(at_ns)
        return max(1, int(state.rng.expovariate(rate) * NS_PER_S))

    def _halt_end(self, state: _SymbolState, t_ns: int) -> int | None:
        ends = [r.end_ns for r in self.regimes if r.applies(state.symbol) and r.halts(t_ns)]
        return max(ends) if ends else None

    def _advance(self, now_ns: int) -> None:
        for state in self._states.values():
            if state.next_due_ns is None:
                state.next_due_ns = now_ns + self._gap_ns(state)
                continue
            made = 0
            while state.next_due_ns <= now_ns:
                halt_end = self._halt_end(state, state.next_due_ns) if self.regimes else None
                if halt_end is not None:  # no trades while halted
                    state.next_due_ns = halt_end + self._gap_ns(state, halt_end)
                    continue
                if made >= self._max_backlog:
                    # Asleep for too long: drop the rest of the backlog, keep ids contiguous.
                    state.next_due_ns = now_ns + self._gap_ns(state)
                    break
                self._pending.append(self._step(state, state.next_due_ns))
                state.next_due_ns += self._gap_ns(state, state.next_due_ns)
                made += 1

    def _step(self, state: _SymbolState, due_ns: int) -> SimTrade:
        rng = state.rng
        anchor, reversion = state.start, self.reversion
        for regime in self.regimes:
            if regime.applies(state.symbol):
                anchor *= regime.anchor_multiplier(due_ns)
                if regime.steers(due_ns):
                    reversion = FOLLOW_REVERSION
        state.price += reversion * (anchor - state.price)
        state.price += self.sigma * state.start * rng.gauss(0.0, 1.0)
        state.price = max(state.price, 1.0 / TICKS_PER_UNIT)
        ticks = max(1, round(state.price * TICKS_PER_UNIT))
        if ticks == state.ticks:
            buyer_is_maker = rng.random() < 0.5
        else:
            # A falling price means sellers took the bids: the buyer was the maker.
            buyer_is_maker = ticks < state.ticks
        state.ticks = ticks
        notional = rng.expovariate(1.0 / MEAN_NOTIONAL)
        units = max(1, round(notional / (ticks / TICKS_PER_UNIT) * QTY_UNITS))
        trade = SimTrade(
            symbol=state.symbol,
            trade_id=state.next_trade_id,
            price=format_units(ticks, TICKS_PER_UNIT),
            qty=format_units(units, QTY_UNITS),
            trade_time_ms=due_ns // MS,
            buyer_is_maker=buyer_is_maker,
        )
        state.next_trade_id += 1
        state.generated += 1
        return trade
