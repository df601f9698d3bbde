"""Decide how far a stream may be trimmed without losing what a reader still needs (pure).

The policy keeps about ``maxlen`` entries per stream (configured per stream kind). It trims with
``XTRIM MINID`` and never past what every consumer group of the stream has read: for each group,
entries after its last-delivered id are unread, and entries from its oldest pending id on are
delivered but not acknowledged; both are kept. A stream whose readers must include some group
(the processor's group for ``raw``) is not trimmed at all until that group exists.

With the archive on, an archived stream is also never trimmed past the archive's watermark (the
last entry id it has written to Parquet and recorded): entries not yet archived stay in Redis,
and until the archive has recorded anything the stream is not trimmed at all.

When keeping only ``maxlen`` entries would remove unread ones, the trim stops at the oldest
entry someone still needs and the decision carries an alarm, which the shell reports (health
field, log line, counter).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tickpipe.common.contract import entry_key

__all__ = [
    "DEFAULT_KIND",
    "DEFAULT_MAXLEN",
    "GroupView",
    "TrimDecision",
    "decide_trim",
    "id_after",
    "maxlen_for",
    "safe_minid",
]

DEFAULT_KIND = "*"
DEFAULT_MAXLEN = 1_000_000


def id_after(entry_id: str) -> str:
    """Return the smallest stream id greater than ``entry_id``."""
    ms, seq, _ = entry_key(entry_id)
    return f"{ms}-{seq + 1}"


def maxlen_for(kind: str, policy: Mapping[str, int] | Iterable[tuple[str, int]]) -> int:
    """Return the configured length for a stream kind, else the ``*`` default."""
    table = dict(policy)
    return table.get(kind, table.get(DEFAULT_KIND, DEFAULT_MAXLEN))


@dataclass(frozen=True, slots=True)
class GroupView:
    """What a consumer group has read: last-delivered id and its oldest pending id, if any."""

    name: str
    last_delivered: str
    oldest_pending: str | None = None


@dataclass(frozen=True, slots=True)
class TrimDecision:
    """``minid``: trim entries below it (``None`` = trim nothing); ``alarm``: why the policy was
    not met, when it was not."""

    minid: str | None
    alarm: str | None = None


def safe_minid(groups: Iterable[GroupView], required: Iterable[str] = ()) -> str | None:
    """Return the greatest MINID that removes only entries every group has read and acked.

    ``""`` means no group constrains the stream; ``None`` that nothing may be trimmed (a
    required group is missing).
    """
    views = list(groups)
    names = {g.name for g in views}
    if any(name not in names for name in required):
        return None
    bounds = []
    for group in views:
        bound = id_after(group.last_delivered)
        if group.oldest_pending is not None and entry_key(group.oldest_pending) < entry_key(bound):
            bound = group.oldest_pending
        bounds.append(bound)
    return min(bounds, key=entry_key) if bounds else ""


def decide_trim(
    *,
    length: int,
    maxlen: int,
    first_kept: str | None,
    groups: Iterable[GroupView],
    required: Iterable[str] = (),
    archived: str | None = None,
    archive_on: bool = False,
) -> TrimDecision:
    """Decide the trim of one stream.

    ``first_kept`` is the id of the entry ``length - maxlen`` (0-based) from the start: the
    oldest one the length policy keeps (``None`` when the stream is within its length).
    ``archive_on``: the stream is archived, and ``archived`` is the last entry id the archive
    has recorded (``None``: nothing yet).
    """
    if length <= maxlen or first_kept is None:
        return TrimDecision(None)
    safe = safe_minid(groups, required)
    if safe is None:
        missing = ", ".join(sorted(set(required)))
        return TrimDecision(None, f"over {maxlen} entries but group(s) {missing} not reading yet")
    why = "read by every consumer group"
    if archive_on:
        if archived is None:
            return TrimDecision(None, f"over {maxlen} entries but nothing archived yet")
        bound = id_after(archived)
        if safe == "" or entry_key(bound) < entry_key(safe):
            safe, why = bound, "archived"
    if safe == "" or entry_key(first_kept) <= entry_key(safe):
        return TrimDecision(first_kept)
    alarm = f"over {maxlen} entries ({length}) but entries from {safe} on are not {why}; kept them"
    return TrimDecision(safe, alarm)
