"""Run the processor stage: ``python -m tickpipe.processor`` (``--check``: its health in Redis)."""

from __future__ import annotations

import gc
import sys

from tickpipe.common.stage import base_parser, stage_main
from tickpipe.processor.shell import SERVICE, run

__all__ = ["GC_THRESHOLDS", "main"]

#: The collector's thresholds in the processor (``gc.set_threshold``); see :func:`main`.
GC_THRESHOLDS = (10_000, 10, 10)


def main() -> None:
    """Parse the command line and run the stage until it is stopped."""
    # Nearly everything the processor allocates per frame is acyclic and freed by reference
    # counting: collect the young generation less often (stage_main also freezes what import
    # made; together about 7 % of the CPU per frame at full speed).
    gc.set_threshold(*GC_THRESHOLDS)
    parser = base_parser(
        "python -m tickpipe.processor",
        "tickpipe processor: raw frames -> trades, bars, signals and order updates",
    )
    sys.exit(stage_main(SERVICE, run, parser=parser))


if __name__ == "__main__":
    main()
