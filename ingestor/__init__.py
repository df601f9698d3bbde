"""Connect to the venue and record every frame it sends, as received, into Redis Streams.

``ingestor.shell.run`` is the stage's entry point and ``python -m ingestor`` runs it. Pure cores:
``session`` (wire protocol), ``liveness`` (cadence), ``subscriptions`` (stream planning, pacing,
control entries), ``gaps`` (trade-id holes, REST weight), ``backfills`` (merging backfill
requests), ``lost`` (what Redis lost of what was written), ``events`` (normalisation). Shells:
``connection``, ``outbox``, ``slot``, ``control``, ``rest``, ``gapwatch``, ``writer``,
``journal``. Alpaca
(``TICKPIPE_VENUE=alpaca``): pure core ``alpaca_session``; shells ``alpaca`` (market-data and
trading slots) and ``alpaca_control``, run by ``adapter.AdapterConnection``, the venue-adapter
form of a connection slot. ``ingestor.client`` is the
venue connection embeddable without Redis; ``ingestor.control.request_subscription_change``
asks a running ingestor to change its symbols.
"""

__all__: list[str] = []
