"""Run the ingestor's side of Alpaca's stream protocols (pure: no I/O, no clock, no secrets).

Market data (``/v2/{feed}``, ``/v1beta3/crypto/us``): the venue greets with
``[{"T":"success","msg":"connected"}]``; we authenticate, it answers ``authenticated``; we
subscribe every channel of the symbols, it answers with the full ``T:"subscription"`` set; data
arrives as arrays that may mix symbols and types. Trading (``/stream``): we authenticate at once,
then ``listen`` to ``trade_updates``. :class:`DataSession` and :class:`TradingSession` turn decoded
venue messages into :data:`Action` values the shell carries out; the key pair never enters this
module (:class:`SendAuth` asks the shell to build the auth message with the revealed secret).

Error codes -> actions: 402 auth failed, 401 not authenticated and 409 insufficient subscription
are fatal (:class:`~common.errors.AuthError`, a configuration problem naming the setting); 406
connection limit means another session holds the slot: :class:`~common.errors.RateLimited`, wait
and reconnect; 404 auth timeout and 407 slow client end the session (reconnect with backoff);
every other code (405 symbol limit, 400, 403, 410, ...) is reported and the session carries on.

:func:`route_frame` assigns a frame to partitions: whole when every data message belongs to one
partition, else split into one venue-shaped array per partition, byte-exact per element (JSON text
spans or msgpack element bytes), so numbers keep their text and timestamps their extension type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from tickpipe.common.errors import AuthError, ConfigError, DecodeError, RateLimited, VenueError
from tickpipe.common.links import Link
from tickpipe.common.names import Partition, shard_for
from tickpipe.common.settings import Settings

__all__ = [
    "CONNECTION_LIMIT_WAIT_S",
    "CONTROL_TYPES",
    "CRYPTO_CHANNELS",
    "FEED_HINT",
    "KEY_HINT",
    "STOCK_CHANNELS",
    "VENUE",
    "Action",
    "DataSession",
    "Fail",
    "Ready",
    "Refused",
    "Routed",
    "Send",
    "SendAuth",
    "TradingSession",
    "auth_message",
    "channels_for",
    "check_keys",
    "decode_frame",
    "element_spans",
    "encode_client",
    "encode_sends",
    "listen_message",
    "plan_links",
    "route_frame",
    "subscription_message",
    "upgrade_headers",
]

VENUE = "alpaca"

STOCK_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses")
CRYPTO_CHANNELS = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "orderbooks")
CONTROL_TYPES = frozenset({"success", "error", "subscription"})
KEY_HINT = "check ALPACA_API_KEY and ALPACA_API_SECRET (a key pair valid for this venue)"
FEED_HINT = "check TICKPIPE_ALPACA_FEED (the account's plan does not include this feed)"
#: Least wait after ``406 connection limit exceeded`` (another session holds the slot).
CONNECTION_LIMIT_WAIT_S = 2.0
_ENDS_SESSION = frozenset({404, 407, 500})


def channels_for(feed: str) -> tuple[str, ...]:
    """Return the channels subscribed on ``feed`` (``crypto`` or a stock feed)."""
    return CRYPTO_CHANNELS if feed == "crypto" else STOCK_CHANNELS


def upgrade_headers(encoding: str) -> dict[str, str]:
    """Return the upgrade headers selecting the server's frame encoding."""
    return {"Content-Type": "application/msgpack"} if encoding == "msgpack" else {}


def auth_message(key: str, secret: str) -> dict[str, str]:
    """Build the ``auth`` message (market data and the trading stream share this form)."""
    return {"action": "auth", "key": key, "secret": secret}


def subscription_message(
    action: str, symbols: Iterable[str], channels: Sequence[str]
) -> dict[str, Any]:
    """Build a ``subscribe``/``unsubscribe`` message for every channel of ``symbols``."""
    names = list(dict.fromkeys(symbols))
    return {"action": action, **{channel: names for channel in channels}}


def listen_message(streams: Sequence[str] = ("trade_updates",)) -> dict[str, Any]:
    """Build the trading stream's ``listen`` message (the list replaces the current set)."""
    return {"action": "listen", "data": {"streams": list(streams)}}


def encode_client(message: Mapping[str, Any], *, use_msgpack: bool) -> str | bytes:
    """Encode a client message: msgpack bytes (binary frame) or JSON text."""
    if use_msgpack:
        packed: bytes = msgpack.packb(dict(message), use_bin_type=True)
        return packed
    return orjson.dumps(dict(message)).decode()


def decode_frame(data: str | bytes) -> Any:
    """Decode a venue frame: text as JSON, binary as JSON (paper trading) or msgpack."""
    if isinstance(data, str):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"frame is not JSON: {exc}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"frame is neither JSON nor msgpack: {exc}") from None


# -- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendAuth:
    """Send the auth message (the shell reveals the key pair for it)."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send this message."""

    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ready:
    """The session is subscribed (or listening): data may flow."""

    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refused:
    """The venue reported a non-fatal error; write it down and carry on."""

    code: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Fail:
    """End the session with this error (fatal for :class:`AuthError`, else reconnect)."""

    error: VenueError


Action = SendAuth | Send | Ready | Refused | Fail


def encode_sends(
    actions: Iterable[Action], auth: Callable[[], Mapping[str, Any]], *, use_msgpack: bool
) -> list[str | bytes]:
    """Encode the messages ``actions`` ask for, in order.

    ``auth`` builds the auth message when one is asked for, so the key pair is revealed in the
    shell that holds it and never stored here.
    """
    out: list[str | bytes] = []
    for action in actions:
        if isinstance(action, SendAuth):
            out.append(encode_client(auth(), use_msgpack=use_msgpack))
        elif isinstance(action, Send):
            out.append(encode_client(action.message, use_msgpack=use_msgpack))
    return out


def data_error(code: Any, text: str) -> Action:
    """Map a market-data ``T:"error"`` message to what the ingestor does about it."""
    described = f"{code} {text}".strip()
    number = code if isinstance(code, int) else None
    if number in (401, 402):
        return Fail(AuthError(f"Alpaca refused the key ({described}); {KEY_HINT}", code=number))
    if number == 409:
        return Fail(AuthError(f"Alpaca refused the feed ({described}); {FEED_HINT}", code=number))
    if number == 406:
        return Fail(
            RateLimited(
                f"Alpaca connection limit ({described}): another session with this key is open",
                retry_after_s=CONNECTION_LIMIT_WAIT_S,
                code=number,
            )
        )
    if number in _ENDS_SESSION:
        return Fail(VenueError(f"Alpaca ended the session ({described})", code=number))
    return Refused(number, text)


class DataSession:
    """One market-data session: connected -> auth -> subscribe -> streaming."""

    def __init__(self, symbols: Iterable[str], channels: Sequence[str]) -> None:
        self.symbols = list(dict.fromkeys(symbols))
        self.channels = tuple(channels)
        self.state = "connecting"
        #: The venue's last full subscription set.
        self.subscribed: dict[str, list[str]] = {}
        #: Changes asked for while the first subscription was in flight, sent once it lands.
        self.deferred: list[Action] = []

    def receive(self, messages: Any) -> list[Action]:
        """Digest one decoded frame (an array); return the actions it calls for."""
        if not isinstance(messages, list):
            return []
        actions: list[Action] = []
        for message in messages:
            if isinstance(message, Mapping) and message.get("T") in CONTROL_TYPES:
                actions.extend(self._control(message))
        return actions

    def _control(self, message: Mapping[str, Any]) -> list[Action]:
        kind = message.get("T")
        if kind == "error":
            action = data_error(message.get("code"), str(message.get("msg", "")))
            if isinstance(action, Refused) and self.state == "subscribing":
                self.state = "streaming"  # the set is unchanged; later changes may still work
                deferred, self.deferred = self.deferred, []
                return [action, *deferred]
            return [action]
        if kind == "subscription":
            self.subscribed = {
                k: list(v) for k, v in message.items() if k != "T" and isinstance(v, list)
            }
            was = self.state
            self.state = "streaming"
            if was == "streaming":
                return []
            # changes asked for while the first subscription was in flight go out now
            deferred, self.deferred = self.deferred, []
            return [Ready(dict(self.subscribed)), *deferred]
        text = message.get("msg")
        if text == "connected" and self.state == "connecting":
            self.state = "authenticating"
            return [SendAuth()]
        if text == "authenticated" and self.state == "authenticating":
            self.state = "subscribing"
            if not self.symbols:
                self.state = "streaming"
                return [Ready()]
            return [Send(subscription_message("subscribe", self.symbols, self.channels))]
        return []

    def change(self, action: str, symbols: Iterable[str]) -> list[Action]:
        """Subscribe or unsubscribe ``symbols``: now when streaming, and on every later session."""
        names = [s for s in dict.fromkeys(symbols)]
        if action == "subscribe":
            names = [s for s in names if s not in self.symbols]
            self.symbols.extend(names)
        elif action == "unsubscribe":
            names = [s for s in names if s in self.symbols]
            self.symbols = [s for s in self.symbols if s not in names]
        else:
            raise ValueError(f"action must be subscribe or unsubscribe, got {action!r}")
        if not names or self.state not in ("subscribing", "streaming"):
            return []  # the first subscription message will carry self.symbols
        send = Send(subscription_message(action, names, self.channels))
        if self.state == "subscribing":  # the set sent before this change is not confirmed yet
            self.deferred.append(send)
            return []
        return [send]


class TradingSession:
    """One trading-stream session: auth at once -> authorized -> listen -> listening."""

    def __init__(self, streams: Sequence[str] = ("trade_updates",)) -> None:
        self.streams = tuple(streams)
        self.state = "authenticating"

    def opening(self) -> list[Action]:
        """Return what to send right after the connection opens (the venue sends no greeting)."""
        return [SendAuth()]

    def receive(self, message: Any) -> list[Action]:
        """Digest one decoded trading-stream message."""
        if not isinstance(message, Mapping):
            return []
        data = message.get("data")
        body: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        stream = message.get("stream")
        if stream == "authorization":
            if body.get("status") == "authorized":
                self.state = "listening"
                return [Send(listen_message(self.streams))]
            why = str(body.get("message") or body.get("status") or "unauthorized")
            if body.get("action") == "listen":
                return [Fail(VenueError(f"Alpaca refused listen ({why})"))]
            return [Fail(AuthError(f"Alpaca trading stream refused the key ({why}); {KEY_HINT}"))]
        if stream == "listening":
            self.state = "streaming"
            return [Ready({"streams": list(body.get("streams") or [])})]
        if message.get("action") == "error":
            text = str(body.get("error_message", "error"))
            return [Fail(VenueError(f"Alpaca trading stream error ({text})"))]
        return []


# -- routing frames to partitions --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Routed:
    """A frame (or a split-off part of one) and the partition whose raw stream it goes to."""

    partition: Partition
    data: str | bytes
    split: bool = False


def _partition_of(message: Any, venue: str, shards: int, first: Partition) -> Partition:
    if isinstance(message, Mapping) and message.get("T") not in CONTROL_TYPES:
        symbol = message.get("S")
        if isinstance(symbol, str) and symbol:
            return Partition(venue, shard_for(symbol, shards))
    return first


def route_frame(
    data: str | bytes, messages: Any, *, venue: str, shards: int, first: Partition
) -> list[Routed]:
    """Route one market-data frame whose decoded form is ``messages`` (see the module doc)."""
    if shards <= 1 or not isinstance(messages, list) or not messages:
        return [Routed(first, data)]
    targets = [_partition_of(m, venue, shards, first) for m in messages]
    if len(set(targets)) == 1:
        return [Routed(targets[0], data)]
    spans = element_spans(data)
    if len(spans) != len(targets):
        raise DecodeError("frame elements do not match its decoded messages")
    groups: dict[Partition, list[str | bytes]] = {}
    for target, span in zip(targets, spans, strict=True):
        groups.setdefault(target, []).append(span)
    out = []
    for target, parts in groups.items():
        if isinstance(data, str):
            joined: str | bytes = "[" + ",".join(str(p) for p in parts) + "]"
        else:
            joined = _array_header(len(parts)) + b"".join(p for p in parts if isinstance(p, bytes))
        out.append(Routed(target, joined, split=True))
    return out


def element_spans(data: str | bytes) -> list[str | bytes]:
    """Return the exact text (JSON) or bytes (msgpack) of each element of a top-level array."""
    if isinstance(data, str):
        return list(_json_spans(data))
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    try:
        count = unpacker.read_array_header()
        spans: list[str | bytes] = []
        for _ in range(count):
            start = unpacker.tell()
            unpacker.skip()
            spans.append(data[start : unpacker.tell()])
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"not a msgpack array: {exc}") from None
    return spans


def _json_spans(text: str) -> list[str]:
    start = text.find("[")
    if start < 0:
        raise DecodeError("not a JSON array")
    spans: list[str] = []
    depth, in_string, escaped, begin = 0, False, False, -1
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth == 2 and begin < 0:
                begin = i
            continue
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                if begin >= 0:
                    spans.append(text[begin:i].strip())
                return spans
            continue
        elif ch == "," and depth == 1:
            spans.append(text[begin:i].strip())
            begin = -1
            continue
        if depth == 1 and begin < 0 and not ch.isspace():
            begin = i
    raise DecodeError("unterminated JSON array")


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def check_keys(settings: Settings) -> None:
    """Raise :class:`ConfigError` unless both ALPACA_API_KEY and ALPACA_API_SECRET are set."""
    if not (settings.alpaca_api_key and settings.alpaca_api_secret):
        raise ConfigError(
            "TICKPIPE_VENUE=alpaca needs ALPACA_API_KEY and ALPACA_API_SECRET "
            "(Alpaca's market-data streams require a key pair)"
        )


def plan_links(settings: Settings) -> list[Link]:
    """Return the market-data link (first partition's raw) and the trading-stream link."""
    keys = settings.keys
    first = next(iter(settings.partitions()), Partition(VENUE, 0))
    data = Link(str(first), settings.alpaca_data_stream_url(), keys.raw(first), "market")
    trading = Link(
        f"{VENUE}:private",
        settings.alpaca_trading_url,
        keys.private_raw(VENUE),
        "private",
        private=True,
    )
    return [data, trading]
