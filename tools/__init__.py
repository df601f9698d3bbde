"""The operator's tools: the ``tickpipe`` command, ``tickpipe up``, replay, export and readers.

Nothing here runs inside a stage: the stages (``ingestor``, ``processor``, ``trader``,
``dashboard``) import ``common`` and the venue registry, never this package.
"""

__all__: list[str] = []
