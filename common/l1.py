"""Merge level-1 updates that name only changed fields into quotes and trades (pure, no I/O).

A venue such as IBKR sends, per symbol, only the fields that changed since its previous update
(:class:`~common.messages.L1Update`). :func:`merge_l1` keeps the last value of each field in a
per-symbol ``view`` (a plain dict, so a checkpoint can hold it) and answers what the update
changed: a :class:`Quote` when a book field changed and all four are known, a :class:`Trade`
(id = the update's time, side ``unknown``) when the last price or size changed and both are
known, and how many of the two could not be made yet for want of a field. The processor and the
embeddable IBKR client share it.
"""

from __future__ import annotations

from tickpipe.common.messages import L1Update
from tickpipe.common.schema import Quote, Trade
from tickpipe.common.units import MS

__all__ = ["BOOK_FIELDS", "LAST_FIELDS", "merge_l1"]

BOOK_FIELDS = ("bid_price", "bid_size", "ask_price", "ask_size")
LAST_FIELDS = ("last_price", "last_size")


def merge_l1(
    view: dict[str, str], update: L1Update, *, venue: str, src: str, ts_proc: int = 0
) -> tuple[Quote | None, Trade | None, int]:
    """Fold ``update`` into ``view``; return (quote, trade, incomplete) it makes."""
    changed = {
        name: value
        for name in (*BOOK_FIELDS, *LAST_FIELDS)
        if (value := getattr(update, name)) is not None
    }
    view.update(changed)
    ts_event = update.update_ms * MS
    quote = trade = None
    incomplete = 0
    if any(name in changed for name in BOOK_FIELDS):
        if all(name in view for name in BOOK_FIELDS):
            quote = Quote(
                venue=venue,
                symbol=update.symbol,
                bid_price=view["bid_price"],
                bid_qty=view["bid_size"],
                ask_price=view["ask_price"],
                ask_qty=view["ask_size"],
                update_id=str(update.update_ms),
                ts_event=ts_event,
                ts_recv=update.ts_recv,
                ts_proc=ts_proc,
            )
        else:
            incomplete += 1
    if any(name in changed for name in LAST_FIELDS):
        if all(name in view for name in LAST_FIELDS):
            trade = Trade(
                venue=venue,
                symbol=update.symbol,
                trade_id=str(update.update_ms),
                price=view["last_price"],
                qty=view["last_size"],
                side="unknown",
                ts_event=ts_event,
                ts_recv=update.ts_recv,
                ts_proc=ts_proc,
                src=src,
            )
        else:
            incomplete += 1
    return quote, trade, incomplete
