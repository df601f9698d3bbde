"""``python -m tickpipe``: the ``tickpipe`` command."""

from tickpipe.tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
