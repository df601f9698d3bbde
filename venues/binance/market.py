"""Classify one Binance market-data frame into the value it carries (pure, no I/O).

:func:`classify` answers with :class:`Trades` (live or backfilled), a :class:`Quote`, a
:class:`DepthDiff`, a :class:`DepthSnapshot`, a :class:`PartialDepth` (``depth5/10/20``), a
:class:`VenueBar` (a ``kline``), a :class:`Ticker` (every ticker kind and ``avgPrice``), or
the name of the counter under which the frame is passed over (request replies, and a
partial-depth payload without its stream name, whose symbol is unknowable; the processor reads
markers itself). Every channel ``TICKPIPE_CHANNELS`` accepts is normalised. A frame that cannot
be parsed or fails validation, or whose channel is unknown, raises :class:`DecodeError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tickpipe.common.builders import new_trade, one_trade
from tickpipe.common.decimals import decimal_of
from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import MarketItem, Trades
from tickpipe.common.schema import RawFrame, Trade
from tickpipe.common.units import MS
from tickpipe.venues.binance import wire as binance
from tickpipe.venues.binance.candles import parse_kline
from tickpipe.venues.binance.marketdata import (
    REST_DEPTH,
    REST_TRADES,
    parse_agg_trade,
    parse_book_ticker,
    parse_depth_diff,
    parse_partial_depth,
    parse_rest,
)
from tickpipe.venues.binance.tickers import TICKER_EVENTS, parse_avg_price, parse_ticker
from tickpipe.venues.binance.wire import is_reply

__all__ = ["classify"]


#: Binance event types (``e``) read but not normalised: the connection notice
#: ``serverShutdown``, which the ingestor acts on.
_UNNORMALISED_EVENTS = {"serverShutdown"}
_PARTIAL_DEPTH = {"depth5", "depth10", "depth20"}
_TICKER_CHANNELS = {"ticker", "miniTicker", "ticker_1h", "ticker_4h", "ticker_1d"}

_INF = float("inf")
# (stream, symbol) pairs, prices and quantities already found valid in a trade: checked once each.
_GOOD_SOURCES: set[tuple[Any, Any]] = set()
_GOOD_PRICES: set[str] = set()
_GOOD_QTYS: set[str] = set()


def _amount_ok(text: str, *, positive: bool) -> bool:
    """Tell whether ``text`` is a finite, non-negative (or positive) decimal Decimal reads
    (without ``_``: :func:`venues.binance.wire.decimal_text` refuses it, as the venue never
    writes one)."""
    try:
        number = float(text)
        decimal_of(text)
    except (ValueError, InvalidOperation):
        return False
    return (number > 0 if positive else number >= 0) and number < _INF and "_" not in text


def _remember(good: set[Any], value: Any) -> None:
    if len(good) >= 4096:
        good.clear()
    good.add(value)


def _fast_trade(
    entry_id: str, frame: RawFrame, stream: str | None, payload: Any, ts_proc: int
) -> Trade | None:
    """Return the trade of a well-formed payload, or ``None`` to let the full parser decide.

    Accepts exactly what :func:`_parse_trade` accepts when every field has its usual type,
    and builds the same trade (stamped ``ts_proc``) without the generic checks' overhead.
    """
    if type(payload) is not dict or payload.get("e") != "trade":
        return None
    try:
        price, qty, symbol = payload["p"], payload["q"], payload["s"]
        trade_time, trade_id, maker = payload["T"], payload["t"], payload["m"]
    except KeyError:
        return None
    if type(trade_time) is not int or type(trade_id) is not int or trade_time < 0 or trade_id < 0:
        return None
    if type(symbol) is not str or type(price) is not str or type(qty) is not str:
        return None
    if (stream, symbol) not in _GOOD_SOURCES:
        if not (symbol.isascii() and symbol.isalnum()):
            return None
        if stream is not None and stream.partition("@")[0] != symbol.lower():
            return None
        _remember(_GOOD_SOURCES, (stream, symbol))
    if price not in _GOOD_PRICES:
        if not _amount_ok(price, positive=True):
            return None
        _remember(_GOOD_PRICES, price)
    if qty not in _GOOD_QTYS:
        if not _amount_ok(qty, positive=False):
            return None
        _remember(_GOOD_QTYS, qty)
    return new_trade(
        "binance",
        symbol,
        str(trade_id),
        price,
        qty,
        "sell" if maker else "buy",
        trade_time * MS,
        frame.ts_recv,
        ts_proc,
        entry_id,
    )


def _parse_trade(entry_id: str, frame: RawFrame, stream: str | None, payload: Any) -> Trade:
    """Parse and validate one trade payload; raise :class:`DecodeError` with the reason."""
    try:
        trade = binance.parse_trade(payload, ts_recv=frame.ts_recv, src=entry_id)
        _ = (Decimal(trade.price), Decimal(trade.qty), int(trade.trade_id))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise DecodeError(f"trade is invalid: {exc!r}") from exc
    _check_stream(stream, trade.symbol)
    return trade


def _check_stream(stream: str | None, symbol: str) -> None:
    if stream is not None and stream.partition("@")[0] != symbol.lower():
        raise DecodeError(f"event of {symbol} arrived on stream {stream}")


def _event(
    entry_id: str, frame: RawFrame, stream: str | None, payload: Any, ts_proc: int = 0
) -> MarketItem:
    """Parse one market-data event, chosen by its stream name or, in raw form, by ``e``."""
    channel = stream.partition("@")[2] if stream is not None else None
    kind = payload.get("e") if isinstance(payload, Mapping) else None
    if not isinstance(kind, str):
        kind = None  # a malformed event type (a list, say) names no event
    if channel == "trade" or (channel is None and kind == "trade"):
        trade = _fast_trade(entry_id, frame, stream, payload, ts_proc)
        return Trades((trade or _parse_trade(entry_id, frame, stream, payload),))
    if channel == "aggTrade" or (channel is None and kind == "aggTrade"):
        trade = parse_agg_trade(payload, ts_recv=frame.ts_recv, src=entry_id)
        _check_stream(stream, trade.symbol)
        return Trades((trade,), aggregate=True)
    is_depth = channel is not None and channel in ("depth", "depth@100ms", "depth@1000ms")
    if is_depth or (channel is None and kind == "depthUpdate"):
        diff = parse_depth_diff(payload, ts_recv=frame.ts_recv, entry_id=entry_id)
        _check_stream(stream, diff.symbol)
        return diff
    if (channel or "").startswith("kline_") or (channel is None and kind == "kline"):
        bar = parse_kline(payload, channel)
        _check_stream(stream, bar.bar.symbol)
        return bar
    if channel in _TICKER_CHANNELS or (channel is None and kind in TICKER_EVENTS):
        ticker = parse_ticker(payload, ts_recv=frame.ts_recv)
        _check_stream(stream, ticker.symbol)
        if channel is not None and ticker.channel != channel:
            raise DecodeError(f"{payload['e']} event arrived on channel {channel}")
        return ticker
    raw_ticker = channel is None and kind is None and isinstance(payload, Mapping)
    if channel == "bookTicker" or (raw_ticker and "u" in payload and "b" in payload):
        quote = parse_book_ticker(payload, ts_recv=frame.ts_recv)
        _check_stream(stream, quote.symbol)
        return quote
    if channel == "avgPrice" or (channel is None and kind == "avgPrice"):
        average = parse_avg_price(payload, ts_recv=frame.ts_recv)
        _check_stream(stream, average.symbol)
        return average
    if stream is not None and channel is not None and channel.partition("@")[0] in _PARTIAL_DEPTH:
        return parse_partial_depth(stream, payload, ts_recv=frame.ts_recv, entry_id=entry_id)
    if channel is not None:
        raise DecodeError(f"unknown channel {channel!r} (stream {stream})")
    if isinstance(kind, str) and kind in _UNNORMALISED_EVENTS:
        return f"ignored:{kind}"
    raise DecodeError(f"unknown event type {kind!r}")


def classify(entry_id: str, frame: RawFrame, ts_proc: int = 0) -> MarketItem:
    """Return what a raw frame carries, or the counter name under which it is passed over.

    Trades may come stamped with ``ts_proc`` already (or with 0: the caller stamps them).
    """
    if frame.kind == "rest":
        if frame.channel not in (REST_DEPTH, REST_TRADES):
            raise DecodeError(f"unknown REST channel {frame.channel!r}")
        return parse_rest(frame.channel, frame.data, ts_recv=frame.ts_recv, entry_id=entry_id)
    if frame.kind != "ws":
        raise DecodeError(f"unknown raw frame kind {frame.kind!r}")
    stream, payload = binance.unwrap(frame.data)
    if stream is not None and stream.partition("@")[2] == "trade":
        # The hot shape, a combined-stream trade: what _event answers, without its dispatch.
        trade = _fast_trade(entry_id, frame, stream, payload, ts_proc)
        if trade is not None:
            return one_trade(trade)
    if stream is None and is_reply(payload):
        return "replies"
    if stream is None and not (isinstance(payload, Mapping) and ("e" in payload or "u" in payload)):
        if isinstance(payload, Mapping) and "lastUpdateId" in payload:
            return "ignored:partial_depth"  # partial depth without its stream: no symbol
        raise DecodeError("unrecognised frame: neither a stream event nor a reply")
    return _event(entry_id, frame, stream, payload, ts_proc)
