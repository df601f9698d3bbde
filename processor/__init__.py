"""Turn raw venue frames into trades, bars, signals and order updates (the processor stage)."""
