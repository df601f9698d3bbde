"""Keep one simulated order book per symbol, moved by the trades it prints (pure, no I/O).

Prices are integer ticks (0.01) and quantities integer units (0.00001), as in
:mod:`mock_ws.market`. Each side holds ``levels`` price levels on a fixed grid (spacing about
half a basis point of the start price) plus, at the top, the levels at the last trade: a trade
at ``P`` where the seller was the aggressor leaves the best bid at ``P`` and the best ask one tick
above; a buyer-aggressor trade leaves the best ask at ``P`` and the best bid one tick below. So
only the levels between the old and the new price change, plus two perturbed levels per update.

Every update gets the next update id; the changes are kept in a bounded log so depth diff
streams can report ``U`` (first id) .. ``u`` (last id) with ``U`` = previous ``u`` + 1, and a
snapshot's ``lastUpdateId`` is the id of the last update applied to it.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from tickpipe.mock_ws.market import QTY_UNITS, TICKS_PER_UNIT, format_units

__all__ = ["DEFAULT_LEVELS", "DepthDiff", "SimBook"]

DEFAULT_LEVELS = 200
LOG_LIMIT = 50_000
Changes = tuple[tuple[tuple[str, int], int], ...]
MEAN_LEVEL_NOTIONAL = 20_000.0
_Level = list[str]


class DepthDiff:
    """Level changes from update ``first_id`` to ``last_id`` (quantity 0 = level removed)."""

    __slots__ = ("asks", "bids", "first_id", "last_id")

    def __init__(self, first_id: int, last_id: int, bids: list[_Level], asks: list[_Level]):
        self.first_id = first_id
        self.last_id = last_id
        self.bids = bids
        self.asks = asks


def _price(ticks: int) -> str:
    return format_units(ticks, TICKS_PER_UNIT)


def _qty(units: int) -> str:
    return format_units(units, QTY_UNITS)


class SimBook:
    """A synthetic order book around the traded price; see the module docstring."""

    def __init__(
        self, symbol: str, mid_ticks: int, seed: int, *, levels: int = DEFAULT_LEVELS
    ) -> None:
        self.symbol = symbol
        self.levels = levels
        self.rng = random.Random(f"{seed}:{symbol}:book")
        self.spacing = max(1, round(mid_ticks * 0.00005))
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.update_id = 0
        # (update id, ((side, price), qty) pairs): plain tuples, which the collector stops
        # tracking, so a full collection skips the log.
        self.log: deque[tuple[int, Changes]] = deque(maxlen=LOG_LIMIT)
        self._changes: dict[tuple[str, int], int] = {}
        self._holes: set[tuple[str, int]] = set()  # levels emptied by takers, refilled later
        self._rebuild(mid_ticks, mid_ticks + 1)
        self._tops = (mid_ticks, mid_ticks + 1)
        self._commit()
        self.log.clear()

    # ---- updates ------------------------------------------------------------------------------

    def apply_trade(self, price_ticks: int, qty_units: int, buyer_is_maker: bool) -> int:
        """Move the book to a trade at ``price_ticks``; return the update id."""
        if buyer_is_maker:  # a seller hit the bid at P
            best_bid, best_ask = price_ticks, price_ticks + 1
        else:  # a buyer lifted the ask at P
            best_bid, best_ask = max(1, price_ticks - 1), price_ticks
        self._top(best_bid, best_ask)
        spacing = self.spacing
        for side, price in (
            (self.bids, (best_bid - 1) // spacing * spacing),
            (self.asks, (best_ask // spacing + 1) * spacing),
        ):
            step = self.rng.randrange(self.levels - 1) * spacing
            price = price - step if side is self.bids else price + step
            if price in side:
                self._set(side, price, self._random_qty(price))
        return self._commit()

    def _grid(self, low: int, high: int) -> range:
        """Return the grid prices ``low <= p < high``."""
        return range(-(-low // self.spacing) * self.spacing, high, self.spacing)

    def _top(self, best_bid: int, best_ask: int) -> None:
        """Move the tops from the previous ones, touching only the levels that change."""
        old_bid, old_ask = self._tops
        self._tops = (best_bid, best_ask)
        span = self.levels * self.spacing
        bids, asks = self.bids, self.asks
        if old_bid != best_bid and old_bid % self.spacing:
            self._set(bids, old_bid, 0)
        if old_ask != best_ask and old_ask % self.spacing:
            self._set(asks, old_ask, 0)
        gone = [
            *((bids, p) for p in self._grid(best_bid, old_bid + 1)),
            *((bids, p) for p in self._grid(old_bid - span + 1, best_bid - span + 1)),
            *((asks, p) for p in self._grid(old_ask, best_ask + 1)),
            *((asks, p) for p in self._grid(best_ask + span, old_ask + span)),
        ]
        for side, price in gone:
            if price in side:
                self._set(side, price, 0)
        self._set(bids, best_bid, self._random_qty(best_bid, top=True))
        self._set(asks, best_ask, self._random_qty(best_ask, top=True))
        new = [
            *(
                (bids, p)
                for p in self._grid(best_bid - span + 1, min(old_bid - span + 1, best_bid))
            ),
            *((bids, p) for p in self._grid(max(old_bid + 1, best_bid - span + 1), best_bid)),
            *((asks, p) for p in self._grid(max(old_ask + span, best_ask + 1), best_ask + span)),
            *((asks, p) for p in self._grid(best_ask + 1, min(old_ask, best_ask + span))),
        ]
        for name, price in self._holes:
            if price % self.spacing:  # an old top: not part of the grid
                continue
            if name == "b" and best_bid - span < price < best_bid:
                new.append((bids, price))
            elif name == "a" and best_ask < price < best_ask + span:
                new.append((asks, price))
        self._holes.clear()
        for side, price in new:
            if price > 0 and price not in side:
                self._set(side, price, self._random_qty(price))

    def _rebuild(self, best_bid: int, best_ask: int) -> None:
        """Lay out both sides around the tops from scratch."""
        floor = best_bid - self.levels * self.spacing
        for price in [p for p in self.bids if p > best_bid or p <= floor]:
            self._set(self.bids, price, 0)
        for price in [p for p in self.bids if p % self.spacing and p != best_bid]:
            self._set(self.bids, price, 0)
        ceiling = best_ask + self.levels * self.spacing
        for price in [p for p in self.asks if p < best_ask or p >= ceiling]:
            self._set(self.asks, price, 0)
        for price in [p for p in self.asks if p % self.spacing and p != best_ask]:
            self._set(self.asks, price, 0)
        self._set(self.bids, best_bid, self._random_qty(best_bid, top=True))
        self._set(self.asks, best_ask, self._random_qty(best_ask, top=True))
        grid = (best_bid - 1) // self.spacing * self.spacing
        while grid > floor and grid > 0:
            if grid not in self.bids:
                self._set(self.bids, grid, self._random_qty(grid))
            grid -= self.spacing
        grid = (best_ask // self.spacing + 1) * self.spacing
        while grid < ceiling:
            if grid not in self.asks:
                self._set(self.asks, grid, self._random_qty(grid))
            grid += self.spacing

    def _random_qty(self, price_ticks: int, *, top: bool = False) -> int:
        notional = self.rng.expovariate(1.0 / MEAN_LEVEL_NOTIONAL) * (0.2 if top else 1.0)
        return max(1, round(notional / (price_ticks / TICKS_PER_UNIT) * QTY_UNITS))

    def _set(self, side: dict[int, int], price: int, qty: int) -> None:
        name = "b" if side is self.bids else "a"
        if qty:
            side[price] = qty
        else:
            side.pop(price, None)
        self._changes[(name, price)] = qty

    def _commit(self) -> int:
        self.update_id += 1
        self.log.append((self.update_id, tuple(self._changes.items())))
        self._changes = {}
        return self.update_id

    def take(
        self, buy: bool, limit_ticks: int, qty_units: int, *, dry_run: bool = False
    ) -> list[tuple[int, int]]:
        """Consume the levels a taker crosses up to ``limit_ticks``; return (ticks, units) fills.

        ``dry_run`` only reports what would fill (a FOK check).
        """
        side = self.asks if buy else self.bids
        fills: list[tuple[int, int]] = []
        left = qty_units
        for price in sorted(side, reverse=not buy):
            if left <= 0 or (price > limit_ticks if buy else price < limit_ticks):
                break
            qty = min(left, side[price])
            fills.append((price, qty))
            left -= qty
            if not dry_run:
                self._set(side, price, side[price] - qty)
                if price not in side:
                    self._holes.add(("a" if buy else "b", price))
        if fills and not dry_run:
            self._commit()
        return fills

    # ---- views --------------------------------------------------------------------------------

    def best(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Return ``((bid_ticks, bid_units), (ask_ticks, ask_units))`` (0, 0 for an empty side)."""
        bid, ask = self._tops
        if bid not in self.bids:  # a taker emptied the top
            bid = max(self.bids, default=0)
        if ask not in self.asks:
            ask = min(self.asks, default=0)
        return (bid, self.bids.get(bid, 0)), (ask, self.asks.get(ask, 0))

    def top(self, limit: int) -> tuple[list[_Level], list[_Level]]:
        """Return the best ``limit`` bids (descending) and asks (ascending) as strings."""
        bids = sorted(self.bids.items(), reverse=True)[:limit]
        asks = sorted(self.asks.items())[:limit]
        return (
            [[_price(p), _qty(q)] for p, q in bids],
            [[_price(p), _qty(q)] for p, q in asks],
        )

    def snapshot(self, limit: int) -> dict[str, Any]:
        """Return the ``GET /api/v3/depth`` body (also the partial-depth stream payload)."""
        bids, asks = self.top(limit)
        return {"lastUpdateId": self.update_id, "bids": bids, "asks": asks}

    def book_ticker(self) -> dict[str, Any]:
        """Return the ``<symbol>@bookTicker`` payload."""
        (bid, bid_qty), (ask, ask_qty) = self.best()
        return {
            "u": self.update_id,
            "s": self.symbol,
            "b": _price(bid),
            "B": _qty(bid_qty),
            "a": _price(ask),
            "A": _qty(ask_qty),
        }

    def diff_since(self, after_id: int) -> DepthDiff | None:
        """Merge the updates after ``after_id`` into one diff (None if there are none)."""
        if after_id >= self.update_id:
            return None
        newer: list[tuple[int, Changes]] = []
        for entry in reversed(self.log):
            if entry[0] <= after_id:
                break
            newer.append(entry)
        first = newer[-1][0] if newer else after_id + 1
        merged: dict[tuple[str, int], int] = {}
        for _, changes in reversed(newer):
            merged.update(changes)
        bids = sorted(((p, q) for (s, p), q in merged.items() if s == "b"), reverse=True)
        asks = sorted((p, q) for (s, p), q in merged.items() if s == "a")
        return DepthDiff(
            first,
            self.update_id,
            [[_price(p), _qty(q)] for p, q in bids],
            [[_price(p), _qty(q)] for p, q in asks],
        )
