"""Connect to the venue and record every frame it sends, as received, into Redis Streams.

``ingestor.shell.run`` is the stage's entry point and ``python -m ingestor`` runs it. Pure cores:
``liveness`` (cadence), ``subscriptions`` (stream planning, pacing, control entries), ``gaps``
(trade-id holes, REST weight), ``backfills`` (merging backfill requests), ``lost`` (what Redis
lost of what was written). Shells: ``connection``, ``outbox``, ``slot``, ``control``, ``rest``,
``gapwatch``, ``writer``, ``journal``; ``adapter.AdapterConnection`` runs a connection slot
whose wire protocol a venue supplies. Venue sessions, parsers and the embeddable clients live
in :mod:`venues`; ``ingestor.control.request_subscription_change`` asks a running ingestor to
change its symbols.
"""

__all__: list[str] = []
