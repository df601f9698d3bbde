"""Run the archive stage: ``python -m tickpipe.archive`` (``--check``: its health in Redis)."""

from __future__ import annotations

import sys

from tickpipe.archive.shell import SERVICE, run
from tickpipe.common.stage import base_parser, stage_main

__all__ = ["main"]


def main() -> None:
    """Parse the command line and run the stage until it is stopped."""
    parser = base_parser(
        "python -m tickpipe.archive",
        "tickpipe archive: raw and normalised streams -> partitioned Parquet files",
    )
    sys.exit(stage_main(SERVICE, run, parser=parser))


if __name__ == "__main__":
    main()
