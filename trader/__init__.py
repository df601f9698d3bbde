"""Place at most one venue order per signal and follow the orders' life and positions."""

from tickpipe.trader.shell import run

__all__ = ["run"]
