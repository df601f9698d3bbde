"""Build Binance's signed WebSocket API order requests and classify its answers (pure, no I/O).

* :func:`place_params`, :func:`status_params`, :func:`cancel_params`,
  :func:`open_orders_params` and :func:`all_orders_params` build the signed requests;
  :func:`logon_params` the ``session.logon`` of an Ed25519 key.
* :func:`result_of` classifies an answer: the result, or one of the errors of
  :mod:`common.errors` (``OrderRejected``, ``DuplicateOrder``, ``OrderNotFound``,
  ``AmbiguousOutcome``...);
  :func:`order_wait_s` reads the venue's order counts and says how long to hold the next order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Required, TypedDict, Unpack

from tickpipe.common.errors import AmbiguousOutcome, OrderRejected, venue_refusal
from tickpipe.common.order_spec import intent_problem
from tickpipe.common.schema import OrderIntent
from tickpipe.venues.binance.wire import (
    AUTH_ERROR_CODES,
    RATE_LIMIT_CODES,
    hmac_signature,
    retry_after_s,
    ws_api_payload,
)

__all__ = [
    "DEFAULT_RECV_WINDOW_MS",
    "SignOptions",
    "all_orders_params",
    "cancel_params",
    "list_result_of",
    "logon_params",
    "open_orders_params",
    "order_refusal",
    "order_wait_s",
    "place_params",
    "result_of",
    "sign_params",
    "status_params",
    "venue_order_type",
]

DEFAULT_RECV_WINDOW_MS = 5000


# Binance error codes (protocols.md §2.3, §2.5).
_UNKNOWN_OUTCOME_CODES = frozenset({-1007, -1006})
_DUPLICATE_CODE = -2010
_NO_SUCH_ORDER_CODE = -2013
_UNKNOWN_ORDER_CODE = -2011  # cancel of an order the venue does not have (open)


# -- requests -----------------------------------------------------------------------------------
class SignOptions(TypedDict, total=False):
    """Name the keywords a request builder passes on to :func:`sign_params`."""

    api_key: Required[str]
    api_secret: Required[str]
    recv_window_ms: int
    signer: Callable[[str], str] | None
    session: bool


def sign_params(
    params: Mapping[str, Any],
    *,
    api_key: str,
    api_secret: str,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
    signer: Callable[[str], str] | None = None,
    session: bool = False,
) -> dict[str, Any]:
    """Add ``apiKey``, ``timestamp``, ``recvWindow`` and the ``signature`` to ``params``.

    ``signer`` signs the payload (default: HMAC with ``api_secret``). On a logged-on session
    (``session``) only ``timestamp`` and ``recvWindow`` are added.
    """
    signed = {**params, "timestamp": timestamp_ms, "recvWindow": recv_window_ms}
    if session:
        return signed
    signed["apiKey"] = api_key
    payload = ws_api_payload(signed)
    signed["signature"] = signer(payload) if signer else hmac_signature(api_secret, payload)
    return signed


def logon_params(
    *, api_key: str, timestamp_ms: int, signer: Callable[[str], str]
) -> dict[str, Any]:
    """Build the ``session.logon`` params, signed with the (Ed25519) ``signer``."""
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": timestamp_ms}
    params["signature"] = signer(ws_api_payload(params))
    return params


#: Binance's names of the stop types: a stop-loss triggers as the market moves against the order
#: (a buy when the last price rises to ``stopPrice``, a sell when it falls to it), a take-profit
#: the other way; both keep their names otherwise.
_STOP_TYPES = {"STOP": "STOP_LOSS", "STOP_LIMIT": "STOP_LOSS_LIMIT"}
_LIMIT_TYPES = frozenset({"LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
_TRIGGERED = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})


def venue_order_type(intent: OrderIntent) -> str:
    """Return Binance's order type for ``intent``: a post-only LIMIT order is ``LIMIT_MAKER``,
    a STOP one ``STOP_LOSS``, a STOP_LIMIT one ``STOP_LOSS_LIMIT``; TAKE_PROFIT(_LIMIT) keep
    their names."""
    if intent.order_type == "LIMIT" and intent.post_only:
        return "LIMIT_MAKER"
    return _STOP_TYPES.get(intent.order_type, intent.order_type)


def order_refusal(intent: OrderIntent) -> str | None:
    """Return why Binance Spot cannot take ``intent`` as it is, or ``None``.

    Spot has MARKET (by ``quantity`` or ``quoteOrderQty``), LIMIT with GTC/IOC/FOK, LIMIT_MAKER
    (post-only, which rests or is refused: it takes no time in force), STOP_LOSS,
    STOP_LOSS_LIMIT, TAKE_PROFIT and TAKE_PROFIT_LIMIT (with ``stopPrice``). Whether a symbol
    offers a type is in its ``orderTypes``, checked with the instrument filters.
    """
    return intent_problem(intent, "binance")


def place_params(
    intent: OrderIntent,
    *,
    timestamp_ms: int,
    time_in_force: str = "GTC",
    **sign: Unpack[SignOptions],
) -> dict[str, Any]:
    """Build the signed ``order.place`` params of ``intent`` (checked by :func:`order_refusal`).

    MARKET: ``quantity``, or ``quoteOrderQty`` for a quote-quantity order; LIMIT and the
    ``_LIMIT`` stops: ``timeInForce`` (the intent's, else ``time_in_force``: GTC, IOC or FOK) and
    ``price``; post-only: type ``LIMIT_MAKER`` with ``price`` and no ``timeInForce``; the stop
    and take-profit types: ``stopPrice``.
    """
    kind = venue_order_type(intent)
    params: dict[str, Any] = {
        "symbol": intent.symbol,
        "side": intent.side.upper(),
        "type": kind,
        "newClientOrderId": intent.client_order_id,
        "newOrderRespType": "RESULT",
    }
    if intent.quote_qty:
        params["quoteOrderQty"] = intent.quote_qty
    else:
        params["quantity"] = intent.qty
    if kind in _LIMIT_TYPES:
        params["timeInForce"] = intent.time_in_force or time_in_force
        params["price"] = intent.price
    elif kind == "LIMIT_MAKER":
        params["price"] = intent.price
    if kind in _TRIGGERED:
        params["stopPrice"] = intent.stop_price
    return sign_params(params, timestamp_ms=timestamp_ms, **sign)


def status_params(
    symbol: str, client_order_id: str, *, timestamp_ms: int, **sign: Unpack[SignOptions]
) -> dict[str, Any]:
    """Build the signed params that name an order by its client id.

    ``order.status`` (look it up) and ``order.cancel`` (cancel it, :func:`cancel_params`) take
    the same params.
    """
    return sign_params(
        {"symbol": symbol, "origClientOrderId": client_order_id}, timestamp_ms=timestamp_ms, **sign
    )


cancel_params = status_params  # ``order.cancel`` names the order as ``order.status`` does


def open_orders_params(
    *, timestamp_ms: int, symbol: str | None = None, **sign: Unpack[SignOptions]
) -> dict[str, Any]:
    """Build the signed ``openOrders.status`` params (every symbol unless ``symbol``)."""
    return sign_params({"symbol": symbol} if symbol else {}, timestamp_ms=timestamp_ms, **sign)


def all_orders_params(
    symbol: str,
    *,
    timestamp_ms: int,
    start_ms: int | None = None,
    from_order_id: int | None = None,
    limit: int = 1000,
    **sign: Unpack[SignOptions],
) -> dict[str, Any]:
    """Build the signed ``allOrders`` params: ``symbol``'s orders since a time or from an id."""
    params: dict[str, Any] = {"symbol": symbol, "limit": limit}
    if from_order_id is not None:
        params["orderId"] = from_order_id
    elif start_ms is not None:
        params["startTime"] = start_ms
    return sign_params(params, timestamp_ms=timestamp_ms, **sign)


# -- answers ------------------------------------------------------------------------------------
def result_of(response: Mapping[str, Any], *, now_ms: int | None = None) -> dict[str, Any]:
    """Return the ``result`` of a WebSocket API answer, or raise what the answer means.

    Raises :class:`AuthError` (bad key or signature), :class:`RateLimited` (429/418),
    :class:`AmbiguousOutcome` (5xx, ``-1007``: it may have happened), :class:`DuplicateOrder`
    (``-2010`` "Duplicate order sent."), :class:`OrderNotFound` (``-2013``) or
    :class:`OrderRejected` (any other refusal).
    """
    status = response.get("status")
    status = status if isinstance(status, int) else 0
    error = response.get("error")
    if 200 <= status < 300 and isinstance(response.get("result"), Mapping):
        return dict(response["result"])
    if not isinstance(error, Mapping):
        if status >= 500 or status == 0:
            raise AmbiguousOutcome(
                f"venue answered status {status} without a result", status=status
            )
        raise OrderRejected(f"venue answered status {status} without a result", status=status)
    code = error.get("code")
    code = code if isinstance(code, int) else None
    msg = str(error.get("msg", ""))
    text = f"{msg} (code {code}, status {status})"
    rate_limited = status in (429, 418) or code in RATE_LIMIT_CODES
    raise venue_refusal(
        text,
        code=code,
        status=status,
        auth=status == 401 or code in AUTH_ERROR_CODES,
        retry_after_s=retry_after_s(error, now_ms, unknown_s=1.0) if rate_limited else None,
        ambiguous=status >= 500 or code in _UNKNOWN_OUTCOME_CODES,
        duplicate=code == _DUPLICATE_CODE and "duplicate" in msg.lower(),
        not_found=code in (_NO_SUCH_ORDER_CODE, _UNKNOWN_ORDER_CODE),
    )


def list_result_of(response: Mapping[str, Any], *, now_ms: int | None = None) -> list[Any]:
    """Return the list ``result`` of an answer (``openOrders.status``), or raise as result_of."""
    status = response.get("status")
    if isinstance(status, int) and 200 <= status < 300 and isinstance(response.get("result"), list):
        return list(response["result"])
    if isinstance(status, int) and 200 <= status < 300:
        raise OrderRejected("venue answered without a list result", status=status)
    result_of(response, now_ms=now_ms)  # raises what the error means
    raise OrderRejected("venue answered without a list result", status=status)  # pragma: no cover


_INTERVAL_MS = {"SECOND": 1000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}


def order_wait_s(rate_limits: Any, now_ms: int) -> float:
    """Return how long to hold the next order given an answer's ``rateLimits`` (0 = go).

    An ``ORDERS`` window whose count has reached its limit holds orders until the window ends
    (windows are aligned to whole intervals since the epoch).
    """
    wait_ms = 0
    for limit in rate_limits if isinstance(rate_limits, list) else []:
        if not isinstance(limit, Mapping) or limit.get("rateLimitType") != "ORDERS":
            continue
        count, cap = limit.get("count"), limit.get("limit")
        unit = _INTERVAL_MS.get(str(limit.get("interval")))
        num = limit.get("intervalNum", 1)
        if not isinstance(count, int) or not isinstance(cap, int) or unit is None:
            continue
        if count >= cap:
            span = unit * (num if isinstance(num, int) and num > 0 else 1)
            wait_ms = max(wait_ms, span - now_ms % span)
    return wait_ms / 1000
