"""Run a local exchange on loopback: seeded market, matching, user data, fault plans.

One package per venue it speaks (:mod:`mock_ws.binance`, :mod:`mock_ws.alpaca`,
:mod:`mock_ws.ibkr`) over the
venue-neutral market simulation (``market``, ``scenarios``, ``book``), matching engine
(``matching``, ``order_model``), fault plan (``faults``) and ground-truth log. Start it
in-process with :func:`start_mock` (tests use port 0) or as a process with
``python -m tickpipe.mock_ws --binance-port 9443``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from tickpipe.mock_ws.alpaca import AlpacaMock, build_alpaca
from tickpipe.mock_ws.binance.auth import load_ed25519_key
from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.binance.replay import load_recording
from tickpipe.mock_ws.binance.replay_shell import Replayer, replay_symbols
from tickpipe.mock_ws.binance.server import BinanceMock
from tickpipe.mock_ws.faults import FaultError, FaultPlan, fault_list
from tickpipe.mock_ws.ground_truth import GroundTruth, GroundTruthWriter, read_ground_truth
from tickpipe.mock_ws.ibkr import IbkrMock, build_ibkr
from tickpipe.mock_ws.market import MarketSim
from tickpipe.mock_ws.matching import MatchingEngine
from tickpipe.mock_ws.scenarios import ScenarioError
from tickpipe.mock_ws.tls import TlsFiles, server_context

__all__ = [
    "FaultError",
    "GroundTruth",
    "MockExchange",
    "ScenarioError",
    "TlsFiles",
    "read_ground_truth",
    "start_mock",
]


class MockExchange:
    """A running mock exchange: its URLs, market, matching engine, and ``close()``."""

    def __init__(
        self,
        server: BinanceMock,
        host: str,
        port: int,
        ground_truth_path: str | None,
        tls: TlsFiles | None = None,
    ):
        self._server = server
        self.host = host
        self.binance_port = port
        self.ground_truth_path = ground_truth_path
        #: The CA file a client trusts to reach the mock over TLS (None: plain ws:// and http://).
        self.ca_file: str | None = None if tls is None else str(tls.ca)
        self._ssl_context = None if tls is None else server_context(tls)
        self._ws, self._http = ("wss", "https") if tls is not None else ("ws", "http")
        self.ws_url = self._url(self._ws, port)
        self.ws_api_url = f"{self.ws_url}/ws-api/v3"
        self.rest_url = self._url(self._http, port)
        self.alpaca: AlpacaMock | None = None
        self.alpaca_port: int | None = None
        self.alpaca_data_url: str | None = None  # + /v2/test, /v2/iex, /v1beta3/crypto/us
        self.alpaca_trading_url: str | None = None  # the trading stream, .../stream
        self.alpaca_rest_url: str | None = None  # base for /v2/orders and /v2/stocks/...
        self.ibkr: IbkrMock | None = None
        self.ibkr_port: int | None = None
        self.ibkr_rest_url: str | None = None  # the gateway's REST base, .../v1/api
        self.ibkr_ws_url: str | None = None  # .../v1/api/ws

    def _url(self, scheme: str, port: int) -> str:
        """Return ``scheme://host:port`` for this mock's host (an IPv6 one in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{port}"

    async def attach_alpaca(self, alpaca: AlpacaMock, port: int) -> None:
        """Start the Alpaca venue on ``port`` (0 = a free port) and record its URLs."""
        self.alpaca_port = await alpaca.start(self.host, port, self._ssl_context)
        self.alpaca = alpaca
        self.alpaca_data_url = self._url(self._ws, self.alpaca_port)
        self.alpaca_trading_url = f"{self.alpaca_data_url}/stream"
        self.alpaca_rest_url = self._url(self._http, self.alpaca_port)

    async def attach_ibkr(self, ibkr: IbkrMock, port: int) -> None:
        """Start the IBKR gateway on ``port`` (0 = a free port) and record its URLs."""
        self.ibkr_port = await ibkr.start(self.host, port, self._ssl_context)
        self.ibkr = ibkr
        self.ibkr_rest_url = self._url(self._http, self.ibkr_port) + "/v1/api"
        self.ibkr_ws_url = self._url(self._ws, self.ibkr_port) + "/v1/api/ws"

    @property
    def market(self) -> MarketSim:
        return self._server.market

    @property
    def engine(self) -> MatchingEngine:
        return self._server.engine

    @property
    def feed(self) -> MarketFeed:
        """The Binance market's books, trade history, candles and tickers (REST bodies)."""
        return self._server.feed

    async def inject(self, fault: Mapping[str, Any] | list[Mapping[str, Any]]) -> list[int]:
        """Add a fault (or a list) as ``POST /_mock/faults`` does; return the fault ids.

        Faults due now fire before this returns; raise :class:`FaultError` if one is invalid.
        """
        return [f.fault_id for f in self._server.faults.add(fault_list(fault))]

    def adjust_balance(self, asset: str, delta: str) -> None:
        """Deposit (negative: withdraw) ``delta`` of ``asset``; subscribers get balanceUpdate."""
        events = self._server.engine.adjust_balance(asset.upper(), delta, self._server.clock())
        self._server.publish_user_events(events)

    def schedule(self, scenario: Mapping[str, Any] | list[Mapping[str, Any]]) -> None:
        """Schedule market scenarios as ``POST /_mock/scenario`` does (see mock_ws.scenarios)."""
        specs = [scenario] if isinstance(scenario, Mapping) else list(scenario)
        self._server.faults.schedule(specs)

    def faults(self) -> list[dict[str, Any]]:
        """Return the pending and active faults, as ``GET /_mock/faults`` lists them."""
        return self._server.faults.plan.listing(self._server.clock())

    def status(self) -> dict[str, Any]:
        """Return what ``GET /_mock/status`` returns."""
        return self._server.status()

    async def close(self) -> None:
        """Close every connection and stop listening."""
        if self.alpaca is not None:
            await self.alpaca.close()
        if self.ibkr is not None:
            await self.ibkr.close()
        await self._server.close()

    async def __aenter__(self) -> MockExchange:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_mock(
    *,
    binance_port: int = 0,
    host: str = "127.0.0.1",
    seed: int = 1,
    symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
    trades_per_s: float = 20.0,
    api_key: str = "mock-key",
    api_secret: str = "mock-secret",
    ground_truth_path: str | None = None,
    ping_interval_s: float = 20.0,
    clock: Callable[[], int] | None = None,
    faults: Iterable[Mapping[str, Any]] = (),
    lifetime_s: float | None = None,
    alpaca_port: int | None = None,
    rest_weight_limit: int = 6000,
    ed25519_keys: Mapping[str, str | bytes] | None = None,
    max_incoming_per_s: int | None = 5,
    scenarios: Iterable[Mapping[str, Any]] = (),
    blast: bool = False,
    blast_rate: float = 0.0,
    blast_symbols: Iterable[str] = (),
    replay: str | None = None,
    replay_speed: float = 1.0,
    tls: TlsFiles | None = None,
    alpaca_hours: str = "venue",
    listen_key_retired_ns: int | None = None,
    ibkr_port: int | None = None,
    ibkr_options: Mapping[str, Any] | None = None,
) -> MockExchange:
    """Start the mock on ``host:binance_port`` (0 = a free port) and return it running.

    ``trades_per_s`` is the mean trade rate of each symbol; ``clock`` returns integer
    nanoseconds (default ``time.time_ns``). ``faults`` is a fault plan (see
    :mod:`mock_ws.faults`; each fault's ``at`` counts from the start); ``lifetime_s`` closes
    every connection that old (Binance: 24 h). ``rest_weight_limit`` is the Binance REST
    request-weight budget per IP and minute (6000 at the venue). ``ed25519_keys`` maps more API
    keys to Ed25519 public keys (PEM or 32 raw bytes): requests signed with them are accepted,
    and they can ``session.logon``. ``max_incoming_per_s`` is the market-stream incoming
    message limit (Binance: 5; None = off). ``scenarios`` schedules market scenarios from the
    start (:mod:`mock_ws.scenarios`). ``blast`` serves ``<symbol>@trade`` streams named in
    the connection URL from pre-encoded frames as fast as the client reads (or ``blast_rate``
    frames/s), for benchmarks (:mod:`mock_ws.blast`); with ``blast_symbols`` only those
    symbols' trades are blasted and the others trade in the simulated market as usual.
    ``replay`` (a recording file or directory) serves a recorded session instead of the
    simulated market, at the recorded pace divided by ``replay_speed`` (0 = as fast as
    possible); its symbols replace ``symbols``.
    ``alpaca_port`` (0 = a free port) also starts the Alpaca venue (:mod:`mock_ws.alpaca`)
    with the same key, seed, rate and ground truth. ``tls`` (see :mod:`mock_ws.tls`) serves
    every port over TLS: the URLs become ``wss://``/``https://`` and ``ca_file`` names the CA
    file clients trust. ``alpaca_hours`` "venue" (default) trades Alpaca stocks in the
    NYSE regular session only, "always" around the clock (crypto and FAKEPACA always trade).
    From ``listen_key_retired_ns`` (mock clock) on, the legacy ``/api/v3/userDataStream``
    listenKey endpoints answer 404 as a removed path does.
    with the same key, seed, rate and ground truth. ``ibkr_port`` (0 = a free port) also starts
    the IBKR Client Portal gateway (:mod:`mock_ws.ibkr`) with the same seed, rate, ground truth
    and fault plan; ``ibkr_options`` are :class:`~mock_ws.ibkr.IbkrMock` keywords
    (``session_timeout_s``, ``penalty_s``, ``md_interval_s``, ``md_expiry_s``...).
    """
    clock = clock or time.time_ns
    plan = FaultPlan(seed)
    for spec in faults:
        plan.add(spec, clock())
    replayer = None
    if replay is not None:
        events, snapshots = load_recording(replay)
        replayer = Replayer(events, snapshots, speed=replay_speed)
        symbols = replay_symbols(events)
    market = MarketSim([s.upper() for s in symbols], seed, trades_per_s)
    server = BinanceMock(
        market,
        api_key=api_key,
        api_secret=api_secret,
        ground_truth=GroundTruthWriter(ground_truth_path),
        ping_interval_s=ping_interval_s,
        clock=clock,
        faults=plan,
        lifetime_s=lifetime_s,
        weight_limit=rest_weight_limit,
        ed25519_keys={k: load_ed25519_key(v) for k, v in (ed25519_keys or {}).items()},
        max_incoming_per_s=max_incoming_per_s,
        blast=blast,
        blast_rate=blast_rate,
        blast_symbols=blast_symbols,
        listen_key_retired_ns=listen_key_retired_ns,
    )
    server.replayer = replayer
    try:
        context = None if tls is None else server_context(tls)
        server.faults.schedule(scenarios)
        port = await server.start(host, binance_port, context)
    except BaseException:
        server.ground_truth.close()
        raise
    exchange = MockExchange(server, host, port, ground_truth_path, tls)
    # every venue's twin shares the market's seed and rate, the ground truth and the clock
    shared: dict[str, Any] = {
        "seed": seed,
        "trades_per_s": trades_per_s,
        "ground_truth": server.ground_truth,
        "clock": clock,
    }
    try:
        if alpaca_port is not None:
            alpaca = build_alpaca(
                **shared, api_key=api_key, api_secret=api_secret, hours=alpaca_hours
            )
            await exchange.attach_alpaca(alpaca, alpaca_port)
        if ibkr_port is not None:
            ibkr = build_ibkr(**shared, faults=plan, **dict(ibkr_options or {}))
            await exchange.attach_ibkr(ibkr, ibkr_port)
    except BaseException:
        await exchange.close()
        raise
    return exchange
