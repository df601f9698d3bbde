"""Number the revisions of the bars a venue publishes itself (pure, no I/O)."""

from __future__ import annotations

import dataclasses

from common.messages import VenueBar
from common.schema import Bar

__all__ = ["MAX_VENUE_BAR_KEYS", "revise_bar"]

#: How many venue bars' revisions a partition remembers (oldest forgotten first).
MAX_VENUE_BAR_KEYS = 512


def revise_bar(revisions: dict[str, int], item: VenueBar) -> Bar:
    """Number a venue bar's revision: 0 when first seen (``u``: 1), then one more each time.

    ``revisions`` maps ``symbol|interval|ts_open`` to the last revision; it is updated in place
    and keeps the :data:`MAX_VENUE_BAR_KEYS` most recently seen bars.
    """
    bar = item.bar
    key = f"{bar.symbol}|{bar.interval}|{bar.ts_open}"
    previous = revisions.pop(key, None)
    revision = (1 if item.updated else 0) if previous is None else previous + 1
    revisions[key] = revision
    while len(revisions) > MAX_VENUE_BAR_KEYS:
        del revisions[next(iter(revisions))]
    return dataclasses.replace(bar, revision=revision)
