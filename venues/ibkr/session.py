"""Run the ingestor's side of the IBKR gateway WebSocket (pure: no I/O, no clock, no secrets).

The ingestor opens two sockets to the gateway, one for market data and one for the private
topics (``private=True``: ``sor``, ``str``, ``spl``); on each the client sends ``{"session":
<token from /tickle>}`` first (unless the upgrade carried the ``api`` cookie); an
unauthenticated socket says ``{"message": "waiting for session"}``. ``sts`` with
``authenticated: true`` (and ``system`` ``success``) means the session may subscribe:
``smd+<conid>+{"fields":[...]}`` per contract (market socket), or ``sor+{}``, ``str+{}`` and
``spl+{}`` (private socket). The gateway ends every ``smd`` subscription 10 minutes after it was
sent (since 2026-04-14) without a word, so each is sent again after ``resubscribe_s`` (9
minutes). ``tic`` is sent every ``keepalive_s`` and the market socket's shell is asked to ``POST
/tickle`` as often: a session without keep-alive expires silently. ``sts`` with ``authenticated:
false`` (expired, or a competing login) asks the shell to re-authenticate over REST; the gateway
has dropped the subscriptions, so they are all sent again once ``sts`` says authenticated. The
server's heartbeats (``system`` ``hb``, about every 10 s) come in as frames, so the timers
advance on frames (``ts_recv``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tickpipe.common.errors import VenueError
from tickpipe.common.links import Link
from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.common.units import NS_PER_S
from tickpipe.venues.ibkr.wire import MARKET_FIELDS

__all__ = [
    "KEEPALIVE_S",
    "RESUBSCRIBE_S",
    "VENUE",
    "Action",
    "Bulletin",
    "Fail",
    "GatewaySession",
    "Ready",
    "Reauthenticate",
    "Send",
    "Tickle",
    "check_keys",
    "plan_links",
    "smd_message",
]

VENUE = "ibkr"
KEEPALIVE_S = 55.0
#: Send ``smd`` again this long after the last time (the gateway ends it after 600 s).
RESUBSCRIBE_S = 540.0
PRIVATE_TOPICS = ("sor", "str", "spl")


@dataclass(frozen=True, slots=True)
class Send:
    """Send this text."""

    text: str


@dataclass(frozen=True, slots=True)
class Tickle:
    """``POST /tickle`` over REST (the session's keep-alive)."""


@dataclass(frozen=True, slots=True)
class Reauthenticate:
    """The gateway says the brokerage session is not authenticated: re-authenticate."""

    competing: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Ready:
    """Authenticated and subscribed: data may flow."""

    conids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Bulletin:
    """A bulletin or notification (``blt``, ``ntf``): kept raw and logged."""

    topic: str
    text: str


@dataclass(frozen=True, slots=True)
class Fail:
    """End the session with this error (reconnect with backoff)."""

    error: VenueError


Action = Send | Tickle | Reauthenticate | Ready | Bulletin | Fail


def smd_message(conid: int, fields: Sequence[str] = MARKET_FIELDS) -> str:
    """The ``smd`` subscribe text of one contract."""
    return f"smd+{conid}+" + orjson.dumps({"fields": list(fields)}).decode()


class GatewaySession:
    """One ``/v1/api/ws`` session (see the module docstring)."""

    def __init__(
        self,
        conids: Sequence[int],
        now_ns: int,
        *,
        keepalive_s: float = KEEPALIVE_S,
        resubscribe_s: float = RESUBSCRIBE_S,
        topics: Sequence[str] = (),
        tickles: bool = True,
    ) -> None:
        self.conids = list(dict.fromkeys(conids))
        self.topics = tuple(topics)
        #: This socket keeps the gateway session: it asks for /tickle and re-authentication.
        self.tickles = tickles
        self.keepalive_ns = int(keepalive_s * NS_PER_S)
        self.resubscribe_ns = int(resubscribe_s * NS_PER_S)
        self.state = "waiting"
        #: ``waiting for session`` messages seen: the gateway greets with one before it reads
        #: our session message; a second one means it refused the token.
        self.waits = 0
        self.subscribed_at: dict[int, int] = {}
        self.last_keepalive_ns = now_ns
        self.resubscriptions = 0
        self.reauthentications = 0
        self.last_heartbeat_ms = 0

    def _subscribe_all(self, now_ns: int) -> list[Action]:
        self.subscribed_at = dict.fromkeys(self.conids, now_ns)
        sends: list[Action] = [Send(smd_message(c)) for c in self.conids]
        sends += [Send(f"{topic}+{{}}") for topic in self.topics]
        return sends

    def receive(self, message: Any, now_ns: int) -> list[Action]:
        """Digest one decoded frame received at ``now_ns``; return the actions it calls for."""
        actions: list[Action] = []
        if isinstance(message, Mapping):
            actions += self._message(message, now_ns)
        actions += self.tick(now_ns)
        return actions

    def _message(self, message: Mapping[str, Any], now_ns: int) -> list[Action]:
        topic = message.get("topic")
        if topic is None and message.get("message") == "waiting for session":
            self.waits += 1
            if self.state == "streaming" or self.waits > 1:
                return [Fail(VenueError("the gateway does not accept the session token"))]
            return []
        if topic == "system" and "hb" in message:
            hb = message.get("hb")
            self.last_heartbeat_ms = hb if isinstance(hb, int) else self.last_heartbeat_ms
            return []
        if topic == "sts":
            args = message.get("args")
            args = args if isinstance(args, Mapping) else {}
            if args.get("authenticated") is True:
                if self.state == "streaming":
                    return []
                self.state = "streaming"
                return [*self._subscribe_all(now_ns), Ready(tuple(self.conids))]
            if args.get("authenticated") is False:
                self.state = "unauthenticated"
                self.subscribed_at.clear()
                self.reauthentications += 1
                if not self.tickles:  # the market socket's session re-authenticates
                    return []
                detail = str(args.get("message") or "")
                return [Reauthenticate(bool(args.get("competing")), detail)]
            return []
        if topic in ("blt", "ntf"):
            return [Bulletin(str(topic), orjson.dumps(message.get("args")).decode())]
        if isinstance(topic, str) and topic.startswith("smd+") and "error" in message:
            return [Fail(VenueError(f"{topic} refused: {message.get('error')}"))]
        return []

    def tick(self, now_ns: int) -> list[Action]:
        """Keep-alive and re-subscription due at ``now_ns``."""
        actions: list[Action] = []
        if now_ns - self.last_keepalive_ns >= self.keepalive_ns:
            self.last_keepalive_ns = now_ns
            actions.append(Send("tic"))
            if self.tickles:
                actions.append(Tickle())
        if self.state == "streaming":
            for conid, at in self.subscribed_at.items():
                if now_ns - at >= self.resubscribe_ns:
                    self.subscribed_at[conid] = now_ns
                    self.resubscriptions += 1
                    actions.append(Send(smd_message(conid)))
        return actions

    def change(self, action: str, conids: Sequence[int], now_ns: int) -> list[Action]:
        """Subscribe or unsubscribe contracts now (when streaming) and on every later session."""
        if action == "subscribe":
            fresh = [c for c in conids if c not in self.conids]
            self.conids.extend(fresh)
            if self.state != "streaming":
                return []
            for conid in fresh:
                self.subscribed_at[conid] = now_ns
            return [Send(smd_message(c)) for c in fresh]
        gone = [c for c in conids if c in self.conids]
        self.conids = [c for c in self.conids if c not in gone]
        for conid in gone:
            self.subscribed_at.pop(conid, None)
        return [Send(f"umd+{c}+{{}}") for c in gone] if self.state == "streaming" else []


def check_keys(settings: Settings) -> None:
    """The gateway holds the login (the user logs in through its web page): no key to check."""


def plan_links(settings: Settings) -> list[Link]:
    """Two sockets to the gateway: market data (``smd``) and the private topics (``sor``...)."""
    keys = settings.keys
    first = next(iter(settings.partitions()), Partition(VENUE, 0))
    market = Link(str(first), settings.ibkr_ws_url, keys.raw(first), "market")
    private = Link(
        f"{VENUE}:private", settings.ibkr_ws_url, keys.private_raw(VENUE), "private", private=True
    )
    return [market, private]
