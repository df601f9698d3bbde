"""Interactive Brokers through the Client Portal Web API gateway (``/v1/api``, ``/v1/api/ws``).

Pure: :mod:`~venues.ibkr.wire` (message shapes), :mod:`~venues.ibkr.market` (market-data
frames), :mod:`~venues.ibkr.session` (the WebSocket session), :mod:`~venues.ibkr.private`
(``sor`` frames), :mod:`~venues.ibkr.orders` (order bodies, answers, confirmation questions),
:mod:`~venues.ibkr.pacing` (the REST budget). I/O: :mod:`~venues.ibkr.rest`,
:mod:`~venues.ibkr.ingest`, :mod:`~venues.ibkr.order_adapter`.
"""
