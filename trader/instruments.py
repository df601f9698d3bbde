"""Keep the venue's instrument filters and shape each intent by them before it is sent.

:class:`Instruments` loads the filters of the deployment's symbols through the venue's order
adapter (``instruments(symbols)``: Binance ``exchangeInfo``, Alpaca ``/v2/assets``) on first use
and every :data:`REFRESH_S` after, and :meth:`Instruments.shape` applies them
(:func:`common.instruments.apply_filters`): the intent comes back rounded where that is safe,
or a refusal names the filter. A venue whose filters cannot be loaded is not blocked: its
orders go out unfiltered (the venue is then the judge), with a warning, the
``filters_unavailable`` counter and the alarm in the health record. Loaded filters are also
written to ``{V}:instruments`` (one JSON value per symbol) for strategies and people to read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from tickpipe.common.errors import DecodeError, TickpipeError
from tickpipe.common.instruments import Accepted, InstrumentFilters, Refused, apply_filters
from tickpipe.common.schema import OrderIntent

__all__ = ["REFRESH_S", "Instruments"]

log = logging.getLogger("tickpipe.trader")

#: How often the filters are loaded again (venues change tick sizes rarely, and announce it).
REFRESH_S = 300.0


@dataclasses.dataclass(eq=False)
class Instruments:
    """The filters by symbol, with their loading (see the module docstring)."""

    adapter: Any
    symbols: list[str]
    _: dataclasses.KW_ONLY
    counts: dict[str, int]
    clock: Callable[[], int]
    on_change: Callable[[InstrumentFilters], Awaitable[None]] | None = None
    #: the filters told to ``on_change`` this term, by symbol
    announced: dict[str, InstrumentFilters] = dataclasses.field(init=False, default_factory=dict)
    filters: dict[str, InstrumentFilters] = dataclasses.field(init=False, default_factory=dict)
    loaded_ns: int = dataclasses.field(init=False, default=0)
    attempted: bool = dataclasses.field(init=False, default=False)
    problem: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        for name in (
            "filters_loaded",
            "filters_unavailable",
            "filter_refusals",
            "filter_roundings",
        ):
            self.counts.setdefault(name, 0)

    async def load(self) -> None:
        """Load the filters now; on failure keep what was loaded before and say so."""
        self.attempted = True
        loader = getattr(self.adapter, "instruments", None)
        if loader is None:
            self._failed("the venue's adapter publishes no filters")
            return
        try:
            found: Mapping[str, InstrumentFilters] = await loader(list(self.symbols))
        except (TickpipeError, DecodeError, OSError) as exc:
            self._failed(str(exc))
            return
        self.filters.update(found)
        self.loaded_ns = self.clock()
        if self.on_change is not None:
            for symbol, rules in sorted(found.items()):
                if self.announced.get(symbol) != rules:
                    await self.on_change(rules)
                    self.announced[symbol] = rules
        self.counts["filters_loaded"] += 1
        self.problem = ""
        missing = sorted(set(self.symbols) - set(found))
        if missing:
            log.warning("no instrument filters for %s: orders for them go out unfiltered",
                        ", ".join(missing))  # fmt: skip

    def _failed(self, why: str) -> None:
        self.counts["filters_unavailable"] += 1
        self.problem = f"instrument filters unavailable: {why}"
        log.warning("%s; orders are sent unfiltered until they load", self.problem)

    async def ensure(self) -> None:
        """Load the filters once if no load was tried yet (the first order of a term)."""
        if not self.attempted:
            await self.load()

    def due(self, now_ns: int) -> bool:
        """Whether a refresh is due."""
        return not self.loaded_ns or now_ns - self.loaded_ns >= int(REFRESH_S * 1e9)

    def shape(
        self, intent: OrderIntent, venue_type: str, market_price: Decimal | None
    ) -> tuple[OrderIntent, Refused | None]:
        """Apply the symbol's filters to ``intent``: the intent to send, or the refusal."""
        rules = self.filters.get(intent.symbol)
        if rules is None:
            return intent, None
        answer = apply_filters(rules, side=intent.side, order_type=venue_type, qty=intent.qty,
                               price=intent.price, market_price=market_price,
                               quote_qty=intent.quote_qty,
                               stop_price=intent.stop_price)  # fmt: skip
        if isinstance(answer, Refused):
            self.counts["filter_refusals"] += 1
            return intent, answer
        assert isinstance(answer, Accepted)
        if answer.notes:
            self.counts["filter_roundings"] += 1
            log.info("order rounded to the venue's filters: %s", "; ".join(answer.notes),
                     extra={"client_order_id": intent.client_order_id})  # fmt: skip
        if intent.quote_qty:
            return intent, None  # nothing to round: the quote amount goes as asked
        shaped = dataclasses.replace(
            intent, qty=answer.qty, price=answer.price, stop_price=answer.stop_price
        )
        return shaped, None
