"""Name the values a venue's market-data classifier answers besides single trades and quotes.

Trades of one frame (:class:`Trades`), order-book diffs and snapshots (:class:`DepthDiff`,
:class:`DepthSnapshot`), the venue's own bars, tickers, corrections and statuses. A venue package's
classifier (:mod:`venues.binance.market`, :mod:`venues.alpaca.market`) builds them; the processor
keeps books, bars and ids from them and publishes them. Pure, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from tickpipe.common.schema import SCHEMA_VERSION, Bar, Event, Quote, Trade

__all__ = [
    "BadMessage",
    "Balance",
    "BookUpdate",
    "DepthDiff",
    "DepthSnapshot",
    "Level",
    "MarketItem",
    "MessageItem",
    "PartialDepth",
    "Ticker",
    "TradeCorrection",
    "Trades",
    "VenueBar",
    "VenueStatus",
    "format_levels",
    "readable",
]


def readable(record: object, head: dict[str, str]) -> dict[str, str]:
    """Return ``head`` and then one readable field per attribute of the dataclass ``record``."""
    out = dict(head)
    for item in dataclasses.fields(record):  # type: ignore[arg-type]
        out[item.name] = str(getattr(record, item.name))
    return out


#: One price level: (price, quantity) as the venue wrote them.
Level = tuple[str, str]


def format_levels(levels: Sequence[Level]) -> str:
    """Render ``[(price, qty), ...]`` as ``price:qty,price:qty``."""
    return ",".join(f"{price}:{qty}" for price, qty in levels)


@dataclass(frozen=True, slots=True)
class Trades:
    """Trades from one frame; ``aggregate``: their ids are aggregate-trade ids.

    ``rejected`` holds ``(reason, item as JSON)`` for the items of a REST page that failed
    validation: one bad trade does not take its thousand neighbours down with it.
    """

    items: tuple[Trade, ...]
    aggregate: bool = False
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DepthDiff:
    """One ``depthUpdate``: update ids ``first_id`` (U) to ``last_id`` (u), absolute levels."""

    symbol: str
    first_id: int
    last_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts_event: int
    ts_recv: int
    entry_id: str


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A REST depth snapshot of ``symbol`` as of ``last_update_id``."""

    symbol: str
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts_recv: int
    entry_id: str


@dataclass(frozen=True, slots=True)
class PartialDepth(Event):
    """The best ``depth`` levels of a symbol's book as the venue pushed them whole.

    Binance ``depth5/10/20`` every ``update_ms`` (100 or 1000): a snapshot of the top of the
    venue's book as of ``update_id`` (its ``lastUpdateId``), not a diff. ``bids``/``asks`` are
    ``price:qty,...`` best first, as in the book stream. The venue sends no event time: the
    receive time stands in for ``ts_event``. ``src`` is the raw entry id.
    """

    kind: ClassVar[str] = "partial_depth"
    venue: str
    symbol: str
    update_id: str
    depth: int
    update_ms: int
    bid_price: str
    bid_qty: str
    ask_price: str
    ask_qty: str
    bids: str
    asks: str
    ts_event: int
    ts_recv: int
    src: str
    ts_proc: int = 0


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """Absolute price levels of ``symbol``'s book as a venue without update ids pushes them.

    ``reset``: the whole book (Alpaca sends one on subscribing); otherwise the levels that
    changed, a zero quantity removing the level.
    """

    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    reset: bool
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class VenueBar:
    """A bar the venue published; ``updated``: an ``u`` message revising a closed minute bar."""

    bar: Bar
    updated: bool


@dataclass(frozen=True, slots=True)
class L1Update:
    """One level-1 update that names only the fields that changed (IBKR ``smd``).

    Each field is ``None`` when the update leaves it as it was; the processor keeps the last
    value of each per symbol and turns the merged view into a :class:`Quote` (when the book
    changed) and a :class:`Trade` (when the last price or size changed). ``update_ms`` is the
    venue's time of the update, increasing per symbol: it names the quote and the trade.
    """

    symbol: str
    update_ms: int
    last_price: str | None = None
    last_size: str | None = None
    bid_price: str | None = None
    bid_size: str | None = None
    ask_price: str | None = None
    ask_size: str | None = None
    ts_recv: int = 0


@dataclass(frozen=True, slots=True)
class BadMessage:
    """One message of a frame that could not be parsed, with the reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class TradeCorrection:
    """A trade the venue corrected (``kind`` ``correction``) or cancelled (``cancel``).

    ``original_*`` describe the trade as first printed; ``corrected_*`` its new values (empty for
    a cancel). ``action`` is the venue's ``C`` (cancel) or ``E`` (error) for a cancel.
    """

    kind: str
    venue: str
    symbol: str
    exchange: str
    original_id: str
    original_price: str
    original_size: str
    original_conditions: str
    corrected_id: str
    corrected_price: str
    corrected_size: str
    corrected_conditions: str
    action: str
    tape: str
    entry_id: str
    ts_event: int
    ts_recv: int
    ts_proc: int = 0

    def to_fields(self) -> dict[str, str]:
        """Return one readable field per attribute plus ``v``."""
        return readable(self, {"v": SCHEMA_VERSION})


@dataclass(frozen=True, slots=True)
class VenueStatus(Event):
    """A symbol's trading status as the venue announced it (halt, resume...)."""

    kind: ClassVar[str] = "venue_status"
    venue: str
    symbol: str
    status_code: str
    status_message: str
    reason_code: str
    reason_message: str
    tape: str
    entry_id: str
    ts_event: int
    ts_recv: int
    ts_proc: int = 0


@dataclass(frozen=True, slots=True)
class Ticker(Event):
    """A rolling-window statistic (``window`` ``24h``, ``1h``, ``5m``...) as the venue pushed it.

    ``channel`` names the venue's channel it came from (Binance ``ticker``, ``miniTicker``,
    ``ticker_1h``, ``avgPrice``...). A mini ticker leaves the change, average, best bid/ask
    and trade-id fields empty; an average price (``avgPrice``) has only ``weighted_avg`` over
    its ``window`` and ``ts_close``, the time of the last trade it averages.
    """

    kind: ClassVar[str] = "ticker"
    venue: str
    symbol: str
    window: str
    open: str
    high: str
    low: str
    last: str
    volume: str
    quote_volume: str
    price_change: str
    price_change_pct: str
    weighted_avg: str
    bid_price: str
    ask_price: str
    first_trade_id: str
    last_trade_id: str
    trades: int
    ts_open: int
    ts_close: int
    ts_event: int
    ts_recv: int
    ts_proc: int = 0
    channel: str = ""


@dataclass(frozen=True, slots=True)
class Balance(Event):
    """One asset of the account as the venue reported it.

    ``event`` ``position``: the asset's ``free`` and ``locked`` amounts after a change (Binance
    ``outboundAccountPosition``, one entry per asset it lists); ``update``: a deposit,
    withdrawal or transfer of ``delta`` (Binance ``balanceUpdate``; free and locked empty).
    ``ts_event`` is the venue's event time, ``ts_account`` the account-update or clear time.
    """

    kind: ClassVar[str] = "balance"
    venue: str
    event: str
    asset: str
    free: str
    locked: str
    delta: str
    ts_account: int
    ts_event: int
    ts_recv: int
    ts_proc: int = 0


#: One message of a many-message frame: a value, or the name of the counter it is passed over by.
MessageItem = (
    Trade
    | Quote
    | VenueBar
    | TradeCorrection
    | VenueStatus
    | L1Update
    | Ticker
    | BookUpdate
    | BadMessage
    | str
)

#: What a frame of a one-value-a-frame venue carries, or the name of the counter it is passed
#: over by.
MarketItem = Trades | Quote | DepthDiff | DepthSnapshot | PartialDepth | VenueBar | Ticker | str
