"""Pace the requests to an IBKR gateway so that it never answers 429 (pure: time is an argument).

The Client Portal docs ("Pacing Limitations") limit every client to 10 requests a second across
the gateway, and some endpoints further (``/tickle`` 1 a second; the live orders and trades,
``/iserver/account/orders`` and ``/iserver/account/trades``, and ``/portfolio/accounts`` 1 per 5
seconds). Going over may put the client's address in a penalty box for 10 minutes, and repeat
offenders are blocked. The budget keeps a lower global rate (``TICKPIPE_IBKR_REST_PER_S``,
default 4) and a margin on each endpoint's interval, and after any 429 sends nothing at all until
``TICKPIPE_IBKR_PENALTY_S`` has passed: a request sent during the penalty only earns the client
a longer one. One exception: a 429 to an endpoint with a limit of its own, when this budget has
kept that limit, means another client of the same address used it (the process before this one,
a trader killed and restarted): that endpoint alone waits its interval, once
(:meth:`RestBudget.refused`); a second 429 in a row is the penalty box.
"""

from __future__ import annotations

from collections import deque

from tickpipe.common.units import NS_PER_S

__all__ = ["ENDPOINT_INTERVALS_S", "RestBudget"]

#: (method or "*", path prefix under /v1/api) -> least seconds between two requests.
ENDPOINT_INTERVALS_S: dict[tuple[str, str], float] = {
    ("*", "/tickle"): 1.2,
    ("GET", "/iserver/account/orders"): 5.5,
    ("GET", "/iserver/account/trades"): 5.5,
    ("GET", "/portfolio/accounts"): 5.5,
}


class RestBudget:
    """When the next request may leave; see the module docstring."""

    def __init__(self, per_s: float = 4.0, penalty_s: float = 600.0) -> None:
        self.per_s = per_s
        self.penalty_ns = int(penalty_s * NS_PER_S)
        self.penalty_until_ns = 0
        self.penalties = 0
        self._recent: deque[int] = deque()
        self._last: dict[tuple[str, str], int] = {}
        self._endpoint_refused = False  # the last answer was a 429 to an endpoint's own limit

    def _endpoint(self, method: str, path: str) -> tuple[str, str] | None:
        for key in ENDPOINT_INTERVALS_S:
            verb, prefix = key
            if verb in ("*", method) and path.startswith(prefix):
                return key
        return None

    def endpoint_delay_ns(self, method: str, path: str, now_ns: int) -> int:
        """Return how long ``method path`` must wait for its endpoint's own limit alone."""
        key = self._endpoint(method, path)
        if key is None or key not in self._last:
            return 0
        return max(0, self._last[key] + int(ENDPOINT_INTERVALS_S[key] * NS_PER_S) - now_ns)

    def delay_ns(self, method: str, path: str, now_ns: int) -> int:
        """Return how long ``method path`` must wait before it may leave (0: now)."""
        waits = [self.penalty_until_ns - now_ns]
        window = NS_PER_S
        while self._recent and self._recent[0] <= now_ns - window:
            self._recent.popleft()
        if len(self._recent) >= max(1, int(self.per_s)):
            waits.append(self._recent[0] + window - now_ns)
        key = self._endpoint(method, path)
        if key is not None and key in self._last:
            waits.append(self._last[key] + int(ENDPOINT_INTERVALS_S[key] * NS_PER_S) - now_ns)
        return max(0, *waits)

    def answered(self) -> None:
        """The gateway served a request: a later 429 is a first one again."""
        self._endpoint_refused = False

    def sent(self, method: str, path: str, now_ns: int) -> None:
        """Count a request that leaves now."""
        self._recent.append(now_ns)
        key = self._endpoint(method, path)
        if key is not None:
            self._last[key] = now_ns

    def refused(self, now_ns: int, method: str = "", path: str = "") -> float:
        """The gateway answered 429 to ``method path``: return the seconds nothing (or, for an
        endpoint's own limit the first time, that endpoint alone) may leave."""
        key = self._endpoint(method, path)
        if key is not None and not self._endpoint_refused:
            self._endpoint_refused = True  # another client's use: wait the interval, once
            self._last[key] = now_ns
            return ENDPOINT_INTERVALS_S[key]
        self._endpoint_refused = False
        self.penalties += 1
        self.penalty_until_ns = max(self.penalty_until_ns, now_ns + self.penalty_ns)
        return (self.penalty_until_ns - now_ns) / NS_PER_S
