"""Tell which frames Redis lost of those the writer had appended (pure: no I/O, no clock).

Redis acknowledges an append before it reaches the disk: with ``appendfsync everysec`` a crash
of the machine loses about the last second of acknowledged writes, and a failover to a replica
that lagged loses what the replica had not received. Either way the loss is a *tail*: after the
restart the stream ends with an entry older than the last one appended. The writer keeps the
frames it appended most recently; once Redis answers again, and before anything new is written,
:class:`WrittenTail` compares them with the stream read back newest first. Everything written
after the newest frame the stream still holds is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tickpipe.common.schema import RawFrame

__all__ = ["WrittenTail"]


class WrittenTail:
    """The frames appended to one stream, oldest first, matched against a read-back."""

    def __init__(self, written: Sequence[RawFrame]) -> None:
        self.written = list(written)
        self._index = {frame: n for n, frame in enumerate(self.written)}
        self.newest_held: int | None = None

    def find(self, newest_first: Iterable[RawFrame]) -> bool:
        """Look for the newest written frame among entries read back newest first.

        Entries that are not written frames (another writer's, or frames older than the ones
        kept) are passed over. Returns whether one was found.
        """
        for frame in newest_first:
            position = self._index.get(frame)
            if position is not None:
                self.newest_held = position
                return True
        return False

    def lost(self) -> list[RawFrame]:
        """Return the written frames after the newest one found (all of them if none was)."""
        start = 0 if self.newest_held is None else self.newest_held + 1
        return self.written[start:]
