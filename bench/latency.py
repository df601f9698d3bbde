"""Measure tick-to-order latency: the mock sends the trade crossing a level -> it gets the order.

Both ends are the mock exchange's own ground truth on one clock: ``trade_sent.ts`` of the trade
that caused the signal and ``order.ts`` when the order arrived. Per background rate (the mock's
total trade rate over two symbols) two runs against a fresh mock:

* **floor**: one in-process client reads the ingestor's market stream URL and calls the same
  :class:`processor.strategies.ThresholdCross` on every trade, sending ``order.place`` on the
  WebSocket API at once (no Redis, no other process);
* **pipeline**: ingestor, processor and trader as real processes with a real redis-server,
  subscribed to the same trade streams as the floor (``TICKPIPE_CHANNELS=trade``), so the
  background rate is the frames/s each side receives.

Orders are matched to their trade through the order's client id: the floor encodes
``symbol-trade_id`` in it; the pipeline's id is derived from the signal id, whose cause is the raw
entry holding the trade.

Above :data:`MARKET_MAX` frames/s the mock's simulated market (one ground-truth line per trade)
cannot keep the pace on a small machine, so the rate is made of :data:`BACKGROUND_MARKET`
trades/s on the two measured symbols plus the rest as blasted trades (pre-encoded, paced) on two
more symbols, :data:`BACKGROUND_SYMBOLS`, which every client subscribes to and every stage
handles like any other symbol.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.peer import cpu_seconds
from bench.rig import GC_PROBE_ENV, Rig, gc_pauses, stalls_during, temp_dir, wait_until
from bench.stats import Row, summarize_ms
from tickpipe.common.contract import base_entry_id, raw_frames_of
from tickpipe.common.names import Keys
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws.market import MarketSim
from tickpipe.processor.strategies import ThresholdCross
from tickpipe.venues.binance import wire as binance
from tickpipe.venues.binance.orders import sign_params

__all__ = ["calibrate_hysteresis", "floor_client", "run_latency"]

KEY, SECRET = "bench-key", "bench-secret"
LEVELS = {"BTCUSDT": "61800", "ETHUSDT": "2680"}
HYSTERESIS_BPS = "10"
CANDIDATE_BPS = ("5", "10", "15", "20", "30", "50", "80")
QTY = "0.001"
#: The highest trade rate asked of the mock's simulated market alone.
MARKET_MAX = 5000
#: Above MARKET_MAX: the simulated market's rate on the measured symbols...
BACKGROUND_MARKET = 2000
#: ... and the symbols that carry the rest as blasted trades.
BACKGROUND_SYMBOLS = ("BNBUSDT", "SOLUSDT")
#: The pipeline's level for the background symbols: far above their blasted prices (a walk
#: around 100), so the strategy runs on them but never signals. Otherwise their orders would
#: exceed the venue's limit and the trader would hold every order, the measured ones included.
BACKGROUND_LEVEL = "1000000"
#: An order slower than this (the p99 target at 5k/s) is set against the probed stalls.
SLOW_NS = 10_000_000
#: The trader's log line for an order held back by the venue's rate limit.
VENUE_LIMIT_HOLD = "holding request for the venue's rate limit"


def _gt(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    out = []
    for line in lines:
        with contextlib.suppress(orjson.JSONDecodeError):
            out.append(orjson.loads(line))
    return out


def _latencies(
    events: list[dict[str, Any]],
    trade_of: dict[str, tuple[str, int]],
    window: tuple[int, int],
    *,
    blasted: bool = False,
) -> tuple[list[tuple[int, int]], float]:
    """Return the orders received in ``window`` and the trades/s sent in it.

    Each order is its span ``(trade sent, order received)`` in the mock's wall ns.

    With ``blasted`` the rate adds the blasted trades' mean rate (the mock records one summary
    per connection for them, not each trade).
    """
    after, until = window
    extra = sum(e.get("frames_per_s", 0) for e in events if e["ev"] == "blast") if blasted else 0
    sent: dict[tuple[str, int], int] = {}
    count = 0
    for e in events:
        if e["ev"] == "trade_sent":
            sent.setdefault((e["symbol"], e["trade_id"]), e["ts"])
            count += after <= e["ts"] < until
    out = []
    for e in events:
        if e["ev"] != "order" or not after <= e["ts"] < until:
            continue
        key = trade_of.get(e.get("client_order_id") or "")
        if key is not None and key in sent:
            out.append((sent[key], e["ts"]))
    return out, count / ((until - after) / 1e9) + extra


def calibrate_hysteresis(
    rate: float, seed: int, *, seconds: float = 3.0, max_signals_per_s: float = 2.5
) -> str:
    """Return the smallest hysteresis (bps) whose signals stay under the venue's order limit.

    The mock, like Binance, allows 50 orders per 10 s; a signal rate above it makes the trader
    hold orders (correctly), which would measure the venue's limit instead of the pipeline. The
    mock's market is simulated here with the same seed and rate (pure, no I/O).
    """
    for bps in CANDIDATE_BPS:
        market = MarketSim(list(LEVELS), seed, rate / 2)
        strategy = ThresholdCross(LEVELS, hysteresis_bps=bps, order_qty=QTY)
        signals = 0
        for step in range(1, int(seconds * 100) + 1):
            for trade in market.trades_due(step * 10_000_000):
                parsed = binance.parse_trade(trade.payload(), ts_recv=0)
                signals += len(strategy.on_trade(parsed, 0))
        if signals / seconds <= max_signals_per_s:
            return bps
    return CANDIDATE_BPS[-1]


async def floor_client(
    ws_url: str,
    ws_api_url: str,
    stop: asyncio.Event,
    dropped: list[str] | None = None,
    hysteresis_bps: str = HYSTERESIS_BPS,
    background: tuple[str, ...] = (),
) -> dict[str, tuple[str, int]]:
    """Run the strategy on the market stream and send each order at once; return coid -> trade.

    When the mock closes the stream (a floor too slow for the rate) the reason goes to ``dropped``.
    """
    dropped = [] if dropped is None else dropped
    strategy = ThresholdCross(LEVELS, hysteresis_bps=hysteresis_bps, order_qty=QTY)
    names = [f"{s.lower()}@trade" for s in (*LEVELS, *background)]
    url = f"{ws_url}/stream?streams={'/'.join(names)}"
    placed: dict[str, tuple[str, int]] = {}
    ids = itertools.count(1)
    async with connect(ws_api_url, compression=None) as api, connect(url, compression=None) as ws:

        async def drain() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for _ in api:
                    pass

        drainer = asyncio.create_task(drain())
        wanted = tuple(f'{{"stream":"{s.lower()}@trade"'.encode() for s in LEVELS)
        try:
            async for message in ws:  # frames flow all the time: stop is seen at the next one
                if stop.is_set():
                    break
                now = time.time_ns()
                data = message if isinstance(message, bytes) else message.encode()
                if not data.startswith(wanted):
                    continue  # background symbols: no strategy for them
                _, payload = binance.unwrap(data)
                if not isinstance(payload, dict) or payload.get("e") != "trade":
                    continue
                trade = binance.parse_trade(payload, ts_recv=now)
                for spec in strategy.on_trade(trade, now):
                    coid = f"fl-{trade.symbol}-{trade.trade_id}"
                    params = sign_params(
                        {
                            "symbol": spec.symbol,
                            "side": spec.side.upper(),
                            "type": "MARKET",
                            "quantity": spec.qty,
                            "newClientOrderId": coid,
                            "newOrderRespType": "RESULT",
                        },
                        api_key=KEY,
                        api_secret=SECRET,
                        timestamp_ms=now // 1_000_000,
                    )
                    placed[coid] = (trade.symbol, int(trade.trade_id))
                    request = {"id": next(ids), "method": "order.place", "params": params}
                    await api.send(orjson.dumps(request).decode())
        except ConnectionClosed as exc:  # e.g. the mock dropped it as too slow
            dropped.append(str(exc))
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)
    return placed


async def _pipeline_trades(
    redis: aioredis.Redis, keys: Keys
) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[int, int, int]]]:
    """Map each signal's client order id to its (symbol, trade id) and to its stamps.

    The stamps are ``(ts_recv, ts_signal, ts_intent)``: the ingestor's receive time of the
    trade, the processor's batch time, the trader's intent time (0 when not found).
    """
    trade_of: dict[str, tuple[str, int]] = {}
    stamps: dict[str, tuple[int, int]] = {}
    async for key in redis.scan_iter(match=f"{keys.namespace}:*:signals"):
        raw_key = key.decode().rsplit(":", 1)[0] + ":raw"
        signals: Any = await redis.xrange(key)
        for _, fields in signals:
            cause = fields[b"cause"].decode()  # a frame id: ``ms-seq.k`` in a packed entry
            base = base_entry_id(cause)
            entry: Any = await redis.xrange(raw_key, base, base)
            frame = [f for i, f in raw_frames_of(entry) if i == cause]
            if not frame:
                continue
            _, payload = binance.unwrap(frame[0][b"data"])
            if not isinstance(payload, dict) or "s" not in payload or "t" not in payload:
                continue  # a signal caused by something other than a trade frame: not timed
            coid = client_order_id_for(fields[b"signal_id"].decode())
            trade_of[coid] = (payload["s"], int(payload["t"]))
            stamps[coid] = (int(fields[b"ts_recv"]), int(fields[b"ts_signal"]))
    intents: dict[str, int] = {}
    async for key in redis.scan_iter(match=f"{keys.namespace}:*:orders"):
        orders: Any = await redis.xrange(key)
        for _, fields in orders:
            if b"ts_intent" in fields and b"client_order_id" in fields:
                intents.setdefault(fields[b"client_order_id"].decode(), int(fields[b"ts_intent"]))
    return trade_of, {c: (*s, intents.get(c, 0)) for c, s in stamps.items()}


def _hops(
    events: list[dict[str, Any]],
    trade_of: dict[str, tuple[str, int]],
    stamps: dict[str, tuple[int, int, int]],
    window: tuple[int, int],
) -> str:
    """Return the median and the p99 of each hop of the orders in ``window``, in ms."""
    sent: dict[tuple[str, int], int] = {}
    for e in events:
        if e["ev"] == "trade_sent":
            sent.setdefault((e["symbol"], e["trade_id"]), e["ts"])
    hops: list[list[int]] = [[], [], [], []]
    for e in events:
        coid = e.get("client_order_id") or ""
        if e["ev"] != "order" or not window[0] <= e["ts"] < window[1] or coid not in stamps:
            continue
        t_sent = sent.get(trade_of[coid])
        recv, sig, intent = stamps[coid]
        if t_sent is None or not intent:
            continue
        for n, value in enumerate((recv - t_sent, sig - recv, intent - sig, e["ts"] - intent)):
            hops[n].append(value)
    if not hops[0]:
        return "no orders"
    names = ("mock->ingestor", "->processor batch", "->trader intent", "->order at mock")
    return ", ".join(_hop(name, values) for name, values in zip(names, hops, strict=True))


def _hop(name: str, values: list[int]) -> str:
    s = summarize_ms(values)
    return f"{name} {s['p50']:.2f}/{s['p99']:.2f}/{s['p99.9']:.2f}"


async def _trade_hops(
    redis: aioredis.Redis, keys: Keys, events: list[dict[str, Any]], window: tuple[int, int]
) -> str:
    """Return p50/p99/p99.9 of the first two hops over every trade received in ``window``.

    Orders are few (the venue allows 5 per second), so their p99.9 is their maximum; every
    trade passes the first two hops (the mock to the ingestor's receive stamp, that to the
    processor's batch stamp), which gives their tails from thousands of samples.
    """
    sent: dict[tuple[str, int], int] = {}
    for e in events:
        if e["ev"] == "trade_sent":
            sent.setdefault((e["symbol"], e["trade_id"]), e["ts"])
    hops: list[list[int]] = [[], []]
    async for key in redis.scan_iter(match=f"{keys.namespace}:*:trades"):
        start = "-"
        while True:
            chunk: Any = await redis.xrange(key, start, "+", count=10_000)
            for _, f in chunk:
                recv = int(f[b"ts_recv"])
                t_sent = sent.get((f[b"symbol"].decode(), int(f[b"trade_id"])))
                if t_sent is not None and window[0] <= recv < window[1]:
                    hops[0].append(recv - t_sent)
                    hops[1].append(int(f[b"ts_proc"]) - recv)
            if len(chunk) < 10_000:
                break
            start = "(" + chunk[-1][0].decode()
    if not hops[0]:
        return "no trades"
    names = ("mock->ingestor", "->processor batch")
    text = ", ".join(_hop(name, values) for name, values in zip(names, hops, strict=True))
    return f"{text} (n={len(hops[0]):,})"


async def _one_rate(
    rig: Rig,
    redis: aioredis.Redis,
    rate: int,
    seconds: float,
    n: int,
    notes: list[str],
    gc_probe: bool = False,
) -> tuple[list[int], float, list[int], float, str, str]:
    mock_env = {"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
    probe_dir = rig.tmp / f"gc-{rate}"
    if gc_probe:
        probe_dir.mkdir()
        mock_env[GC_PROBE_ENV] = str(probe_dir)
    market_rate = rate
    background: tuple[str, ...] = ()
    symbols = list(LEVELS)
    if rate > MARKET_MAX:
        market_rate, background = BACKGROUND_MARKET, BACKGROUND_SYMBOLS
        symbols += background
    args = ["-m", "tickpipe.mock_ws", "--binance-port", "0", "--rate", str(market_rate / 2)]
    args += ["--seed", str(n), "--symbols", ",".join(symbols)]
    if background:
        per_symbol = (rate - market_rate) / len(background)
        args += [
            "--blast",
            "--blast-rate",
            str(per_symbol),
            "--blast-symbols",
            ",".join(background),
        ]
        notes.append(
            f"{market_rate:,}/s simulated trades on {'/'.join(LEVELS)} plus "
            f"{rate - market_rate:,}/s blasted trades on {'/'.join(background)}"
        )
    warm_s = 1.0 if seconds < 10 else 2.0
    # Floor.
    gt_floor = rig.tmp / f"gt-floor-{rate}.jsonl"
    port = await rig.start_ready(
        f"mock-floor-{rate}", [*args, "--ground-truth", str(gt_floor)], "binance_port", env=mock_env
    )
    stop = asyncio.Event()
    url = f"ws://127.0.0.1:{port}"
    dropped: list[str] = []
    bps = calibrate_hysteresis(market_rate, n)
    notes.append(f"hysteresis {bps} bps (signals under the venue's 5 orders/s)")
    task = asyncio.create_task(
        floor_client(url, f"{url}/ws-api/v3", stop, dropped, bps, background)
    )
    window = (time.time_ns() + int(warm_s * 1e9), time.time_ns() + int((warm_s + seconds) * 1e9))
    floor_cpu = await _window_cpu(rig, [f"mock-floor-{rate}"], warm_s, seconds)
    stop.set()
    placed = await task
    rig.stop_all([f"mock-floor-{rate}"])
    floor_probe = probe_dir / "floor"
    if gc_probe:  # the floor's mock: the harness alone, kept apart from the pipeline's run
        floor_probe.mkdir()
        for path in probe_dir.glob("gc-*.json"):
            path.rename(floor_probe / path.name)
    floor_spans, floor_rate = _latencies(_gt(gt_floor), placed, window, blasted=bool(background))
    notes += [f"the mock closed the floor's stream: {d}" for d in dropped]
    # Pipeline.
    gt = rig.tmp / f"gt-pipe-{rate}.jsonl"
    port = await rig.start_ready(
        f"mock-{rate}", [*args, "--ground-truth", str(gt)], "binance_port", env=mock_env
    )
    ns = f"lat{rate}"
    env = {
        **mock_env,
        "TICKPIPE_NAMESPACE": ns,
        "TICKPIPE_BINANCE_WS_URL": f"ws://127.0.0.1:{port}",
        "TICKPIPE_BINANCE_WS_API_URL": f"ws://127.0.0.1:{port}/ws-api/v3",
        "TICKPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
        "TICKPIPE_THRESHOLDS": ",".join(
            [f"{s}={v}" for s, v in LEVELS.items()]
            + [f"{s}={BACKGROUND_LEVEL}" for s in background]
        ),
        "TICKPIPE_HYSTERESIS_BPS": bps,
        "TICKPIPE_ORDER_QTY": QTY,
        "TICKPIPE_MAX_ORDERS_PER_S": "10000",  # the default throttle would queue the signals
        "TICKPIPE_SYMBOLS": ",".join(symbols),
        # The trade streams only, as the floor: the rate is then the frames/s both receive (with
        # the default channels the mock adds a bookTicker per trade, twice the frames).
        "TICKPIPE_CHANNELS": "trade",
    }
    stages = [f"{s}-{rate}" for s in ("ingestor", "processor", "trader")]
    for name in stages:
        rig.start(name, ["-m", f"tickpipe.{name}".split("-")[0]], env)

    async def healthy() -> bool:
        for name in stages:
            if rig.children[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {rig.tail(name)}")
        return len([k async for k in redis.scan_iter(match=f"{ns}:health:*")]) >= 3

    await wait_until(healthy, timeout_s=30, what="the stages to report health", every_s=0.05)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    window = (time.time_ns() + int(warm_s * 1e9), time.time_ns() + int((warm_s + seconds) * 1e9))
    calls = await _calls(redis)
    pipe_cpu = await _window_cpu(rig, [f"mock-{rate}", *stages], warm_s, seconds)
    calls = _calls_since(calls, await _calls(redis))
    rig.stop_all([*stages, f"mock-{rate}"])
    held = (rig.tmp / f"trader-{rate}.log").read_text().count(VENUE_LIMIT_HOLD)
    if held:  # the figures then measure the venue's order limit, not the pipeline
        notes.append(f"the trader held {held} orders for the venue's rate limit")
    trade_of, stamps = await _pipeline_trades(redis, Keys(ns))
    events = _gt(gt)
    spans, pipe_rate = _latencies(events, trade_of, window, blasted=bool(background))
    every = await _trade_hops(redis, Keys(ns), events, window)
    notes.append(f"load average before the pipeline window {load}")
    notes.append(
        f"CPU in the window, % of one core: pipeline run {pipe_cpu}; floor run {floor_cpu}"
    )
    per = 1000 / max(1.0, pipe_rate * (seconds + warm_s))
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
    notes.append(
        "Redis commands per 1,000 trades sent (scripts' inner calls included): "
        + ", ".join(f"{name} {n * per:.1f}" for name, n in top)
    )
    if gc_probe:
        notes.append(f"GC pauses, CPU/wall ms, and loop lag: {gc_pauses(probe_dir)}")
        notes.append(f"the floor run's mock: {gc_pauses(floor_probe)}")
        slow = [(a, b) for a, b in spans if b - a > SLOW_NS]
        notes.append(f"orders over {SLOW_NS / 1e6:.0f} ms: {stalls_during(probe_dir, slow)}")
    floor = [b - a for a, b in floor_spans]
    pipe = [b - a for a, b in spans]
    return floor, floor_rate, pipe, pipe_rate, _hops(events, trade_of, stamps, window), every


async def _window_cpu(rig: Rig, names: list[str], warm_s: float, seconds: float) -> str:
    """Wait out the warm-up and the window; return each child's CPU in the window (% of a core).

    Redis is included. A process's CPU time moves less with other jobs' load than its latency,
    so this says what each process costs at the rate (the mock's share is the harness's own).
    """
    await asyncio.sleep(warm_s)
    pids = {name.rsplit("-", 1)[0]: rig.children[name].pid for name in names}
    if rig.redis_proc is not None:
        pids["redis"] = rig.redis_proc.pid
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    await asyncio.sleep(seconds)
    return ", ".join(
        f"{name} {100 * (cpu_seconds(pid) - before[name]) / seconds:.0f}"
        for name, pid in pids.items()
    )


async def _calls(redis: aioredis.Redis) -> dict[str, int]:
    """Return Redis's count of calls per command (``INFO commandstats``)."""
    stats: Any = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _calls_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}


def _fmt(summary: dict[str, float]) -> str:
    if not summary.get("n"):
        return "no orders"
    s = summary
    return f"p50 {s['p50']:.2f} / p99 {s['p99']:.2f} / p99.9 {s['p99.9']:.2f} ms (n={s['n']:.0f})"


RATES = (1000, 5000, 10000)


async def run_latency(
    quick: bool,
    seconds: float | None = None,
    *,
    gc_probe: bool = False,
    rates: tuple[int, ...] = RATES,
) -> list[Row]:
    """Return tick-to-order latency of the pipeline and of the floor at each rate (trades/s)."""
    seconds = seconds or (3.0 if quick else 30.0)
    rows: list[Row] = []
    with temp_dir("tp-bench-latency-") as tmp:
        rig = Rig(tmp)
        try:
            redis = await rig.start_redis()
            for rate in rates:
                n = RATES.index(rate) + 1 if rate in RATES else rate  # the market's seed
                notes: list[str] = []
                floor, floor_rate, pipe, pipe_rate, hops, every = await _one_rate(
                    rig, redis, rate, seconds, n, notes, gc_probe
                )
                f, p = summarize_ms(floor), summarize_ms(pipe)
                met = None
                target = ""
                if rate == 5000:
                    target = "p50 <= 2 ms, p99 <= 10 ms"
                    met = bool(p.get("n")) and p["p50"] <= 2 and p["p99"] <= 10
                rows.append(
                    Row(
                        "tick-to-order",
                        f"pipeline @ {rate:,}/s (sent {pipe_rate:,.0f}/s)",
                        _fmt(p),
                        f"floor {_fmt(f)} (sent {floor_rate:,.0f}/s)",
                        target,
                        met,
                    )
                )
                rows.append(
                    Row(
                        "tick-to-order",
                        f"pipeline @ {rate:,}/s: p50/p99/p99.9 of each hop of the orders (ms)",
                        hops,
                    )
                )
                rows.append(
                    Row(
                        "tick-to-order",
                        f"pipeline @ {rate:,}/s: p50/p99/p99.9 of every trade's hops (ms)",
                        every,
                    )
                )
                rows += [Row("tick-to-order", f"@ {rate:,}/s", note) for note in notes]
            await redis.aclose()
        finally:
            await rig.close()
    return rows
