"""Adapt the IBKR gateway's WebSocket to the ingestor: a market-data slot and a private slot.

Both slots share one REST client (one pacing budget). Before each connection
(:meth:`IbkrAdapter.prepare`) the REST side runs: ``POST /tickle`` (its ``session`` becomes the
socket's first message), re-authentication when the brokerage session is not authenticated,
``GET /iserver/accounts`` (the gateway wants it before market data), and the contract lookup
symbol -> conid (cached); the private slot only takes a fresh token. Frames go to raw streams as
received: on the market slot ``smd`` updates to the raw stream of their symbol's partition with
channel ``smd:<SYMBOL>`` (updates name only the conid), everything else (greeting, ``sts``,
heartbeats, ``tic`` answers, bulletins) to the first partition's raw stream; on the private slot
every frame (``sor``/``str``/``spl`` and the rest) to ``keys.private_raw("ibkr")``. Only the
market slot asks for ``/tickle``. Bulletins and notifications are logged. The pure session
(:mod:`venues.ibkr.session`) asks for ``tic``, ``/tickle``, re-subscriptions and
re-authentication; the REST calls it asks for run as tasks whose failures are logged and
counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from tickpipe.common.errors import VenueError
from tickpipe.common.links import (
    ConnectionTape,
    Link,
    Step,
    StreamTapes,
    changed_symbols,
    decoded_object,
)
from tickpipe.common.names import Partition, shard_for
from tickpipe.common.settings import Settings
from tickpipe.venues.ibkr.rest import IbkrRest, rest_from_settings
from tickpipe.venues.ibkr.session import (
    PRIVATE_TOPICS,
    VENUE,
    Action,
    Bulletin,
    Fail,
    GatewaySession,
    Ready,
    Reauthenticate,
    Send,
    Tickle,
)
from tickpipe.venues.ibkr.wire import symbol_channel

__all__ = ["IbkrAdapter", "ingest_adapters"]

log = logging.getLogger("tickpipe.ingestor")

#: How long prepare waits for a re-authentication to take before it gives the attempt up.
REAUTH_WAIT_S = 20.0


class IbkrAdapter:
    """One gateway slot, market data or private (see the module docstring)."""

    watch_liveness = True
    #: The gateway sends a heartbeat about every 10 s: a minute of silence is a dead socket.
    max_silence_s: float | None = 60.0

    def __init__(
        self,
        settings: Settings,
        link: Link,
        *,
        rest: IbkrRest | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.private = link.private
        self.settings = settings
        self.link = link
        self.url = link.url
        self.verify_tls = settings.ibkr_verify_tls  # the gateway's certificate is self-signed
        self.rest = rest or rest_from_settings(settings)
        self.clock = clock
        self.symbols = list(settings.symbols)
        self.partitions = list(settings.partitions()) or [Partition(VENUE, 0)]
        self.token = ""
        self.current: _Session | None = None
        self._outboxes: set[asyncio.Queue[str | bytes]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"tickles": 0, "reauthentications": 0, "rest_failures": 0, "bulletins": 0}

    def outboxes(self) -> set[asyncio.Queue[str | bytes]]:
        return self._outboxes

    def headers(self) -> dict[str, str]:
        return {}

    async def prepare(self) -> None:
        """Keep the session alive, authenticate it if needed, call accounts, look contracts up."""
        tickle = await self.rest.tickle()
        self.token = str(tickle.get("session") or "")
        if self.private:
            return
        status = tickle.get("iserver", {}).get("authStatus", {})
        if not (isinstance(status, dict) and status.get("authenticated")):
            await self._reauthenticate("the gateway session is not authenticated")
        else:
            await self.rest.accounts()
        await self.rest.conids_of(self.symbols)

    async def _reauthenticate(self, why: str) -> None:
        self.counts["reauthentications"] += 1
        log.warning("IBKR: %s; re-authenticating", why)
        await self.rest.reauthenticate()
        deadline = time.monotonic() + REAUTH_WAIT_S
        while time.monotonic() < deadline:
            status = await self.rest.auth_status()
            if status.get("authenticated"):
                log.info("IBKR: the gateway session is authenticated again")
                await self.rest.accounts()  # the gateway wants it again before market data
                return
            await asyncio.sleep(1.0)
        # Not fatal: gateways log out at their nightly reset too; the slot retries with backoff
        # (the reconnects count) and says what to do on every attempt.
        message = (
            "the IBKR gateway session stays unauthenticated: log in through the gateway's web "
            "page (or end the competing session); retrying"
        )
        log.error(message)
        raise VenueError(message)

    def new_session(self, conn: str) -> _Session:
        if self.private:
            core = GatewaySession([], self.clock(), topics=PRIVATE_TOPICS, tickles=False)
        else:
            conids = [self.rest.conids[s] for s in self.symbols if s in self.rest.conids]
            core = GatewaySession(conids, self.clock())
        self.current = _Session(self, conn, core)
        return self.current

    def change(self, action: str, symbols: list[str]) -> None:
        """Subscribe or unsubscribe ``symbols`` now and on every later session."""
        self.symbols = changed_symbols(self.symbols, action, symbols)
        self._spawn(self._change(action, symbols))

    async def _change(self, action: str, symbols: list[str]) -> None:
        conids = await self.rest.conids_of(symbols)
        if self.current is not None:
            actions = self.current.core.change(action, list(conids.values()), self.clock())
            self.broadcast(self.current.perform(actions))

    def broadcast(self, messages: list[str | bytes]) -> None:
        for outbox in self._outboxes:
            for message in messages:
                outbox.put_nowait(message)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a keep-alive or re-auth failed: logged, the next one retries
            self.counts["rest_failures"] += 1
            log.warning("IBKR REST call failed: %s", exc)

    def rest_call(self, action: Action) -> None:
        if isinstance(action, Tickle):
            self.counts["tickles"] += 1
            self._spawn(self.rest.tickle())
        elif isinstance(action, Reauthenticate):
            why = (
                "a competing session logged this one out"
                if action.competing
                else (f"the brokerage session is not authenticated ({action.detail or 'expired'})")
            )
            self._spawn(self._reauthenticate(why))


class _Session:
    """One socket: the pure core, a tape per raw stream, the private stream's tape."""

    def __init__(self, adapter: IbkrAdapter, conn: str, core: GatewaySession) -> None:
        self.adapter = adapter
        self.core = core
        settings = adapter.settings
        self.first = adapter.partitions[0]
        self.streams = {p: settings.keys.raw(p) for p in adapter.partitions}
        self.private_stream = settings.keys.private_raw(VENUE)
        if adapter.private:
            self.tapes = StreamTapes(conn, VENUE, "private", adapter.url, [self.private_stream])
        else:
            self.tapes = StreamTapes(conn, VENUE, "market", adapter.url, self.streams.values())
        self.symbol_of = {c: s for s, c in adapter.rest.conids.items()}

    @property
    def tape(self) -> ConnectionTape:
        if self.adapter.private:
            return self.tapes[self.private_stream]
        return self.tapes[self.streams[self.first]]

    def opening(self) -> list[str | bytes]:
        return [orjson.dumps({"session": self.adapter.token}).decode()]

    def perform(self, actions: list[Action]) -> list[str | bytes]:
        """Start the REST calls ``actions`` ask for; return the texts to send."""
        out: list[str | bytes] = []
        for action in actions:
            if isinstance(action, Send):
                out.append(action.text)
            else:
                self.adapter.rest_call(action)
        return out

    def _stream_of(self, message: dict[str, Any] | None) -> tuple[str, str, str | None]:
        """Return (raw stream, channel, liveness key) of a frame."""
        topic = message.get("topic") if message is not None else None
        if isinstance(topic, str) and topic.startswith("smd+"):
            try:
                symbol = self.symbol_of.get(int(topic[4:].split("@")[0]))
            except ValueError:
                symbol = None
            if symbol is not None:
                shards = self.adapter.settings.shards
                stream = self.adapter.settings.keys.raw(Partition(VENUE, shard_for(symbol, shards)))
                return stream, symbol_channel(symbol), topic
        if self.adapter.private:
            return self.private_stream, "private", None
        return self.streams[self.first], "market", "hb" if topic == "system" else None

    def receive(self, message: str | bytes, ts_recv: int) -> Step:
        step = Step()
        decoded = decoded_object(message)
        stream, channel, liveness = self._stream_of(decoded)
        tape = self.tapes.of(stream, step, ts_recv)
        frame = tape.frame(message, ts_recv)
        if channel != tape.channel:
            frame = dataclasses.replace(frame, channel=channel)
        step.items.append((stream, frame))
        step.stream = liveness
        if decoded is None:
            log.warning("IBKR frame is not a JSON object, kept as received")
            return step
        actions = self.core.receive(decoded, ts_recv)
        step.send = self.perform(actions)
        for action in actions:
            if isinstance(action, Fail):
                step.error = action.error
            elif isinstance(action, Ready):
                step.delivered = True
                log.info("IBKR subscribed", extra={"conids": list(action.conids)})
            elif isinstance(action, Bulletin):
                self.adapter.counts["bulletins"] += 1
                log.warning("IBKR %s: %s", action.topic, action.text[:500])
        if isinstance(decoded.get("topic"), str) and str(decoded["topic"]).startswith("smd+"):
            step.delivered = True
        return step


def ingest_adapters(settings: Settings, links: Sequence[Link]) -> list[Any]:
    """Return the market and private adapters for the links of
    :func:`venues.ibkr.session.plan_links`, sharing one REST client (one pacing budget)."""
    rest = rest_from_settings(settings)
    return [IbkrAdapter(settings, link, rest=rest) for link in links]
