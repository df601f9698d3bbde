"""Run the dashboard: ``python -m tickpipe.dashboard`` (``tickpipe dashboard``)."""

from __future__ import annotations

import functools
import sys

from tickpipe.common.errors import ConfigError
from tickpipe.common.extras import need
from tickpipe.common.stage import base_parser, stage_main

__all__ = ["main"]


def main() -> None:
    """Parse the command line and serve the dashboard until stopped."""
    try:
        need("dashboard", "the dashboard")
    except ConfigError as exc:
        print(f"tickpipe dashboard: {exc}", file=sys.stderr)
        sys.exit(2)
    from tickpipe.dashboard.shell import SERVICE, run  # Dash: only once it is known to be there

    parser = base_parser(
        "python -m tickpipe.dashboard",
        "tickpipe dashboard: live candles, book, orders, positions and pipeline health in a "
        "browser (read-only on Redis). Port: TICKPIPE_DASHBOARD_PORT (default 8050); access "
        "token: TICKPIPE_DASHBOARD_TOKEN (open /?token=TOKEN once).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: TICKPIPE_DASHBOARD_PORT)")
    parser.add_argument("--refresh-ms", type=int, default=1000, help="update period (default 1000)")
    args, _ = parser.parse_known_args()
    serve = functools.partial(run, host=args.host, port=args.port, refresh_ms=args.refresh_ms)
    sys.exit(stage_main(SERVICE, serve, parser=parser))


if __name__ == "__main__":
    main()
