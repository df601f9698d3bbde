"""Define the one error tree every tickpipe stage raises.

    TickpipeError
    ├── ConfigError            bad or unknown configuration; exit code 2
    ├── DecodeError            a frame or stream entry that cannot be parsed
    ├── RedisUnavailable       Redis cannot take it now: unreachable, or a refusal such as OOM
    │                          (translated from redis-py; ``condition`` names which)
    │   └── RedisLost          a held connection dropped mid-request (common.redis_link)
    ├── ScriptsRefused         the ACL refuses scripts: use WATCH/MULTI (common.redis_link)
    └── VenueError             the venue refused or failed a request
        ├── AuthError          bad API key or signature; fatal, never retried
        ├── RateLimited        429/418 or a WebSocket rate-limit answer; carries retry_after_s
        ├── AmbiguousOutcome   it may or may not have taken effect (timeout, 5xx, lost link)
        ├── VenueUnavailable   the venue could not be reached; the request was not sent
        ├── OrderRejected      the venue refused an order request for good
        ├── DuplicateOrder     an order with this client order id exists: query it, never resend
        └── OrderNotFound      the venue has no (open) order with this client order id

Outside exceptions (redis-py, websockets, aiohttp) are translated into these at one boundary per
dependency, so callers only ever catch ``TickpipeError`` subclasses. :func:`venue_refusal` is
the one order in which every venue's refusal is read: each venue module only says which of its
codes, statuses and messages mean what.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousOutcome",
    "AuthError",
    "ConfigError",
    "DecodeError",
    "DuplicateOrder",
    "OrderNotFound",
    "OrderRejected",
    "RateLimited",
    "RedisUnavailable",
    "TickpipeError",
    "VenueError",
    "VenueUnavailable",
    "venue_refusal",
]


class TickpipeError(Exception):
    """Root of every error tickpipe raises on purpose."""


class ConfigError(TickpipeError):
    """The configuration is wrong; the message names what to fix."""


class DecodeError(TickpipeError):
    """A frame or stream entry could not be parsed or failed validation."""


class RedisUnavailable(TickpipeError):
    """Redis could not be reached, or refused the command for now (``condition``: ``OOM``,
    ``BUSY``, ``LOADING``... or ``UNREACHABLE``); wait and retry."""

    def __init__(self, message: str, *, condition: str = "UNREACHABLE") -> None:
        super().__init__(message)
        self.condition = condition


class VenueError(TickpipeError):
    """The venue refused a request or answered with an error."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class AuthError(VenueError):
    """The venue rejected the API key or the signature."""


class RateLimited(VenueError):
    """The venue asked us to slow down; wait ``retry_after_s`` before the next request."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        code: int | None = None,
        status: int | None = None,
    ):
        super().__init__(message, code=code, status=status)
        self.retry_after_s = retry_after_s


class AmbiguousOutcome(VenueError):
    """The request may have taken effect; resolve by querying, never by resending."""


class VenueUnavailable(VenueError):
    """The venue could not be reached; the request was not sent."""


class OrderRejected(VenueError):
    """The venue refused the request for good: no order exists because of it."""


class DuplicateOrder(VenueError):
    """The venue already has an open order with this client order id: query it, never resend."""


class OrderNotFound(VenueError):
    """The venue has no (open) order with this client order id (``-2013``, 404)."""


def venue_refusal(
    text: str,
    *,
    code: int | None = None,
    status: int | None = None,
    auth: bool = False,
    retry_after_s: float | None = None,
    ambiguous: bool = False,
    duplicate: bool = False,
    not_found: bool = False,
    otherwise: type[OrderRejected] = OrderRejected,
) -> VenueError:
    """Return the error a venue's refusal means, read in the same order for every venue.

    A bad key or signature (``auth``) wins, then a rate limit (``retry_after_s`` is not ``None``),
    then an outcome that may have happened (``ambiguous``: 5xx, a timeout code), then an order
    that already exists (``duplicate``), then an unknown order (``not_found``); any other refusal
    is ``otherwise`` (:class:`OrderRejected` or a venue's subclass of it), final.
    """
    if auth:
        return AuthError(text, code=code, status=status)
    if retry_after_s is not None:
        return RateLimited(text, retry_after_s=retry_after_s, code=code, status=status)
    if ambiguous:
        return AmbiguousOutcome(text, code=code, status=status)
    if duplicate:
        return DuplicateOrder(text, code=code, status=status)
    if not_found:
        return OrderNotFound(text, code=code, status=status)
    return otherwise(text, code=code, status=status)
