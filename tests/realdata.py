"""Where the recorded venue captures the tests read as golden inputs live: one place for all."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BTCUSDT_CAPTURE", "REALDATA", "capture_frames", "first_frames"]

#: The shared folder of real captures (hftbacktest, cryptofeed, Tardis, ...) beside the repository.
REALDATA = Path(__file__).parents[2] / "shared" / "realdata"

#: An hftbacktest capture of Binance spot BTCUSDT (8 August 2024): trades, depth diffs, snapshots.
BTCUSDT_CAPTURE = REALDATA / "hftbacktest" / "spot" / "btcusdt_20240808.gz"


def capture_frames(path: Path = BTCUSDT_CAPTURE) -> Iterator[tuple[int, str]]:
    """Yield (receive time in ns, frame as the venue sent it) of an hftbacktest capture.

    Such a capture holds one ``<ts_ns> <frame>`` line a frame; the REST depth snapshot is a line
    too, its frame the bare JSON body.
    """
    with gzip.open(path, "rt") as lines:
        for line in lines:
            recv, _, frame = line.rstrip("\n").partition(" ")
            yield int(recv), frame


def first_frames(limit: int, containing: str = "") -> list[str]:
    """Return the first ``limit`` frames of :data:`BTCUSDT_CAPTURE` that hold ``containing``."""
    frames = (frame for _, frame in capture_frames() if containing in frame)
    return list(itertools.islice(frames, limit))
