"""Send, look up, cancel and list IBKR orders through the gateway: the trader's adapter.

At most one order per intent: ``POST /iserver/account/{acct}/orders`` once, with ``cOID`` = the
intent's client order id, which the gateway keeps unique ("Local order ID ... is already
registered": the order exists, query it). The gateway may answer with confirmation questions; each
is answered ``{"confirmed": true}`` on ``/iserver/reply/{id}`` only when every message id it names
is in ``TICKPIPE_IBKR_ALLOW_QUESTIONS``; otherwise it is answered ``false`` (so the gateway drops
the ticket), logged, dead-lettered with the question's text, and the intent is rejected
(:class:`~venues.ibkr.orders.QuestionDeclined`). A timeout, a dropped connection or a 5xx on the
order or on a reply means the order may exist: it is resolved by looking it up by ``cOID``
(``order_ref``) in ``/iserver/account/orders``, then in ``/iserver/account/trades``, never by
sending again while it may exist. An intent the gateway has no order of (never placed: a trader
killed with it queued behind the gateway's pace, a request refused unexecuted) is placed under its
``cOID`` once by the trader's core (``unique_client_ids``: a copy that did arrive makes the gateway
refuse the second), unless it is older than ``TICKPIPE_MAX_PRICE_AGE_S``. A 401 (the brokerage
session expired or was taken) means the gateway did nothing: the request waits for the session to
be authenticated again and is sent once more (counter ``session_waits``). Cancel is ``DELETE
/iserver/account/{acct}/order/{orderId}``. ``/iserver/account/orders`` is paced by the gateway (1
request per 5 s): lookups share one answer while it is fresh, but a lookup reads only an answer
fetched after the order (or its last reply) was sent, never one that could predate the order at the
gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import Any

from tickpipe.common.errors import (
    AmbiguousOutcome,
    AuthError,
    OrderNotFound,
    OrderRejected,
    VenueUnavailable,
)
from tickpipe.common.schema import OrderIntent
from tickpipe.common.settings import Settings
from tickpipe.venues.adapters import Request, RestOrders
from tickpipe.venues.ibkr.orders import (
    AccountsFirst,
    Asked,
    QuestionDeclined,
    classify,
    declined,
    order_body,
    order_refusal,
    read_answer,
)
from tickpipe.venues.ibkr.rest import IbkrRest
from tickpipe.venues.ibkr.wire import order_result

__all__ = ["IbkrOrders"]

log = logging.getLogger("tickpipe.trader")

DeadLetter = Callable[[Mapping[str, str]], Awaitable[None]]
#: Questions answered for one order at most (the gateway asks one at a time).
MAX_QUESTIONS = 10
#: How long one ``/iserver/account/orders`` answer serves lookups (the gateway's pace: 5 s).
ORDERS_FRESH_NS = 5_500_000_000
#: Seconds a request refused with 401 waits for the session to be authenticated again.
SESSION_WAIT_S = 20


@dataclass(eq=False)
class IbkrOrders(RestOrders):
    """The trader's requests to the gateway (see the module docstring)."""

    #: The gateway refuses a second order under a ``cOID`` it has ("already registered"): an
    #: intent it has no order of is placed again by the trader's core, never twice.
    unique_client_ids = True

    settings: InitVar[Settings]
    rest: IbkrRest
    _: KW_ONLY
    dead_letter: DeadLetter | None = None
    allow: tuple[str, ...] = field(init=False)
    account: str = field(init=False)
    _listed: tuple[int, list[dict[str, Any]]] | None = field(init=False, default=None)
    #: client order id -> when its order request last left (a lookup must be newer).
    _sent_at: dict[str, int] = field(init=False, default_factory=dict)
    counts: dict[str, int] = field(init=False)

    def __post_init__(self, settings: Settings) -> None:
        self.allow = tuple(settings.ibkr_allow_questions)
        self.account = settings.ibkr_account
        self.counts = {"questions_confirmed": 0, "questions_declined": 0, "session_waits": 0}

    async def _call(self, method: str, path: str, *, body: Any = None) -> Any:
        answer = await self.rest.request(method, path, body=body)
        if answer.status == 401:  # refused before anything was done: wait for the session
            await self._session_back(f"{method} {path}")
            answer = await self.rest.request(method, path, body=body)
        return classify(answer.status, answer.body, retry_after_s=1.0)

    async def _session_back(self, what: str) -> None:
        """Wait until the brokerage session is authenticated again (re-authenticate once).

        A 401 means the gateway acted on nothing (its session expired, or a competing login took
        it): the request is safe to send again once the session is back. One that stays
        unauthenticated for :data:`SESSION_WAIT_S` raises :class:`AuthError` (the user must log
        in in the gateway's page).
        """
        self.counts["session_waits"] += 1
        log.warning("IBKR session not authenticated; waiting for it", extra={"request": what})
        for attempt in range(SESSION_WAIT_S):
            if (await self.rest.auth_status()).get("authenticated"):
                await self.rest.accounts()  # the gateway wants it again before orders
                return
            if attempt == 0:
                await self.rest.reauthenticate()
            await asyncio.sleep(1.0)
        raise AuthError("the IBKR gateway session stays unauthenticated: log in in its web page")

    async def _account(self) -> str:
        if not self.account:  # not /iserver/accounts: the ingestor calls that one at its start
            accounts = await self.rest.portfolio_accounts()
            if not accounts:
                raise OrderRejected("the gateway lists no account: set TICKPIPE_IBKR_ACCOUNT")
            self.account = accounts[0]
        return self.account

    # -- order types -----------------------------------------------------------------------------
    def order_refusal(self, intent: OrderIntent) -> str | None:
        """Why the gateway cannot take ``intent`` as it is (:func:`orders.order_refusal`)."""
        return order_refusal(intent)

    # -- place -----------------------------------------------------------------------------------
    def placer(self, intent: OrderIntent) -> Request:
        async def place() -> dict[str, Any]:
            account = await self._account()
            conid = (await self.rest.conids_of([intent.symbol]))[intent.symbol]
            body = order_body(intent, conid=conid, account=account)
            path = f"/iserver/account/{account}/orders"
            self._sent_at[intent.client_order_id] = self.clock()
            try:
                answer = await self._call("POST", path, body=body)
            except AccountsFirst:  # nothing placed: call accounts as the gateway asks, once
                await self.rest.accounts()
                answer = await self._call("POST", path, body=body)
            for _ in range(MAX_QUESTIONS):
                read = read_answer(answer)
                if not isinstance(read, Asked):
                    return self._placed(intent, read.order_id)
                refused = declined(read, self.allow)
                if refused:
                    await self._decline(intent, read, refused)
                self.counts["questions_confirmed"] += 1
                log.info(
                    "IBKR question confirmed (allow-listed)",
                    extra={
                        "client_order_id": intent.client_order_id,
                        "message_ids": list(read.message_ids),
                    },
                )
                self._sent_at[intent.client_order_id] = self.clock()
                answer = await self._call(
                    "POST", f"/iserver/reply/{read.reply_id}", body={"confirmed": True}
                )
            raise AmbiguousOutcome(f"more than {MAX_QUESTIONS} questions for one order")

        return place

    async def _decline(self, intent: OrderIntent, asked: Asked, refused: list[str]) -> None:
        self.counts["questions_declined"] += 1
        reason = (
            f"IBKR asked {'; '.join(refused)} -- not in TICKPIPE_IBKR_ALLOW_QUESTIONS: "
            "the order was not confirmed"
        )
        log.warning(reason, extra={"client_order_id": intent.client_order_id})
        try:
            await self._call("POST", f"/iserver/reply/{asked.reply_id}", body={"confirmed": False})
        except (OrderRejected, AmbiguousOutcome, VenueUnavailable) as exc:
            log.warning("declining the question failed: %s", exc)
        if self.dead_letter is not None:
            await self.dead_letter(
                {
                    "reason": reason,
                    "client_order_id": intent.client_order_id,
                    "signal_id": intent.signal_id,
                    "message_ids": ",".join(asked.message_ids),
                    "questions": " | ".join(asked.texts),
                }
            )
        raise QuestionDeclined(reason)

    def _placed(self, intent: OrderIntent, order_id: str) -> dict[str, Any]:
        """The order as just accepted (its fills arrive by ``sor``, lookups and reconciling)."""
        return {
            "symbol": intent.symbol,
            "clientOrderId": intent.client_order_id,
            "orderId": order_id,
            "status": "NEW",
            "origQty": intent.qty,
            "executedQty": "0",
            "cummulativeQuoteQty": "0",
            "price": intent.price or "0",
            "side": intent.side.upper(),
            "type": intent.order_type,
            "updateTime": self.clock() // 1_000_000,
        }

    # -- status ----------------------------------------------------------------------------------
    async def _live(self, not_before_ns: int = 0) -> list[dict[str, Any]]:
        """The gateway's orders, from an answer fresh and fetched after ``not_before_ns``."""
        now = self.clock()
        if self._listed is not None:
            at, listed = self._listed
            if now - at < ORDERS_FRESH_NS and at > not_before_ns:
                return listed
        asked_at = self.clock()  # the answer is as old as the question, not as its arrival
        body = await self._call("GET", "/iserver/account/orders")
        orders = body.get("orders") if isinstance(body, dict) else None
        listed = [o for o in orders if isinstance(o, dict)] if isinstance(orders, list) else []
        self._listed = (asked_at, listed)
        return listed

    async def lookup(self, intent: OrderIntent) -> dict[str, Any]:
        sent = self._sent_at.get(intent.client_order_id, 0)
        for order in await self._live(not_before_ns=max(intent.ts_intent, sent)):
            if order.get("order_ref") == intent.client_order_id:
                return order_result(order)
        raise OrderNotFound(f"no order with cOID {intent.client_order_id} at the gateway")

    # -- cancel ----------------------------------------------------------------------------------
    async def canceller(self, intent: OrderIntent) -> Request:
        order_id = await self.order_id_of(intent.client_order_id)

        async def cancel() -> dict[str, Any]:
            nonlocal order_id
            if not order_id:
                order_id = str((await self.lookup(intent)).get("orderId", ""))
            account = await self._account()
            self._sent_at[intent.client_order_id] = self.clock()  # its lookup must be newer
            await self._call("DELETE", f"/iserver/account/{account}/order/{order_id}")
            return await self.lookup(intent)

        return cancel

    # -- reconcile -------------------------------------------------------------------------------
    async def list_open(self) -> list[dict[str, Any]] | None:
        results = [order_result(o) for o in await self._live()]
        return [r for r in results if r["status"] in ("NEW", "PARTIALLY_FILLED", "PENDING_CANCEL")]

    async def list_recent(self, since_ms: int) -> list[dict[str, Any]] | None:
        """The gateway lists the orders of the current day: those updated since ``since_ms``."""
        results = [order_result(o) for o in await self._live()]
        return [r for r in results if int(r["updateTime"]) >= since_ms or not r["updateTime"]]
