"""Build IBKR order requests and read the gateway's answers (pure: no I/O, no clock).

* :func:`order_body` is the ``POST /iserver/account/{acct}/orders`` body of an intent: one
  ticket with the contract id, ``cOID`` = the intent's client order id (the gateway refuses a
  second order with the same one), ``orderType`` ``MKT``, ``LMT``, ``STP`` (``price`` is the
  stop price) or ``STOP_LIMIT`` (``price`` the limit, ``auxPrice`` the stop), ``tif`` ``DAY``
  (``IOC`` when the intent asks for it). :func:`order_refusal` says what it cannot take: a
  quote-quantity order (the gateway protocol this speaks documents no cash quantity), post-only,
  FOK.
* :func:`read_answer` reads what the gateway answers to an order or to a reply: the order
  (:class:`Placed`) or a confirmation question (:class:`Asked`, with its reply id and message
  ids); :func:`declined` names the questions that the allow-list
  (``TICKPIPE_IBKR_ALLOW_QUESTIONS``, message ids such as ``o163``) does not accept. Nothing
  else is ever answered "yes".
* :func:`classify` turns an HTTP answer into its body or the error it means: 401
  :class:`AuthError` (the brokerage session is not authenticated), 429 :class:`RateLimited`,
  5xx :class:`AmbiguousOutcome`, "Local order ID ... is already registered"
  :class:`DuplicateOrder` (the order exists: query it), "query /accounts first"
  :class:`AccountsFirst` (nothing was placed), 404 or "doesn't exist" :class:`OrderNotFound`,
  any other refusal :class:`OrderRejected`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tickpipe.common.errors import AmbiguousOutcome, OrderRejected, venue_refusal
from tickpipe.common.order_spec import intent_problem
from tickpipe.common.schema import OrderIntent

__all__ = [
    "AccountsFirst",
    "Asked",
    "Placed",
    "QuestionDeclined",
    "classify",
    "declined",
    "order_body",
    "order_refusal",
    "read_answer",
]


class AccountsFirst(OrderRejected):
    """The gateway wants ``GET /iserver/accounts`` before orders: nothing was placed."""


class QuestionDeclined(OrderRejected):
    """The gateway asked a question the allow-list does not accept: the order was dropped."""


@dataclass(frozen=True, slots=True)
class Placed:
    order_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Asked:
    reply_id: str
    message_ids: tuple[str, ...]
    texts: tuple[str, ...]


def _number(text: str) -> int | float:
    value = Decimal(text)
    return int(value) if value == value.to_integral_value() else float(value)


#: The intent's order type as the gateway names it.
_ORDER_TYPES = {"MARKET": "MKT", "LIMIT": "LMT", "STOP": "STP", "STOP_LIMIT": "STOP_LIMIT"}


def order_refusal(intent: OrderIntent) -> str | None:
    """Return why the gateway cannot take ``intent`` as it is, or ``None``."""
    problem = intent_problem(intent, "ibkr")
    if problem is not None:
        return problem
    if intent.order_type not in _ORDER_TYPES:
        return f"ibkr: no {intent.order_type} orders in the gateway protocol spoken here"
    if intent.quote_qty:
        return "ibkr: no quote-quantity orders (no cash quantity in the gateway protocol): use qty"
    if intent.post_only:
        return "ibkr: no post-only orders (Binance's LIMIT_MAKER has no gateway equivalent)"
    if intent.time_in_force == "FOK":
        return "ibkr: orders take GTC (sent as DAY) or IOC, not FOK"
    return None


def order_body(intent: OrderIntent, *, conid: int, account: str) -> dict[str, Any]:
    """Build the order body of ``intent`` (checked by :func:`order_refusal`) for ``conid``."""
    kind = _ORDER_TYPES[intent.order_type]
    ticket: dict[str, Any] = {
        "acctId": account,
        "conid": conid,
        "cOID": intent.client_order_id,
        "orderType": kind,
        "side": intent.side.upper(),
        "quantity": _number(intent.qty),
        "tif": "IOC" if intent.time_in_force == "IOC" else "DAY",
    }
    if kind == "STP":
        ticket["price"] = _number(intent.stop_price)
    elif kind in ("LMT", "STOP_LIMIT") and intent.price is not None:
        ticket["price"] = _number(intent.price)
    if kind == "STOP_LIMIT":
        ticket["auxPrice"] = _number(intent.stop_price)
    return {"orders": [ticket]}


def _error_text(body: Any) -> str:
    if isinstance(body, Mapping):
        return str(body.get("error") or body.get("message") or "")
    return ""


def classify(status: int, body: Any, *, retry_after_s: float) -> Any:
    """Return the body of a successful answer, or raise what the answer means (module doc)."""
    text = _error_text(body)
    if 200 <= status < 300:
        if text and isinstance(body, Mapping) and "order_id" not in body:
            raise OrderRejected(f"{text} (status {status})", status=status)
        return body
    described = f"{text or 'HTTP ' + str(status)} (status {status})"
    accounts_first = "/accounts first" in text
    raise venue_refusal(
        f"gateway session not authenticated: {described}" if status == 401 else described,
        status=status,
        auth=status == 401,
        retry_after_s=retry_after_s if status == 429 else None,
        ambiguous=status >= 500,
        duplicate="already registered" in text,
        not_found=(status == 404 or "doesn't exist" in text) and not accounts_first,
        otherwise=AccountsFirst if accounts_first else OrderRejected,
    )


def read_answer(body: Any) -> Placed | Asked:
    """Read the answer to an order or a reply: the order, or the next question."""
    first = body[0] if isinstance(body, list) and body else body
    if not isinstance(first, Mapping):
        raise AmbiguousOutcome(f"the order answer holds neither an order nor a question: {body!r}")
    if first.get("order_id") is not None:
        return Placed(str(first["order_id"]), str(first.get("order_status") or ""))
    if first.get("id") is not None and "message" in first:
        ids = first.get("messageIds") or []
        texts = first.get("message") or []
        return Asked(
            str(first["id"]),
            tuple(str(i) for i in ids) if isinstance(ids, list) else (),
            tuple(str(t) for t in texts) if isinstance(texts, list) else (str(texts),),
        )
    if first.get("error"):
        raise OrderRejected(str(first["error"]))
    raise AmbiguousOutcome(f"the order answer holds neither an order nor a question: {body!r}")


def declined(asked: Asked, allow: Iterable[str]) -> list[str]:
    """Return the questions of ``asked`` the allow-list does not accept (all when unnamed)."""
    allowed = set(allow)
    if not asked.message_ids:
        return list(asked.texts) or ["a question without a message id"]
    return [
        f"{mid}: {asked.texts[i] if i < len(asked.texts) else ''}".strip()
        for i, mid in enumerate(asked.message_ids)
        if mid not in allowed
    ]
