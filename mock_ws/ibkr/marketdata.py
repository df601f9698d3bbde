"""Level-1 market data of the IBKR mock: field values per contract, ``smd`` subscriptions (pure).

The values follow the seeded market (:class:`~mock_ws.market.MarketSim` trades moving a
:class:`~mock_ws.book.SimBook`). Field ids and value forms are those of
``/iserver/marketdata/snapshot`` in the Client Portal Web API reference: ``31`` last price (a
string; ``C`` prefix = prior close before the first trade), ``7059`` last size, ``84``/``86``
bid/ask, ``88``/``85`` bid/ask size, ``87`` volume (formatted, ``12.3K``), ``7762`` volume,
``70``/``71`` high/low, ``82`` change, ``83`` change percent (a number), ``55`` symbol,
``6008`` conid, ``6509`` availability (``RpB``: real time, snapshot, book).

Like the gateway, the mock samples: each subscription sends at most one update per ``interval``,
holding only the fields that changed since its previous update (so two trades within one
interval show as one last price, and a trade at the same price and size as the one before shows
as nothing). The first update after a subscription carries only ``conid``/``_updated``, the next
one every requested field. A subscription ends ``expiry_s`` after it was (re-)sent (10 minutes at
the venue since 2026-04-14) without any message: the client must send ``smd`` again.

``GET /iserver/marketdata/snapshot`` (:meth:`L1Feed.snapshot`; Web API docs, "Top-of-Book
Snapshots"): the first request for a conid is the "pre-flight" that opens the gateway's stream
for it and answers only ``conid`` and ``conidEx``; every later one answers the current value of
each field requested so far (by this request or an earlier one, so later requests need not
repeat ``fields``), with ``6509``, ``6119``/``server_id``, ``_updated``, ``conid`` and
``conidEx``. A field with no value yet (no trade: no ``7059``) is left out, as the docs allow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tickpipe.common.units import MS, NS_PER_S
from tickpipe.mock_ws.book import SimBook
from tickpipe.mock_ws.ibkr.contracts import ContractTable
from tickpipe.mock_ws.market import TICKS_PER_UNIT, MarketSim, SimTrade

__all__ = ["DEFAULT_FIELDS", "L1Feed", "Subscription"]

DEFAULT_FIELDS = (
    "31",
    "55",
    "6509",
    "7059",
    "84",
    "85",
    "86",
    "88",
    "87",
    "7762",
    "70",
    "71",
    "82",
    "83",
)
KNOWN_FIELDS = frozenset(DEFAULT_FIELDS) | {"6008", "7295"}


def _price(ticks: int) -> str:
    return f"{Decimal(ticks) / TICKS_PER_UNIT:.2f}"


def _shares(units_or_qty: Decimal) -> int:
    return max(1, int(units_or_qty.to_integral_value()))


def _volume_text(volume: int) -> str:
    if volume >= 1_000_000:
        return f"{volume / 1_000_000:.1f}M"
    if volume >= 1_000:
        return f"{volume / 1_000:.1f}K"
    return str(volume)


@dataclass
class Subscription:
    """One ``smd+<conid>`` subscription of one connection."""

    conid: int
    symbol: str
    fields: tuple[str, ...]
    started_ns: int
    server_id: str
    sent: dict[str, Any] = field(default_factory=dict)
    stage: int = 0  # 0: nothing sent, 1: the bare first update sent, 2: streaming
    last_updated_ms: int = 0


class L1Feed:
    """Field values per symbol, and the updates due to each subscription."""

    def __init__(
        self,
        market: MarketSim,
        contracts: ContractTable,
        seed: int,
        *,
        interval_s: float = 0.25,
        expiry_s: float = 600.0,
    ) -> None:
        self.market = market
        self.contracts = contracts
        self.interval_ns = int(interval_s * NS_PER_S)
        self.expiry_ns = int(expiry_s * NS_PER_S)
        self.books = {
            s: SimBook(s, round(Decimal(market.start_price(s)) * TICKS_PER_UNIT), seed)
            for s in market.symbols
        }
        self.values: dict[str, dict[str, Any]] = {}
        self._open: dict[str, Decimal] = {}
        self._volume: dict[str, int] = {}
        self.expired = 0
        for symbol in market.symbols:
            close = Decimal(market.start_price(symbol))
            self._open[symbol] = close
            self._volume[symbol] = 0
            self.values[symbol] = {
                "55": symbol,
                "6008": contracts.by_symbol[symbol],
                "6509": "RpB",
                "31": f"C{close:.2f}",
            }
            self._book_fields(symbol)

    def _book_fields(self, symbol: str) -> None:
        (bid, bid_units), (ask, ask_units) = self.books[symbol].best()
        values = self.values[symbol]
        values["84"], values["86"] = _price(bid), _price(ask)
        values["88"] = str(max(1, bid_units // 100_000) * 100)
        values["85"] = str(max(1, ask_units // 100_000) * 100)

    def on_trades(self, trades: Iterable[SimTrade]) -> None:
        """Move the field values to the trades (the book, last, size, volume, range)."""
        for trade in trades:
            symbol = trade.symbol
            price = Decimal(trade.price)
            ticks = round(price * TICKS_PER_UNIT)
            self.books[symbol].apply_trade(
                ticks, round(Decimal(trade.qty) * 100_000), trade.buyer_is_maker
            )
            size = _shares(Decimal(trade.qty))
            values = self.values[symbol]
            values["31"] = _price(ticks)
            values["7059"] = str(size)
            self._volume[symbol] += size
            values["87"] = _volume_text(self._volume[symbol])
            values["7762"] = str(self._volume[symbol])
            high = values.get("70")
            low = values.get("71")
            if high is None or price > Decimal(high):
                values["70"] = _price(ticks)
            if low is None or price < Decimal(low):
                values["71"] = _price(ticks)
            change = price - self._open[symbol]
            values["82"] = f"{change:+.2f}"
            values["83"] = float(round(change / self._open[symbol] * 100, 2))
            self._book_fields(symbol)

    def subscribe(
        self,
        subs: dict[int, Subscription],
        conid: int,
        fields: Iterable[str],
        now_ns: int,
        server_id: str,
    ) -> Subscription | None:
        """Start or renew ``smd+<conid>`` (``None``: no such contract)."""
        symbol = self.contracts.by_conid.get(conid)
        if symbol is None:
            return None
        wanted = tuple(dict.fromkeys(f for f in fields if f in KNOWN_FIELDS)) or DEFAULT_FIELDS
        old = subs.get(conid)
        if old is not None:  # renewed: the clock starts again, every field is sent again
            old.fields = tuple(dict.fromkeys(old.fields + wanted))
            old.started_ns = now_ns
            old.sent.clear()
            old.stage = max(old.stage, 1)
            return old
        sub = Subscription(conid, symbol, wanted, now_ns, server_id)
        subs[conid] = sub
        return sub

    def snapshot(
        self,
        streams: dict[int, Subscription],
        conids: Iterable[int],
        fields: Iterable[str],
        now_ns: int,
        server_id: Callable[[], str],
    ) -> list[dict[str, Any]]:
        """Answer a snapshot request for ``conids`` (unknown ones are left out); ``streams`` are
        the gateway's open snapshot streams, ``server_id`` names a new one."""
        wanted = tuple(dict.fromkeys(f for f in fields if f in KNOWN_FIELDS))
        out: list[dict[str, Any]] = []
        for conid in dict.fromkeys(conids):
            symbol = self.contracts.by_conid.get(conid)
            if symbol is None:
                continue
            stream = streams.get(conid)
            if stream is None:  # the pre-flight: the stream opens, no data yet
                streams[conid] = Subscription(conid, symbol, wanted, now_ns, server_id())
                out.append({"conid": conid, "conidEx": str(conid)})
                continue
            stream.fields = tuple(dict.fromkeys(stream.fields + wanted))
            values = self.values[symbol]
            entry: dict[str, Any] = {
                k: values[k] for k in stream.fields if values.get(k) is not None
            }
            entry["6509"] = values["6509"]
            entry["6119"] = entry["server_id"] = stream.server_id
            entry["_updated"] = now_ns // MS
            entry["conid"], entry["conidEx"] = conid, str(conid)
            out.append(entry)
        return out

    def due(self, subs: dict[int, Subscription], now_ns: int) -> list[dict[str, Any]]:
        """Return the updates due now to one connection's subscriptions; drop expired ones."""
        out: list[dict[str, Any]] = []
        for conid, sub in list(subs.items()):
            if now_ns - sub.started_ns >= self.expiry_ns:
                del subs[conid]
                self.expired += 1
                continue
            now_ms = max(now_ns // MS, sub.last_updated_ms + 1)
            if sub.last_updated_ms and (now_ms - sub.last_updated_ms) * MS < self.interval_ns:
                continue
            message: dict[str, Any] = {}
            if sub.stage >= 1:
                values = self.values[sub.symbol]
                for key in sub.fields:
                    value = values.get(key)
                    if value is not None and sub.sent.get(key) != value:
                        message[key] = value
                        sub.sent[key] = value
                if not message:
                    continue
                message["6119"] = sub.server_id
                message["server_id"] = sub.server_id
            sub.stage = min(2, sub.stage + 1)
            message["conid"] = conid
            message["_updated"] = now_ms
            message["topic"] = f"smd+{conid}"
            sub.last_updated_ms = now_ms
            out.append(message)
        return out
