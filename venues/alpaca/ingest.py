"""Adapt Alpaca's streams to the ingestor: one market-data connection per feed, plus trading.

The market-data slot writes into the raw streams of every partition of the venue: a frame whose
data messages all belong to one partition goes there whole (channel ``market``), a frame mixing
partitions is split into one array per partition (channel ``market-split``), and control messages
go to the first partition. Each raw stream gets its own frame numbering for the connection, so
``(conn, seq)`` stays a contiguous run per stream; connect and disconnect markers go to every one.
The trading slot writes ``trade_updates`` (and the auth/listen replies) into
``keys.private_raw("alpaca")``. Frames keep the ingestor's encoding rule: text and UTF-8 binary as
``ws``, other binary (msgpack) as ``ws-binary`` base64 of the exact bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from tickpipe.common.contract import MarkerEvent
from tickpipe.common.errors import DecodeError
from tickpipe.common.links import ConnectionTape, Link, Step, StreamTapes, changed_symbols
from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.venues.alpaca.session import (
    CONTROL_TYPES,
    VENUE,
    Action,
    DataSession,
    Fail,
    Ready,
    Refused,
    TradingSession,
    auth_message,
    channels_for,
    decode_frame,
    encode_sends,
    route_frame,
    upgrade_headers,
)

__all__ = [
    "AlpacaDataAdapter",
    "AlpacaTradingAdapter",
    "ingest_adapters",
]

log = logging.getLogger("tickpipe.ingestor")


class _Adapter:
    """What both slots share: settings, link, frame encoding and the outboxes of live sessions."""

    def __init__(self, settings: Settings, link: Link) -> None:
        self.settings = settings
        self.link = link
        self.url = link.url
        self.use_msgpack = settings.alpaca_encoding == "msgpack"
        self._outboxes: set[asyncio.Queue[str | bytes]] = set()

    def headers(self) -> dict[str, str]:
        return upgrade_headers(self.settings.alpaca_encoding)

    def sends(self, actions: list[Action]) -> list[str | bytes]:
        """Encode the messages ``actions`` ask for (the key pair is revealed only here)."""
        settings = self.settings

        def auth() -> dict[str, str]:
            key, secret = settings.alpaca_api_key.reveal(), settings.alpaca_api_secret.reveal()
            return auth_message(key, secret)

        return encode_sends(actions, auth, use_msgpack=self.use_msgpack)

    def outboxes(self) -> set[asyncio.Queue[str | bytes]]:
        return self._outboxes

    def broadcast(self, messages: list[str | bytes]) -> None:
        for outbox in self._outboxes:
            for message in messages:
                outbox.put_nowait(message)


class AlpacaDataAdapter(_Adapter):
    """The market-data slot: one connection for the whole feed."""

    watch_liveness = True
    #: Stock feeds go quiet outside market hours (WebSocket pings still prove the link), so
    #: total silence only counts as stale after this long; learned cadences judge sooner.
    max_silence_s: float | None = 900.0
    verify_tls = True

    def __init__(self, settings: Settings, link: Link) -> None:
        super().__init__(settings, link)
        self.channels = channels_for(settings.alpaca_feed)
        self.symbols = list(settings.symbols)
        self.partitions = list(settings.partitions()) or [Partition(VENUE, 0)]
        self.current: _DataSessionShell | None = None

    def new_session(self, conn: str) -> _DataSessionShell:
        self.current = _DataSessionShell(self, conn)
        return self.current

    def change(self, action: str, symbols: list[str]) -> None:
        """Subscribe or unsubscribe ``symbols`` now and on every later session."""
        self.symbols = changed_symbols(self.symbols, action, symbols)
        if self.current is not None:
            self.broadcast(self.sends(self.current.core.change(action, symbols)))


class _DataSessionShell:
    """One market-data session: the pure core plus one tape per partition raw stream."""

    def __init__(self, adapter: AlpacaDataAdapter, conn: str) -> None:
        self.adapter = adapter
        self.core = DataSession(adapter.symbols, adapter.channels)
        keys, url = adapter.settings.keys, adapter.url
        self.streams = {p: keys.raw(p) for p in adapter.partitions}
        self.tapes = StreamTapes(conn, VENUE, "market", url, self.streams.values())
        self.first = adapter.partitions[0]

    @property
    def tape(self) -> ConnectionTape:
        return self.tapes[self.streams[self.first]]

    def opening(self) -> list[str | bytes]:
        return []

    def receive(self, message: str | bytes, ts_recv: int) -> Step:
        step = Step()
        settings = self.adapter.settings
        try:
            decoded = decode_frame(message)
            routed = route_frame(
                message, decoded, venue=VENUE, shards=settings.shards, first=self.first
            )
        except DecodeError as exc:
            log.warning("Alpaca frame not understood, kept as received: %s", exc)
            stream = self.streams[self.first]
            step.items.append((stream, self.tape.frame(message, ts_recv)))
            return step
        for part in routed:
            stream = settings.keys.raw(part.partition)
            frame = self.tapes.of(stream, step, ts_recv).frame(part.data, ts_recv)
            if part.split:
                frame = dataclasses.replace(frame, channel="market-split")
            step.items.append((stream, frame))
        if isinstance(decoded, list):
            for m in decoded:
                if isinstance(m, dict) and m.get("T") not in CONTROL_TYPES:
                    step.stream = f"{m.get('T')}:{m.get('S')}"
                    step.delivered = True
                    break
        actions = self.core.receive(decoded)
        for action in actions:
            if isinstance(action, Fail):
                step.error = action.error
            elif isinstance(action, Ready):
                step.delivered = True
                log.info("Alpaca market data subscribed", extra={"subscription": action.detail})
            elif isinstance(action, Refused):
                step.markers.append(_refused_marker(action))
                log.error(
                    "Alpaca reported error %s %s (the stream carries on)", action.code, action.text
                )
        step.send.extend(self.adapter.sends(actions))
        return step


def _refused_marker(action: Refused) -> dict[str, object]:
    event = MarkerEvent.SUBSCRIPTION_REFUSED if action.code == 405 else "venue_error"
    return {"event": event, "code": action.code, "error": f"{action.code} {action.text}"}


class AlpacaTradingAdapter(_Adapter):
    """The trading-stream slot: auth, listen to ``trade_updates``, record into private raw."""

    watch_liveness = False
    max_silence_s: float | None = None
    verify_tls = True

    def new_session(self, conn: str) -> _TradingSessionShell:
        return _TradingSessionShell(self, conn)


class _TradingSessionShell:
    def __init__(self, adapter: AlpacaTradingAdapter, conn: str) -> None:
        self.adapter = adapter
        self.core = TradingSession()
        stream = adapter.link.stream
        self.tapes = StreamTapes(conn, VENUE, "private", adapter.url, [stream])
        self.tape = self.tapes[stream]

    def opening(self) -> list[str | bytes]:
        return self.adapter.sends(self.core.opening())

    def receive(self, message: str | bytes, ts_recv: int) -> Step:
        step = Step(items=[(self.adapter.link.stream, self.tape.frame(message, ts_recv))])
        try:
            decoded = decode_frame(message)
        except DecodeError as exc:
            log.warning("Alpaca trading frame not understood, kept as received: %s", exc)
            return step
        actions = self.core.receive(decoded)
        step.send = self.adapter.sends(actions)
        for action in actions:
            if isinstance(action, Fail):
                step.error = action.error
            elif isinstance(action, Ready):
                step.delivered = True
                log.info("Alpaca trade_updates subscribed", extra=action.detail)
        return step


def ingest_adapters(settings: Settings, links: Sequence[Link]) -> list[Any]:
    """Return the market-data and trading adapters for the links of :func:`plan_links`; the
    first (market data) is the one runtime subscription changes go to."""
    data_link, trading_link = links
    return [AlpacaDataAdapter(settings, data_link), AlpacaTradingAdapter(settings, trading_link)]
