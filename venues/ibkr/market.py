"""Classify one IBKR WebSocket frame of the market-data stream (pure, no I/O).

The gateway sends one JSON object a frame. ``smd+<conid>`` updates become one
:class:`~common.messages.L1Update` (the processor turns them into quotes and last-trade events);
an update that changes no field we read, and the bare first update of a subscription, count as
``l1_empty``. ``system`` (greeting, heartbeats), ``sts``, ``act``, ``tic``, ``ech`` and ``waiting
for session`` count as ``replies``; bulletins and notifications (``blt``, ``ntf``) as
``ignored:blt`` / ``ignored:ntf`` (the ingestor logs them); ``error`` topics and ``smd`` errors
as ``venue_errors``. Anything else is a :class:`~common.messages.BadMessage`.
"""

from __future__ import annotations

from tickpipe.common.errors import DecodeError
from tickpipe.common.links import decoded_object
from tickpipe.common.messages import BadMessage, MessageItem
from tickpipe.common.schema import RawFrame
from tickpipe.venues.ibkr.wire import parse_smd

__all__ = ["classify_messages"]

_REPLIES = frozenset({"system", "sts", "act", "tic", "ech"})


def classify_messages(entry_id: str, frame: RawFrame) -> list[MessageItem]:
    """Return the one item of an IBKR market-data frame (see the module docstring)."""
    if frame.kind != "ws":
        raise DecodeError(f"unknown IBKR frame kind {frame.kind!r}")
    message = decoded_object(frame.data)
    if message is None:
        raise DecodeError("IBKR frame must be a JSON object")
    topic = message.get("topic")
    if topic is None:
        return ["replies"] if "message" in message else [BadMessage("message without a topic")]
    if not isinstance(topic, str):
        return [BadMessage(f"topic must be a string: {topic!r}")]
    if topic.startswith("smd+"):
        if "error" in message:
            return ["venue_errors"]
        if not frame.channel.startswith("smd:"):
            return [BadMessage(f"smd frame without its symbol (channel {frame.channel!r})")]
        try:
            update = parse_smd(message, frame.channel[4:], frame.ts_recv)
        except DecodeError as exc:
            return [BadMessage(f"{topic}: {exc}")]
        return [update] if update is not None else ["l1_empty"]
    if topic in _REPLIES:
        return ["replies"]
    if topic in ("blt", "ntf"):
        return [f"ignored:{topic}"]
    if topic == "error":
        return ["venue_errors"]
    return [BadMessage(f"unknown topic {topic!r}")]
