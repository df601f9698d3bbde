"""Load tickpipe's settings from the environment and ``.env``, rejecting what it does not know.

Only ``__main__`` modules call :func:`load_settings`; everything else receives a frozen
:class:`Settings`. Every variable that starts with ``TICKPIPE_``, and every key written in ``.env``,
must be a known setting: a typo is an error that names the key and the closest known one. Keys
``TICKPIPE_STRATEGY_<NAME>_<KEY>`` are a strategy's own settings: kept as text in
``Settings.strategy_settings`` and checked, with the same errors, by the strategy that declares them
(:mod:`processor.plugins`) when the processor builds its strategies. A line of
``.env`` that does not parse (an unterminated quote, no ``=``) or a file that is not UTF-8 is an
error naming the file and the line. Secrets are wrapped in :class:`Secret`, whose ``repr`` and
``str`` never show the value; one shorter than :data:`MIN_SECRET_CHARS` is refused, since masking
it in logs would either miss it or mangle ordinary text.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import socket
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values
from dotenv.parser import Binding, parse_stream

from tickpipe.common.channels import CHANNEL_FAMILIES, CHANNEL_NAMES, DIFF_DEPTH_CHANNELS
from tickpipe.common.decimals import finite_decimal
from tickpipe.common.errors import ConfigError
from tickpipe.common.names import Keys, Partition, partitions_for, shard_for

__all__ = [
    "ANY_SYMBOL",
    "CHANNEL_NAMES",
    "DEFAULT_ORDER_QTY",
    "KNOWN_KEYS",
    "MIN_SECRET_CHARS",
    "STRATEGY_PREFIX",
    "Secret",
    "Settings",
    "did_you_mean",
    "load_settings",
    "order_quantities",
]

PREFIX = "TICKPIPE_"

#: The key of :func:`order_quantities` for every symbol not named.
ANY_SYMBOL = "*"
#: The order size of a symbol that neither the bare value nor its own names.
FALLBACK_ORDER_QTY = "0.001"
#: ``TICKPIPE_ORDER_QTY`` unset: ETHUSDT at ~2,680 USDT needs 0.01 (26.8 USDT) to clear a
#: 5 USDT minimum notional with margin; BTCUSDT at ~61,800 clears it with 0.001 (61.8 USDT).
DEFAULT_ORDER_QTY = "0.001,ETHUSDT=0.01"
#: Settings a venue sizes its own way when the user left them unset. IBKR takes whole shares
#: (its Client Portal refuses a fraction): an order is one share and a position up to 100, where
#: the crypto-sized defaults would refuse every order, then every second one.
VENUE_DEFAULTS: dict[str, dict[str, str]] = {"ibkr": {"order_qty": "1", "max_position": "100"}}

#: Shortest secret accepted: anything shorter cannot be masked in logs without false matches.
MIN_SECRET_CHARS = 8


class Secret:
    """A secret string: masked in ``repr``, ``str`` and f-strings; ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class Settings:
    """Every setting of every stage, with defaults that run against the local mock exchange."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_url_set: bool = False
    given: frozenset[str] = frozenset()  # the fields the user set (the others: defaults)
    namespace: str = "tp"
    venue: str = "binance"
    symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
    #: Every venue of the deployment (``TICKPIPE_VENUES``); empty: ``venue`` alone.
    venues: tuple[str, ...] = ()
    #: Each venue's symbols when several venues run (``symbols`` is ``venue``'s).
    venue_symbols: tuple[tuple[str, tuple[str, ...]], ...] = ()
    shards: int = 1
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    log_level: str = "INFO"
    binance_ws_url: str = "ws://127.0.0.1:9443"
    binance_ws_api_url: str = "ws://127.0.0.1:9443/ws-api/v3"
    binance_rest_url: str = "http://127.0.0.1:9443"
    binance_api_key: Secret = field(default_factory=lambda: Secret(""))
    binance_api_secret: Secret = field(default_factory=lambda: Secret(""))
    alpaca_data_url: str = "ws://127.0.0.1:9444"
    alpaca_feed: str = "iex"
    alpaca_trading_url: str = "ws://127.0.0.1:9444/stream"
    alpaca_rest_url: str = "http://127.0.0.1:9444"
    #: extra CA file trusted for wss:// and https:// venue URLs (the mock's ca.pem); see common.tls
    ca_file: str | None = None
    alpaca_encoding: str = "msgpack"
    alpaca_api_key: Secret = field(default_factory=lambda: Secret(""))
    alpaca_api_secret: Secret = field(default_factory=lambda: Secret(""))
    ibkr_rest_url: str = "http://127.0.0.1:9445/v1/api"
    ibkr_ws_url: str = "ws://127.0.0.1:9445/v1/api/ws"
    ibkr_account: str = ""
    ibkr_verify_tls: bool = True
    ibkr_allow_questions: tuple[str, ...] = ()
    ibkr_rest_per_s: float = 4.0
    ibkr_penalty_s: float = 600.0
    thresholds: tuple[tuple[str, str], ...] = ()
    hysteresis_bps: str = "5"
    #: Order sizes: a bare value for every symbol, ``SYMBOL=QTY`` for one (see
    #: :func:`order_quantities`); the default keeps the mock's symbols above its 5 USDT minimum.
    order_qty: str = DEFAULT_ORDER_QTY
    #: At most how many frames a processor batch holds (about: reads are whole raw entries), and
    #: how many entries the trader and the archive read at once. A batch holds what has arrived,
    #: so a quiet feed gives small batches; under load, 1,000 rather than 500 gave the peer
    #: bench 3-4 % more trades per second (docs/benchmarks.md).
    batch_size: int = 1000
    health_interval_s: float = 1.0
    data_dir: str = ".tickpipe"
    bar_lateness_ms: int = 2000
    bar_revision_horizon_ms: int = 60_000
    max_event_ahead_ms: int = 10_000
    max_event_age_ms: int = 3_600_000
    empty_bars: str = "skip"
    strategies: tuple[str, ...] = ("threshold_cross",)
    strategy_max_failures: int = 10
    #: ``TICKPIPE_STRATEGY_<NAME>_<KEY>`` -> text, checked by the strategies that declare them.
    strategy_settings: tuple[tuple[str, str], ...] = ()
    rapid_move_pct: str = "0.5"
    rapid_move_window_ms: int = 1000
    retention_maxlen: tuple[tuple[str, int], ...] = (("*", 1_000_000),)
    max_position: str = "1"
    max_notional: str = "100000"
    max_orders_per_s: float = 5.0
    max_orders_in_flight: int = 32
    order_type: str = "MARKET"
    binance_key_type: str = "hmac"
    dashboard_port: int = 8050
    dashboard_token: Secret = field(default_factory=lambda: Secret(""))
    metrics_port: int = 0
    binance_conn_lifetime_s: float = 82_800.0
    ingestor_stale_max_s: float = 60.0
    #: The ingestor's WebSocket client, ``picows`` or ``websockets``; empty: picows if installed.
    ws_client: str = ""
    ingestor_journal_max_mb: int = 1024
    channels: tuple[str, ...] = ("trade", "bookTicker", "depth@100ms")
    trader_lease_ms: int = 5000
    reconcile_every_s: float = 60.0
    reconcile_lookback_s: float = 86_400.0
    price_band_bps: str = "100"
    max_price_age_s: float = 10.0
    #: The archive stage (``tickpipe archive``): on/off, where, and when its files roll.
    archive: bool = False
    archive_dir: str = ""  # "" = <data_dir>/archive
    archive_roll_mb: int = 64
    archive_roll_s: float = 60.0

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    def alpaca_data_stream_url(self) -> str:
        """The Alpaca market-data WebSocket URL of the configured feed."""
        return self.alpaca_data_url + ALPACA_FEEDS[self.alpaca_feed]

    def partitions(self) -> dict[Partition, list[str]]:
        return partitions_for(self.venue, self.symbols, self.shards)

    def partition_of(self, symbol: str, venue: str | None = None) -> Partition:
        """The partition ``symbol`` of ``venue`` (default: the primary venue) belongs to."""
        return Partition(venue or self.venue, shard_for(symbol, self.shards))

    def all_venues(self) -> tuple[str, ...]:
        """Every venue of the deployment, ``venue`` first when it is one of them."""
        return self.venues or (self.venue,)

    def for_venue(self, name: str) -> Settings:
        """These settings for one venue of the deployment: its symbols and thresholds only."""
        symbols = dict(self.venue_symbols).get(name)
        if symbols is None:
            symbols = self.symbols if name == self.venue else _DEFAULT_SYMBOLS.get(name, ())
        thresholds = tuple((s, level) for s, level in self.thresholds if s in symbols)
        return replace(
            self,
            venue=name,
            venues=(name,),
            symbols=symbols,
            venue_symbols=(),
            thresholds=thresholds,
            **_venue_defaults(name, self.given, self),
        )

    def threshold_for(self, symbol: str) -> str | None:
        return dict(self.thresholds).get(symbol)

    def order_qty_for(self, symbol: str) -> str:
        """The order size of ``symbol`` (its own ``SYMBOL=QTY``, else the bare value)."""
        sizes = order_quantities(self.order_qty)
        return sizes.get(symbol, sizes[ANY_SYMBOL])

    def secrets(self) -> list[str]:
        """Secret values to mask in every log line."""
        out = [
            s.reveal()
            for s in (
                self.binance_api_key, self.binance_api_secret,
                self.alpaca_api_key, self.alpaca_api_secret,
            )
            if s
        ]  # fmt: skip
        redis_password = urlsplit(self.redis_url).password
        if redis_password:
            out.append(unquote(redis_password))
        return out


# Environment key -> (Settings field, parser). Parsers raise ValueError with a readable reason.
def _symbols(text: str) -> tuple[str, ...]:
    """Symbols, each as ``SYMBOL`` or ``venue:SYMBOL`` (needed when several venues run)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        venue, sep, symbol = part.rpartition(":")
        symbol = symbol.strip().upper()
        if not symbol.replace("/", "").isalnum():
            raise ValueError(f"{symbol!r} is not a symbol (letters and digits only)")
        out.append(f"{venue.strip().lower()}:{symbol}" if sep else symbol)
    if not out:
        raise ValueError("give at least one symbol, e.g. BTCUSDT,ETHUSDT")
    return tuple(out)


def _venues(text: str) -> tuple[str, ...]:
    out = tuple(v.strip().lower() for v in text.split(",") if v.strip())
    if not out:
        raise ValueError("give at least one venue, e.g. binance,alpaca")
    if len(set(out)) != len(out):
        raise ValueError("a venue is named twice")
    return out


def _int_in(minimum: int, maximum: int | None, wording: str) -> Callable[[str], int]:
    """An integer from ``minimum`` (to ``maximum``); else ``must be <wording>``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"must be {wording}")
        return value

    return parse


_positive_int = _int_in(1, None, "a positive integer")
_non_negative_int = _int_in(0, None, "a non-negative integer")
_lease_ms = _int_in(300, None, "at least 300 (milliseconds)")


def _port(minimum: int) -> Callable[[str], int]:
    return _int_in(minimum, 65535, f"a port number from {minimum} to 65535")


def _one_of(*choices: str, case: Callable[[str], str] | None = None) -> Callable[[str], str]:
    """One of ``choices`` (the value stripped, then ``case``-folded if given)."""
    wording = f"{', '.join(choices[:-1])} or {choices[-1]}"

    def parse(text: str) -> str:
        value = case(text.strip()) if case else text.strip()
        if value not in choices:
            raise ValueError(f"must be {wording}")
        return value

    return parse


_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def _switch(*, empty: bool | None) -> Callable[[str], bool]:
    """1/0, true/false, yes/no or on/off; an empty value means ``empty`` (``None``: refused)."""

    def parse(text: str) -> bool:
        word = text.strip().lower()
        if word in _ON:
            return True
        if word in _OFF:
            return False
        if not word and empty is not None:
            return empty
        raise ValueError(f"must be 1/0, true/false, yes/no or on/off, got {text!r}")

    return parse


_on_off = _switch(empty=False)
_yes_no = _switch(empty=None)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _decimal(text: str) -> str:
    value = finite_decimal(text)
    if value is None:
        raise ValueError(f"{text!r} is not a number: give a finite, non-negative decimal")
    if value < 0:
        raise ValueError(f"{text!r} must be a finite, non-negative number")
    return text.strip()


def order_quantities(text: str) -> dict[str, str]:
    """Parse ``TICKPIPE_ORDER_QTY``: ``QTY`` (every symbol) and ``SYMBOL=QTY`` parts.

    Returns symbol -> quantity with :data:`ANY_SYMBOL` for the others (the bare value, else
    :data:`FALLBACK_ORDER_QTY`). Raises ``ValueError`` naming the part that is wrong.
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        symbol, sep, qty = part.rpartition("=")
        key = symbol.strip().upper() if sep else ANY_SYMBOL
        if sep and not key:
            raise ValueError(f"{part!r} should look like QTY or SYMBOL=QTY, e.g. ETHUSDT=0.01")
        if key in out:
            raise ValueError(f"{part!r}: {'every symbol' if key == ANY_SYMBOL else key} "
                             "is given twice")  # fmt: skip
        value = _decimal(qty)
        if not Decimal(value) > 0:
            raise ValueError(f"{part!r}: the quantity must be positive")
        out[key] = value
    if not out:
        raise ValueError("give QTY or SYMBOL=QTY pairs, e.g. 0.001,ETHUSDT=0.01")
    out.setdefault(ANY_SYMBOL, FALLBACK_ORDER_QTY)
    return out


def _order_qty(text: str) -> str:
    sizes = order_quantities(text)
    return ",".join(q if s == ANY_SYMBOL else f"{s}={q}" for s, q in sizes.items())


def _thresholds(text: str) -> tuple[tuple[str, str], ...]:
    out = []
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        symbol, sep, level = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} should look like SYMBOL=PRICE, e.g. BTCUSDT=61800")
        out.append((symbol.strip().upper(), _decimal(level)))
    return tuple(out)


def _url(*schemes: str):  # type: ignore[no-untyped-def]
    def parse(text: str) -> str:
        if not text.startswith(tuple(f"{s}://" for s in schemes)):
            raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)}")
        return text.rstrip("/")

    return parse


def _ca_file(text: str) -> str:
    from tickpipe.common.tls import check_ca_file

    return check_ca_file(text)


def _redis_url(text: str) -> str:
    from tickpipe.common.redis_io import check_redis_url

    try:
        check_redis_url(text)  # scheme, TLS and cluster parameters
    except ConfigError as exc:
        raise ValueError(str(exc).removeprefix("REDIS_URL: ")) from None
    return text.rstrip("/")


_level = _one_of("DEBUG", "INFO", "WARNING", "ERROR", case=str.upper)


def _namespace(text: str) -> str:
    Keys(text)  # validates
    return text


def _str(text: str) -> str:
    return text


_empty_bars = _one_of("skip", "carry", case=str.lower)


def _retention(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``N`` (every stream kind) or ``kind=N,...`` with ``*=N`` as the default."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = part.rpartition("=")
        out[kind.strip().lower() if sep else "*"] = _positive_int(value.strip())
    if not out:
        raise ValueError("give N or kind=N pairs, e.g. 1000000 or raw=5000000,*=1000000")
    out.setdefault("*", 1_000_000)
    return tuple(sorted(out.items()))


#: Prefix of the strategies' own settings, ``TICKPIPE_STRATEGY_<NAME>_<KEY>``.
STRATEGY_PREFIX = "TICKPIPE_STRATEGY_"
_STRATEGY_NAME = re.compile(r"[a-z][a-z0-9_]*")
_STRATEGY_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _strategy_names(text: str) -> tuple[str, ...]:
    """Names (``threshold_cross``) or ``module:Class`` paths; which exist is checked on load."""
    names: list[str] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name = part if ":" in part else part.lower()
        if not (_STRATEGY_PATH.fullmatch(name) or _STRATEGY_NAME.fullmatch(name)):
            raise ValueError(f"{part!r} is neither a strategy name nor a module:Class path")
        names.append(name)
    return tuple(dict.fromkeys(names))


_key_type = _one_of("hmac", "ed25519", case=str.lower)
_order_type = _one_of("MARKET", "LIMIT", case=str.upper)


def _channels(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
    if not names:
        raise ValueError(f"name at least one channel of: {CHANNEL_FAMILIES}")
    unknown = [n for n in names if n not in CHANNEL_NAMES]
    if unknown:
        shown = ", ".join(did_you_mean(n, CHANNEL_NAMES) for n in unknown)
        raise ValueError(f"unknown channel(s) {shown}; known: {CHANNEL_FAMILIES}")
    diffs = [n for n in names if n in DIFF_DEPTH_CHANNELS]
    if len(diffs) > 1:
        raise ValueError(
            f"{' and '.join(diffs)} both feed the order book from diffs; keep one of them "
            "(partial depth, depth5/10/20, may be added to either)"
        )
    return names


#: Alpaca market-data feeds and their stream paths.
ALPACA_FEEDS = {
    "iex": "/v2/iex", "sip": "/v2/sip", "test": "/v2/test", "crypto": "/v1beta3/crypto/us",
}  # fmt: skip


_alpaca_feed = _one_of(*ALPACA_FEEDS)


def _question_ids(text: str) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    for item in ids:
        if not (item[:1].isalpha() and item[1:].isdigit()):
            raise ValueError(f"{item!r} is not a question id (a letter and digits, e.g. o163)")
    return ids


_alpaca_encoding = _one_of("json", "msgpack")


_ws_client = _one_of("picows", "websockets", case=str.lower)


KNOWN_KEYS: dict[str, tuple[str, object]] = {
    "REDIS_URL": ("redis_url", _redis_url),
    "TICKPIPE_NAMESPACE": ("namespace", _namespace),
    "TICKPIPE_VENUE": ("venue", _str),
    "TICKPIPE_VENUES": ("venues", _venues),
    "TICKPIPE_SYMBOLS": ("symbols", _symbols),
    "TICKPIPE_SHARDS": ("shards", _positive_int),
    "TICKPIPE_INSTANCE": ("instance", _str),
    "TICKPIPE_LOG_LEVEL": ("log_level", _level),
    "TICKPIPE_BINANCE_WS_URL": ("binance_ws_url", _url("ws", "wss")),
    "TICKPIPE_BINANCE_WS_API_URL": ("binance_ws_api_url", _url("ws", "wss")),
    "TICKPIPE_BINANCE_REST_URL": ("binance_rest_url", _url("http", "https")),
    "BINANCE_API_KEY": ("binance_api_key", Secret),
    "BINANCE_API_SECRET": ("binance_api_secret", Secret),
    "ALPACA_API_KEY": ("alpaca_api_key", Secret),
    "ALPACA_API_SECRET": ("alpaca_api_secret", Secret),
    "TICKPIPE_ALPACA_DATA_URL": ("alpaca_data_url", _url("ws", "wss")),
    "TICKPIPE_ALPACA_FEED": ("alpaca_feed", _alpaca_feed),
    "TICKPIPE_ALPACA_TRADING_URL": ("alpaca_trading_url", _url("ws", "wss")),
    "TICKPIPE_ALPACA_REST_URL": ("alpaca_rest_url", _url("http", "https")),
    "TICKPIPE_ALPACA_ENCODING": ("alpaca_encoding", _alpaca_encoding),
    "TICKPIPE_CA_FILE": ("ca_file", _ca_file),
    "TICKPIPE_IBKR_REST_URL": ("ibkr_rest_url", _url("http", "https")),
    "TICKPIPE_IBKR_WS_URL": ("ibkr_ws_url", _url("ws", "wss")),
    "TICKPIPE_IBKR_ACCOUNT": ("ibkr_account", _str),
    "TICKPIPE_IBKR_VERIFY_TLS": ("ibkr_verify_tls", _yes_no),
    "TICKPIPE_IBKR_ALLOW_QUESTIONS": ("ibkr_allow_questions", _question_ids),
    "TICKPIPE_IBKR_REST_PER_S": ("ibkr_rest_per_s", _positive_float),
    "TICKPIPE_IBKR_PENALTY_S": ("ibkr_penalty_s", _positive_float),
    "TICKPIPE_THRESHOLDS": ("thresholds", _thresholds),
    "TICKPIPE_HYSTERESIS_BPS": ("hysteresis_bps", _decimal),
    "TICKPIPE_ORDER_QTY": ("order_qty", _order_qty),
    "TICKPIPE_BATCH_SIZE": ("batch_size", _positive_int),
    "TICKPIPE_HEALTH_INTERVAL_S": ("health_interval_s", _positive_float),
    "TICKPIPE_DATA_DIR": ("data_dir", _str),
    "TICKPIPE_BAR_LATENESS_MS": ("bar_lateness_ms", _non_negative_int),
    "TICKPIPE_BAR_REVISION_HORIZON_MS": ("bar_revision_horizon_ms", _non_negative_int),
    "TICKPIPE_MAX_EVENT_AHEAD_MS": ("max_event_ahead_ms", _positive_int),
    "TICKPIPE_MAX_EVENT_AGE_MS": ("max_event_age_ms", _positive_int),
    "TICKPIPE_EMPTY_BARS": ("empty_bars", _empty_bars),
    "TICKPIPE_STRATEGIES": ("strategies", _strategy_names),
    "TICKPIPE_STRATEGY_MAX_FAILURES": ("strategy_max_failures", _positive_int),
    "TICKPIPE_RAPID_MOVE_PCT": ("rapid_move_pct", _decimal),
    "TICKPIPE_RAPID_MOVE_WINDOW_MS": ("rapid_move_window_ms", _positive_int),
    "TICKPIPE_RETENTION_MAXLEN": ("retention_maxlen", _retention),
    "TICKPIPE_MAX_POSITION": ("max_position", _decimal),
    "TICKPIPE_MAX_NOTIONAL": ("max_notional", _decimal),
    "TICKPIPE_MAX_ORDERS_PER_S": ("max_orders_per_s", _positive_float),
    "TICKPIPE_MAX_ORDERS_IN_FLIGHT": ("max_orders_in_flight", _positive_int),
    "TICKPIPE_ORDER_TYPE": ("order_type", _order_type),
    "TICKPIPE_BINANCE_KEY_TYPE": ("binance_key_type", _key_type),
    "TICKPIPE_DASHBOARD_PORT": ("dashboard_port", _port(1)),
    "TICKPIPE_DASHBOARD_TOKEN": ("dashboard_token", Secret),
    "TICKPIPE_METRICS_PORT": ("metrics_port", _port(0)),
    "TICKPIPE_BINANCE_CONN_LIFETIME_S": ("binance_conn_lifetime_s", _positive_float),
    "TICKPIPE_INGESTOR_STALE_MAX_S": ("ingestor_stale_max_s", _positive_float),
    "TICKPIPE_WS_CLIENT": ("ws_client", _ws_client),
    "TICKPIPE_INGESTOR_JOURNAL_MAX_MB": ("ingestor_journal_max_mb", _non_negative_int),
    "TICKPIPE_CHANNELS": ("channels", _channels),
    "TICKPIPE_TRADER_LEASE_MS": ("trader_lease_ms", _lease_ms),
    "TICKPIPE_RECONCILE_EVERY_S": ("reconcile_every_s", _positive_float),
    "TICKPIPE_RECONCILE_LOOKBACK_S": ("reconcile_lookback_s", _positive_float),
    "TICKPIPE_PRICE_BAND_BPS": ("price_band_bps", _decimal),
    "TICKPIPE_MAX_PRICE_AGE_S": ("max_price_age_s", _positive_float),
    "TICKPIPE_ARCHIVE": ("archive", _on_off),
    "TICKPIPE_ARCHIVE_DIR": ("archive_dir", _str),
    "TICKPIPE_ARCHIVE_ROLL_MB": ("archive_roll_mb", _positive_int),
    "TICKPIPE_ARCHIVE_ROLL_S": ("archive_roll_s", _positive_float),
}

_SUPPORTED_VENUES = {"binance", "alpaca", "ibkr"}
_DEFAULT_SYMBOLS = {
    "binance": ("BTCUSDT", "ETHUSDT"), "alpaca": ("FAKEPACA",), "ibkr": ("AAPL",),
}  # fmt: skip


def _default_of(venue: str, name: str) -> Any:
    """The value of setting ``name`` on ``venue`` when nobody set it."""
    own = VENUE_DEFAULTS.get(venue, {})
    return own[name] if name in own else Settings.__dataclass_fields__[name].default


def _venue_defaults(
    venue: str, given: frozenset[str], current: Settings | None = None
) -> dict[str, Any]:
    """The values of :data:`VENUE_DEFAULTS`' fields the user did not set, for ``venue``.

    With ``current`` (settings moving to another venue), a field keeps a value that is not its
    venue's default: one set in code (``Settings(order_qty=...)``) rather than read from the
    environment is kept as given, too.
    """
    fields = {name for defaults in VENUE_DEFAULTS.values() for name in defaults} - given
    return {
        name: _default_of(venue, name)
        for name in fields
        if current is None or getattr(current, name) == _default_of(current.venue, name)
    }


def _namespaced(key: str) -> bool:
    """Tell whether ``key`` is a strategy's own setting (checked when strategies are built)."""
    return key.startswith(STRATEGY_PREFIX) and key not in KNOWN_KEYS


def _unknown(keys: list[str]) -> str:
    parts = []
    for key in sorted(keys):
        parts.append(did_you_mean(key, KNOWN_KEYS))
    return ", ".join(parts)


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """Return ``key``, followed by ``(did you mean X?)`` for the closest of ``known``."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"{key} (did you mean {close[0]}?)" if close else key


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    dotenv_path: str | Path | None = ".env",
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from ``.env`` (lowest), the environment, then ``overrides`` (highest)."""
    env = dict(os.environ if environ is None else environ)
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        path = Path(dotenv_path)
        file_values = read_dotenv(path)
        unknown = [k for k in file_values if k not in KNOWN_KEYS and not _namespaced(k)]
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {_unknown(unknown)}")
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH) and any(k in file_values for k in _secret_keys()):
            import logging

            logging.getLogger("tickpipe.settings").warning(
                "%s holds secrets and is readable by other users; run: chmod 600 %s", path, path
            )
        merged.update(file_values)
    unknown = [
        k for k in env if k.startswith(PREFIX) and k not in KNOWN_KEYS and not _namespaced(k)
    ]
    if unknown:
        raise ConfigError(f"unknown environment setting(s) {_unknown(unknown)}")
    merged.update({k: v for k, v in env.items() if k in KNOWN_KEYS or _namespaced(k)})
    merged.update(overrides or {})
    namespaced = {k: merged.pop(k) for k in list(merged) if _namespaced(k)}

    values: dict[str, object] = {}
    for key, text in merged.items():
        name, parse = KNOWN_KEYS[key]
        try:
            values[name] = parse(text)  # type: ignore[operator]
        except ValueError as exc:
            raise ConfigError(f"{key}={_shown(key, text)}: {exc}") from None
    _check_secret_lengths(merged)
    given = frozenset(values)
    if "redis_url" in values:
        values["redis_url_set"] = True
    values["strategy_settings"] = tuple(sorted(namespaced.items()))
    _venues_and_symbols(values)
    values["given"] = given
    values.update(_venue_defaults(str(values["venue"]), given))
    settings = Settings(**values)  # type: ignore[arg-type]
    every_symbol = {s for _, symbols in settings.venue_symbols for s in symbols}
    unknown_levels = [s for s, _ in settings.thresholds if s not in every_symbol]
    if unknown_levels:
        raise ConfigError(
            f"TICKPIPE_THRESHOLDS names {unknown_levels} which are not in TICKPIPE_SYMBOLS"
        )
    if "order_qty" in settings.given:  # the built-in sizes may name symbols not traded here
        sized = sorted(set(order_quantities(settings.order_qty)) - {ANY_SYMBOL} - every_symbol)
        if sized:
            raise ConfigError(f"TICKPIPE_ORDER_QTY names {sized} which are not in TICKPIPE_SYMBOLS")
    return settings


def _venues_and_symbols(values: dict[str, object]) -> None:
    """Settle ``venue``, ``venues``, ``symbols`` and ``venue_symbols`` in ``values``.

    ``TICKPIPE_VENUES`` names every venue of the deployment (``TICKPIPE_VENUE``, if given, must be
    one of them and comes first; else the first one is the primary venue). A symbol of
    ``TICKPIPE_SYMBOLS`` may name its venue (``alpaca:FAKEPACA``); one that does not is the
    primary venue's. A venue given no symbol trades its default symbols.
    """
    given = values.get("venues")
    venue = str(values.get("venue") or (given[0] if isinstance(given, tuple) else "binance"))
    venues: tuple[str, ...] = given if isinstance(given, tuple) else (venue,)
    for name in (venue, *venues):
        if name not in _SUPPORTED_VENUES:
            key = "TICKPIPE_VENUES" if name in venues and given else "TICKPIPE_VENUE"
            raise ConfigError(f"{key}={name}: supported venues are {sorted(_SUPPORTED_VENUES)}")
    if venue not in venues:
        raise ConfigError(
            f"TICKPIPE_VENUE={venue} is not one of TICKPIPE_VENUES={','.join(venues)}"
        )
    venues = (venue, *(v for v in venues if v != venue))
    per: dict[str, list[str]] = {}
    plain: list[str] = []
    for entry in values.get("symbols") or ():  # type: ignore[attr-defined]
        name, sep, symbol = str(entry).rpartition(":")
        if not sep:
            plain.append(symbol)
        elif name not in venues:
            raise ConfigError(
                f"TICKPIPE_SYMBOLS: {entry}: {name} is not a venue of this deployment "
                f"({','.join(venues)})"
            )
        else:
            per.setdefault(name, []).append(symbol)
    if plain:  # a symbol that names no venue is the primary venue's
        per.setdefault(venue, []).extend(plain)
    symbols = {v: tuple(per.get(v) or _DEFAULT_SYMBOLS[v]) for v in venues}
    values.update(
        venue=venue,
        venues=venues,
        symbols=symbols[venue],
        venue_symbols=tuple(symbols.items()),
    )


def read_dotenv(path: Path) -> dict[str, str]:
    """Return the settings written in the dotenv file ``path``.

    Raises :class:`ConfigError` naming the file and line for text that is not UTF-8 and for a
    line python-dotenv would skip with only a warning (an unterminated quote, no ``=``, no name).
    Values are never shown in the message: the line may hold a secret.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8"
        ) from None
    for binding in parse_stream(io.StringIO(text)):
        problem = _dotenv_problem(binding)
        if problem is not None:
            original = binding.original.string
            blank = original[: len(original) - len(original.lstrip())].count("\n")
            raise ConfigError(f"{path}:{binding.original.line + blank}: {problem}")
    values = dotenv_values(stream=io.StringIO(text))
    return {k: v for k, v in values.items() if v is not None}


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _dotenv_problem(binding: Binding) -> str | None:
    """Say what is wrong with one parsed dotenv line, or ``None`` when it is fine."""
    if not binding.error:
        if binding.key is not None and binding.value is None:
            return f"{binding.key} has no '=' (write {binding.key}=VALUE)"
        return None
    line = binding.original.string.strip().split("\n", 1)[0].removeprefix("export ").strip()
    name, sep, value = line.partition("=")
    name = name.strip()
    if not sep:
        return "no '=' on this line (write NAME=VALUE)"
    if not name:
        return "no name before '=' (write NAME=VALUE)"
    if not _NAME.fullmatch(name):
        return f"{name[:40]!r} is not a valid name (letters, digits and _)"
    if value.strip()[:1] in ("'", '"'):
        return f"unterminated quote in the value of {name} (close it on the same line)"
    return f"cannot parse the value of {name} (write {name}=VALUE, quoted if it has spaces)"


def _check_secret_lengths(merged: Mapping[str, str]) -> None:
    """Refuse a secret too short to mask in logs (the value is never shown)."""
    for key in _secret_keys():
        if 0 < len(merged.get(key, "")) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"{key}: too short to keep out of logs; a secret needs at least "
                f"{MIN_SECRET_CHARS} characters"
            )
    password = urlsplit(merged.get("REDIS_URL", "")).password
    if password and len(unquote(password)) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"REDIS_URL: the password is too short to keep out of logs; use at least "
            f"{MIN_SECRET_CHARS} characters"
        )


def _secret_keys() -> list[str]:
    return [k for k, (_, parse) in KNOWN_KEYS.items() if parse is Secret]


def _shown(key: str, text: str) -> str:
    if key == "REDIS_URL":  # may hold user:password@
        from tickpipe.common.redis_io import redacted

        return repr(redacted(text))
    return "***" if key in _secret_keys() else repr(text)
