"""Talk to Binance's WebSocket API over one persistent connection, requests matched by id.

This is the trader's one boundary with ``websockets``: its exceptions become tickpipe's here.
A request that was written but whose answer does not arrive in time, or whose connection drops
before the answer, raises :class:`~common.errors.AmbiguousOutcome` (the order may exist). A request
that could not be written at all (no connection) raises :class:`VenueUnavailable`: it certainly
did not reach the venue. Answers are returned whole (``{"id","status","result"|"error"}``) for
:func:`venues.binance.orders.result_of` to classify.

It also keeps the venue's clock offset (:class:`~common.venue_clock.VenueClock`): on every
connect, before the session logs on, it times ``clock_samples`` ``time`` requests, and once every
``clock_every_s`` (or after a ``-1021`` answer: a stamp outside the receive window) one more in
the background. :attr:`BinanceWsApi.clock_offset_ns` corrects the stamps of signed requests; an
offset halfway to the venue's limits is logged as a warning, one past them as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import AmbiguousOutcome, AuthError, VenueUnavailable
from tickpipe.common.tls import ws_ssl
from tickpipe.common.units import MS
from tickpipe.common.venue_clock import ClockSample, VenueClock
from tickpipe.venues.binance.orders import order_wait_s

__all__ = ["BinanceWsApi", "Venue"]

log = logging.getLogger("tickpipe.trader")


class Venue(Protocol):
    """What the trader needs from a venue connection (tests inject a fake)."""

    async def place(self, params: dict[str, Any]) -> dict[str, Any]: ...

    async def status(self, params: dict[str, Any]) -> dict[str, Any]: ...

    async def cancel(self, params: dict[str, Any]) -> dict[str, Any]: ...

    async def open_orders(self, params: dict[str, Any]) -> dict[str, Any]: ...

    async def all_orders(self, params: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class BinanceWsApi:
    """A persistent, lazily opened connection to ``/ws-api/v3`` that reconnects with backoff."""

    def __init__(
        self,
        url: str,
        *,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        logon: Callable[[int], dict[str, Any]] | None = None,
        clock_samples: int = 4,
        clock_every_s: float = 300.0,
        recv_window_ms: int = 5000,
    ) -> None:
        self.url = url
        # Builds signed session.logon params stamped with the given venue time (ms); None = sign
        # every request.
        self.logon = logon
        self.venue_clock = VenueClock()
        self.clock_samples = clock_samples
        self.clock_every_s = clock_every_s
        self.recv_window_ms = recv_window_ms
        self._clock_due = 0.0  # monotonic time of the next background sample
        self._clock_task: asyncio.Task[None] | None = None
        self._clock_state = "unknown"
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.backoff = backoff or Backoff(base_s=0.1, cap_s=5.0)
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connected_at = 0.0
        self._lock = asyncio.Lock()
        self._blocked_until = 0.0  # monotonic time before which nothing is sent (429/418)
        self._orders_held_until = 0.0  # monotonic time before which no order is sent
        self.connects = 0

    async def connect(self) -> None:
        """Open the connection now (it is otherwise opened by the first request)."""
        await self._connection()

    @property
    def clock_offset_ns(self) -> int:
        """Return the venue's time minus ours, as estimated (0 before the first sample)."""
        return self.venue_clock.offset_ns

    def clock_figures(self) -> dict[str, Any]:
        """Return the venue clock estimate as health figures (``venue_clock_*``)."""
        return self.venue_clock.figures(self.recv_window_ms)

    async def _sample_clock(self, ws: ClientConnection, count: int) -> None:
        """Time ``count`` ``time`` requests and add them to the venue clock estimate."""
        self._clock_due = time.monotonic() + self.clock_every_s
        for _ in range(count):
            sent_ns = time.time_ns()
            try:
                answer = await self._call(ws, "time", {})
            except AmbiguousOutcome as exc:
                log.warning("venue time not sampled", extra={"error": str(exc)})
                return
            received_ns = time.time_ns()
            result = answer.get("result")
            venue_ms = result.get("serverTime") if isinstance(result, dict) else None
            if isinstance(venue_ms, int):
                self.venue_clock.add(ClockSample(sent_ns, venue_ms, received_ns))
        self._judge_clock()

    def _judge_clock(self) -> None:
        """Log the offset when its state changes: a warning when near the limits, an error past."""
        state = self.venue_clock.state(self.recv_window_ms)
        if state == self._clock_state:
            return
        self._clock_state = state
        offset_ms = self.venue_clock.offset_ns / MS
        extra = {
            "offset_ms": round(offset_ms, 3),
            "uncertainty_ms": round(self.venue_clock.uncertainty_ns / MS, 3),
            "recv_window_ms": self.recv_window_ms,
        }
        warning = self.venue_clock.warning(self.recv_window_ms)
        if warning is None:
            log.info("venue clock offset %+.1f ms", offset_ms, extra=extra)
            return
        log.log(logging.ERROR if state == "beyond" else logging.WARNING, warning, extra=extra)

    async def place(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send ``order.place``; return the venue's answer."""
        return await self.request("order.place", params)

    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send ``order.status``; return the venue's answer."""
        return await self.request("order.status", params)

    async def cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send ``order.cancel``; return the venue's answer."""
        return await self.request("order.cancel", params)

    async def open_orders(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send ``openOrders.status``; return the venue's answer."""
        return await self.request("openOrders.status", params)

    async def all_orders(self, params: dict[str, Any]) -> dict[str, Any]:
        """Send ``allOrders`` (a symbol's orders, open or closed); return the venue's answer."""
        return await self.request("allOrders", params)

    def hold_s(self, method: str) -> float:
        """Seconds to wait before sending ``method``: a 429/418 ban, or a full order window."""
        now = time.monotonic()
        until = self._blocked_until
        if method == "order.place":
            until = max(until, self._orders_held_until)
        return max(0.0, until - now)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for the answer with the same id.

        A request waits first while the venue asked us to (``retryAfter`` of a 429/418, or an
        ``ORDERS`` count at its limit for ``order.place``): it was not sent yet, so waiting is safe.
        """
        hold = self.hold_s(method)
        if hold > 0:
            log.warning(
                "holding request for the venue's rate limit",
                extra={"method": method, "wait_s": round(hold, 3)},
            )
            await asyncio.sleep(hold)
        ws = await self._connection()
        if time.monotonic() >= self._clock_due and (
            self._clock_task is None or self._clock_task.done()
        ):
            self._clock_task = asyncio.create_task(self._sample_clock(ws, 1), name="venue-clock")
        return await self._call(ws, method, params)

    async def _call(
        self, ws: ClientConnection, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        request_id = f"tp-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = orjson.dumps({"id": request_id, "method": method, "params": params}).decode()
        try:
            try:
                await ws.send(frame)
            except (WebSocketException, OSError) as exc:
                # A frame may leave partly written before the failure: treat it as ambiguous.
                raise AmbiguousOutcome(f"{method}: connection failed while sending: {exc}") from exc
            try:
                return await asyncio.wait_for(future, self.request_timeout_s)
            except TimeoutError:
                raise AmbiguousOutcome(
                    f"{method}: no answer within {self.request_timeout_s:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)

    async def _connection(self) -> ClientConnection:
        async with self._lock:
            if self._ws is not None and self._reader is not None and not self._reader.done():
                return self._ws
            deadline = time.monotonic() + self.connect_timeout_s
            while True:
                try:
                    ws = await connect(
                        self.url,
                        ssl=ws_ssl(self.url),
                        open_timeout=self.connect_timeout_s,
                        max_size=2**22,
                        # Orders and answers are small: deflating them only adds latency.
                        compression=None,
                    )
                except (WebSocketException, OSError, TimeoutError) as exc:
                    delay = self.backoff.next_delay_s()
                    if time.monotonic() + delay > deadline:
                        raise VenueUnavailable(
                            f"cannot connect to the WebSocket API at {self.url}: {exc}"
                        ) from exc
                    log.warning("venue connect failed, retrying", extra={"error": str(exc)})
                    await asyncio.sleep(delay)
                    continue
                self._ws = ws
                self._connected_at = time.monotonic()
                self.connects += 1
                self._reader = asyncio.create_task(self._read(ws), name="ws-api-reader")
                log.info("venue connected", extra={"url": self.url})
                await self._sample_clock(ws, self.clock_samples)
                if self.logon is not None:
                    await self._log_on(ws)
                return ws

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._receive(message)
        except (WebSocketException, OSError) as exc:
            log.warning("venue connection lost", extra={"error": str(exc)})
        finally:
            self.backoff.connection_ended(time.monotonic() - self._connected_at)
            for request_id, future in list(self._pending.items()):
                if not future.done():
                    future.set_exception(
                        AmbiguousOutcome(f"connection closed before the answer to {request_id}")
                    )

    def _receive(self, message: str | bytes) -> None:
        try:
            answer = orjson.loads(message)
        except orjson.JSONDecodeError:
            log.warning("venue sent a frame that is not JSON", extra={"size": len(message)})
            return
        if not isinstance(answer, dict):
            return
        self._note_limits(answer)
        error = answer.get("error")
        if isinstance(error, dict) and error.get("code") == -1021:
            self._clock_due = 0.0  # a stamp outside the window: sample the clock again
        future = self._pending.get(str(answer.get("id")))
        if future is not None and not future.done():
            future.set_result(answer)
        elif isinstance(answer.get("event"), dict):
            log.info("venue event", extra={"event_type": answer["event"].get("e")})
        else:
            log.warning(
                "venue answer matches no request",
                extra={"request_id": answer.get("id"), "status": answer.get("status")},
            )

    async def _log_on(self, ws: ClientConnection) -> None:
        """Log the session on (``session.logon``); a refusal is an :class:`AuthError`."""
        assert self.logon is not None
        try:
            stamp_ms = self.venue_clock.corrected(time.time_ns()) // MS
            answer = await self._call(ws, "session.logon", self.logon(stamp_ms))
        except AmbiguousOutcome as exc:
            await ws.close()
            raise VenueUnavailable(f"session.logon failed: {exc}") from exc
        if answer.get("status") != 200:
            await ws.close()
            found = answer.get("error")
            error: dict[str, Any] = found if isinstance(found, dict) else {}
            raise AuthError(
                f"session.logon refused: {error.get('msg', '')} (code {error.get('code')}); "
                "check BINANCE_API_KEY, BINANCE_API_SECRET and TICKPIPE_BINANCE_KEY_TYPE",
                code=error.get("code"),
                status=answer.get("status"),
            )
        log.info("venue session logged on")

    def _note_limits(self, answer: dict[str, Any]) -> None:
        """Remember how long the venue wants requests (or only orders) held."""
        now_ms = time.time_ns() // 1_000_000
        now = time.monotonic()
        wait_s = order_wait_s(answer.get("rateLimits"), now_ms)
        if wait_s > 0:
            self._orders_held_until = max(self._orders_held_until, now + wait_s)
        error = answer.get("error")
        if answer.get("status") in (429, 418) and isinstance(error, dict):
            data = error.get("data")
            retry_at = data.get("retryAfter") if isinstance(data, dict) else None
            ban_s = (retry_at - now_ms) / 1000 if isinstance(retry_at, int) else 1.0
            self._blocked_until = max(self._blocked_until, now + min(max(ban_s, 0.0), 3600.0))

    async def aclose(self) -> None:
        """Close the connection; pending requests fail as ambiguous."""
        ws, reader = self._ws, self._reader
        self._ws = self._reader = None
        if self._clock_task is not None:
            self._clock_task.cancel()
        if ws is not None:
            await ws.close()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
