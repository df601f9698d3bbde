"""Parse Binance market-data payloads beyond trades: quotes, depth, REST snapshots, backfills.

Pure functions from decoded JSON to values; every malformed payload raises
:class:`common.errors.DecodeError` with the reason, which the processor turns into a dead letter.
``aggTrade`` payloads become trades whose id is the aggregate id. Aggregate ids are another id
space than trade ids, so :class:`Trades` says which one its trades use and the processor
de-duplicates each space on its own; a symbol should be subscribed to one of the two channels,
not both, or its bars would count every print twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import DepthDiff, DepthSnapshot, PartialDepth, Trades, format_levels
from tickpipe.common.schema import Quote, Trade
from tickpipe.common.units import MS
from tickpipe.venues.binance.wire import decimal_text

__all__ = [
    "REST_DEPTH",
    "REST_TRADES",
    "Trades",
    "parse_agg_trade",
    "parse_backfill",
    "parse_book_ticker",
    "parse_depth_diff",
    "parse_partial_depth",
    "parse_rest",
]

REST_DEPTH = "depth_snapshot"
REST_TRADES = "trades_backfill"
_decimal = decimal_text  # a venue decimal string, checked and kept as sent


def _int(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{what} field {key!r} must be an integer, got {value!r}")
    return value


def _levels(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise DecodeError(f"{what} must be a list of [price, qty]")
    out = []
    for level in value:
        if not isinstance(level, list) or len(level) < 2:
            raise DecodeError(f"{what} level must be [price, qty], got {level!r}")
        out.append((_decimal(level[0], f"{what} price"), _decimal(level[1], f"{what} qty")))
    return tuple(out)


def parse_book_ticker(data: Any, *, ts_recv: int) -> Quote:
    """Convert a ``bookTicker`` payload into a :class:`Quote`.

    Spot bookTicker has no event time; ``ts_event`` is ``E`` when present, else ``ts_recv``.
    """
    if not isinstance(data, Mapping) or "u" not in data or "s" not in data:
        raise DecodeError("not a bookTicker payload")
    event_ms = data.get("E")
    return Quote(
        venue="binance",
        symbol=str(data["s"]),
        bid_price=_decimal(data.get("b"), "bid price"),
        bid_qty=_decimal(data.get("B"), "bid qty"),
        ask_price=_decimal(data.get("a"), "ask price"),
        ask_qty=_decimal(data.get("A"), "ask qty"),
        update_id=str(_int(data, "u", "bookTicker")),
        ts_event=event_ms * MS if isinstance(event_ms, int) else ts_recv,
        ts_recv=ts_recv,
    )


def parse_depth_diff(data: Any, *, ts_recv: int, entry_id: str) -> DepthDiff:
    """Convert a ``depthUpdate`` payload into a :class:`DepthDiff`."""
    if not isinstance(data, Mapping) or data.get("e") != "depthUpdate":
        raise DecodeError("not a depthUpdate payload")
    first, last = _int(data, "U", "depthUpdate"), _int(data, "u", "depthUpdate")
    if first > last:
        raise DecodeError(f"depthUpdate has U {first} > u {last}")
    return DepthDiff(
        symbol=str(data.get("s", "")),
        first_id=first,
        last_id=last,
        bids=_levels(data.get("b"), "bid"),
        asks=_levels(data.get("a"), "ask"),
        ts_event=_int(data, "E", "depthUpdate") * MS,
        ts_recv=ts_recv,
        entry_id=entry_id,
    )


def parse_partial_depth(stream: str, data: Any, *, ts_recv: int, entry_id: str) -> PartialDepth:
    """Convert a partial-depth payload of ``stream`` (``btcusdt@depth5@100ms``) into a
    :class:`PartialDepth`: its symbol, levels and speed come from the stream's name."""
    name, _, channel = stream.partition("@")
    levels, _, speed = channel.removeprefix("depth").partition("@")
    if not isinstance(data, Mapping) or not levels.isdigit():
        raise DecodeError(f"not a partial-depth payload of stream {stream}")
    bids, asks = _levels(data.get("bids"), "bid"), _levels(data.get("asks"), "ask")
    update_id = _int(data, "lastUpdateId", "partial depth")
    best_bid, best_ask = bids[0] if bids else ("", ""), asks[0] if asks else ("", "")
    return PartialDepth(
        venue="binance",
        symbol=name.upper(),
        update_id=str(update_id),
        depth=int(levels),
        update_ms=100 if speed == "100ms" else 1000,
        bid_price=best_bid[0],
        bid_qty=best_bid[1],
        ask_price=best_ask[0],
        ask_qty=best_ask[1],
        bids=format_levels(bids),
        asks=format_levels(asks),
        ts_event=ts_recv,
        ts_recv=ts_recv,
        src=entry_id,
    )


def parse_agg_trade(data: Any, *, ts_recv: int, src: str) -> Trade:
    """Convert an ``aggTrade`` payload into a :class:`Trade` (id = the aggregate id)."""
    if not isinstance(data, Mapping) or data.get("e") != "aggTrade":
        raise DecodeError("not an aggTrade payload")
    return _trade(data, "a", "p", "q", "T", "m", ts_recv=ts_recv, src=src)


def _trade(
    data: Mapping[str, Any],
    id_key: str,
    price_key: str,
    qty_key: str,
    time_key: str,
    maker_key: str,
    *,
    ts_recv: int,
    src: str,
    symbol: str | None = None,
) -> Trade:
    price = _decimal(data.get(price_key), "trade price")
    if float(price) <= 0:
        raise DecodeError(f"trade price must be positive: {price!r}")
    return Trade(
        venue="binance",
        symbol=symbol or str(data.get("s", "")),
        trade_id=str(_int(data, id_key, "trade")),
        price=price,
        qty=_decimal(data.get(qty_key), "trade quantity"),
        side="sell" if data.get(maker_key) else "buy",
        ts_event=_int(data, time_key, "trade") * MS,
        ts_recv=ts_recv,
        src=src,
    )


def parse_backfill(symbol: str, body: Any, *, ts_recv: int, src: str) -> Trades:
    """Convert a REST trades list (``/trades``, ``/historicalTrades`` or ``/aggTrades``)."""
    if not isinstance(body, list):
        raise DecodeError("trades backfill response must be a list")
    aggregate = bool(body) and isinstance(body[0], Mapping) and "a" in body[0]
    keys = ("a", "p", "q", "T", "m")
    if not aggregate:
        keys = ("id", "price", "qty", "time", "isBuyerMaker")
    out = []
    rejected = []
    for item in body:
        if not isinstance(item, Mapping):
            raise DecodeError(f"backfill item is not an object: {item!r}")
        if ("a" in item) != aggregate:
            raise DecodeError("backfill mixes aggregate trades and trades")
        try:
            out.append(_trade(item, *keys, ts_recv=ts_recv, src=src, symbol=symbol))
        except DecodeError as exc:
            rejected.append((f"backfilled {symbol} trade: {exc}", orjson.dumps(item).decode()))
    return Trades(tuple(out), aggregate, tuple(rejected))


def parse_rest(channel: str, text: str, *, ts_recv: int, entry_id: str) -> DepthSnapshot | Trades:
    """Decode a ``rest`` raw frame ``{"symbol":..,"request":..,"response":..}``."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"rest frame is not JSON: {exc}") from exc
    if not isinstance(obj, Mapping) or not isinstance(obj.get("symbol"), str):
        raise DecodeError("rest frame must be an object with a symbol")
    symbol = obj["symbol"].upper()
    body = obj.get("response")
    if isinstance(body, str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"rest response is not JSON: {exc}") from exc
    if channel == REST_DEPTH:
        if not isinstance(body, Mapping):
            raise DecodeError("depth snapshot response must be an object")
        return DepthSnapshot(
            symbol=symbol,
            last_update_id=_int(body, "lastUpdateId", "depth snapshot"),
            bids=_levels(body.get("bids"), "snapshot bid"),
            asks=_levels(body.get("asks"), "snapshot ask"),
            ts_recv=ts_recv,
            entry_id=entry_id,
        )
    if channel == REST_TRADES:
        return parse_backfill(symbol, body, ts_recv=ts_recv, src=entry_id)
    raise DecodeError(f"unknown rest channel {channel!r}")
