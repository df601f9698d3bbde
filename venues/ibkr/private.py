"""Turn the gateway's private topics into order updates (pure, no I/O).

``{"topic": "sor", "args": [order, ...]}`` (live orders, incremental) maps its latest entry to
an :class:`~common.schema.OrderUpdate` (:func:`venues.ibkr.wire.order_update`), identified by
order id, status and filled quantity (the gateway repeats unchanged states; those collapse).
An empty ``sor`` (the answer to ``sor+{}``) counts as a reply; ``str`` (executions) and ``spl``
(PnL) are kept raw and counted as ``ignored:str`` / ``ignored:spl``.
"""

from __future__ import annotations

from tickpipe.common.errors import DecodeError
from tickpipe.common.links import decoded_object
from tickpipe.common.schema import OrderUpdate, RawFrame
from tickpipe.venues.ibkr.wire import order_update

__all__ = ["parse_private"]


def parse_private(frame: RawFrame) -> tuple[OrderUpdate, str | None] | str:
    """Classify one private frame: a ``sor`` entry -> update and its identity."""
    message = decoded_object(frame.data)
    if message is None:
        raise DecodeError("IBKR private frame must be a JSON object")
    topic = message.get("topic")
    if topic in ("str", "spl"):
        return f"ignored:{topic}"
    if topic != "sor":
        return "replies"
    args = message.get("args")
    if not isinstance(args, list):
        raise DecodeError("sor args must be a list")
    if not args:
        return "replies"
    latest = args[-1]
    if not isinstance(latest, dict):
        raise DecodeError("sor entry must be an object")
    update = order_update(latest, frame.ts_recv)
    return update, f"ibkr|{update.order_id}|{update.exec_type}|{update.filled_qty}"
