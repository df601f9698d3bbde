"""Connect to the venue and record every frame it sends, as received, into Redis Streams.

``ingestor.session`` is the pure session core (no I/O); ``ingestor.shell.run`` is the stage's
entry point and ``python -m ingestor`` runs it.
"""

__all__: list[str] = []
