"""Every Binance market channel the settings accept is normalised into a stream, field for field.

"Nothing subscribed is then dropped": for each channel Binance offers per symbol, the mock's
frames of that channel go through the processor's lane as its raw entries, and every frame
becomes an entry of the channel's output stream whose fields are the frame's own values (read
from the frame here, not from the parser). Order-book diffs are checked against the mock's book
itself. The mock's market is seeded (printed, to replay a failure).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tickpipe.common.errors import ConfigError
from tickpipe.common.names import Partition
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import CHANNEL_NAMES, load_settings
from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.market import MarketSim
from tickpipe.processor.lanes import PartitionLane

SEED = 21
SYMBOL = "BTCUSDT"
MS = 1_000_000
T0_MS = int(dt.datetime(2026, 11, 25, 13, 37, 12, tzinfo=dt.UTC).timestamp() * 1000)
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d",
             "3d", "1w", "1M")  # fmt: skip
DIFFS = ("depth", "depth@100ms", "depth@1000ms")
PARTIALS = tuple(f"depth{n}{s}" for n in (5, 10, 20) for s in ("", "@100ms", "@1000ms"))
KLINES = tuple(f"kline_{i}{tz}" for i in INTERVALS for tz in ("", "@+08:00"))
TICKERS = ("ticker", "miniTicker", "ticker_1h", "ticker_4h", "ticker_1d")
#: Binance Spot's per-symbol market channels (web-socket-streams.md), spelled out here.
EVERY_CHANNEL = (
    "trade", "aggTrade", "bookTicker", *DIFFS, *PARTIALS, *KLINES, *TICKERS, "avgPrice",
)  # fmt: skip

Frame = tuple[int, dict[str, Any]]  # (receive time ns, the combined-stream frame)


def _mock_session() -> tuple[dict[str, list[Frame]], dict[str, Any], dict[str, Any]]:
    """Run the mock's feed for a few seconds with every channel wanted.

    Returns the frames per channel, the REST depth snapshot taken before any diff, and the
    mock's own book (top 10) after the last diff of each diff channel.
    """
    print(f"mock market seed {SEED}")
    market = MarketSim([SYMBOL], seed=SEED, trades_per_s=40.0)
    feed = MarketFeed(market, SEED)
    low = SYMBOL.lower()
    wanted = {f"{low}@{c}" for c in EVERY_CHANNEL}
    feed.second_events(T0_MS, 0, wanted)  # the +08:00 series start when first wanted
    for interval_ms in (100, 1000):
        feed.depth_events(interval_ms, T0_MS, wanted)
    snapshot = feed.depth(SYMBOL, 1000)
    frames: dict[str, list[Frame]] = {}
    books: dict[str, Any] = {}
    market.trades_due(T0_MS * MS)
    for step in range(1, 6):
        now_ms = T0_MS + step * 1000
        events = feed.on_trades(market.trades_due(now_ms * MS), now_ms)
        for interval_ms in (100, 1000):
            events += feed.depth_events(interval_ms, now_ms, wanted)
        events += feed.second_events(now_ms + 100, step, wanted)
        for stream, payload, _ in events:
            if stream in wanted:
                frame = {"stream": stream, "data": payload}
                frames.setdefault(stream.partition("@")[2], []).append((now_ms * MS, frame))
        books[str(step)] = feed.books[SYMBOL].snapshot(10)
    return frames, snapshot, books


SESSION = _mock_session()


def _run(channel: str, frames: list[Frame], before: tuple[RawFrame, ...] = ()) -> list[Any]:
    settings = load_settings({"TICKPIPE_CHANNELS": channel, "TICKPIPE_SYMBOLS": SYMBOL},
                             dotenv_path=None)  # fmt: skip
    lane = PartitionLane(settings, Partition("binance", 0))
    raws = [*before]
    raws += [RawFrame("ws", "binance", "c1", n + 1, ts, orjson.dumps(f).decode())
             for n, (ts, f) in enumerate(frames)]  # fmt: skip
    entries = [(f"{T0_MS + n}-0", raw) for n, raw in enumerate(raws)]
    commit = lane.process(entries, T0_MS * MS + 10**10)
    return [commit, lane.state.counters]


def _outputs(commit: Any, suffix: str) -> list[dict[str, str]]:
    return [fields for stream, fields in commit.outputs if stream.endswith("}:" + suffix)]


def _check_trade(channel: str, data: dict[str, Any], row: dict[str, str]) -> None:
    trade_id = data["t"] if channel == "trade" else data["a"]
    side = "sell" if data["m"] else "buy"
    assert (row["symbol"], row["trade_id"], row["price"], row["qty"], row["side"]) == (
        data["s"], str(trade_id), data["p"], data["q"], side,
    )  # fmt: skip
    assert row["ts_event"] == str(data["T"] * MS)


def _check_quote(channel: str, data: dict[str, Any], row: dict[str, str]) -> None:
    assert (row["symbol"], row["update_id"]) == (data["s"], str(data["u"]))
    assert (row["bid_price"], row["bid_qty"], row["ask_price"], row["ask_qty"]) == (
        data["b"], data["B"], data["a"], data["A"],
    )  # fmt: skip


def _levels(levels: list[list[str]]) -> str:
    return ",".join(f"{price}:{qty}" for price, qty in levels)


def _check_partial(channel: str, data: dict[str, Any], row: dict[str, str]) -> None:
    name, _, speed = channel.partition("@")
    assert (row["symbol"], row["update_id"], row["depth"]) == (
        SYMBOL, str(data["lastUpdateId"]), name.removeprefix("depth"),
    )  # fmt: skip
    assert row["update_ms"] == ("100" if speed == "100ms" else "1000")
    assert (row["bids"], row["asks"]) == (_levels(data["bids"]), _levels(data["asks"]))
    assert (row["bid_price"], row["bid_qty"]) == tuple(data["bids"][0])
    assert (row["ask_price"], row["ask_qty"]) == tuple(data["asks"][0])


def _check_kline(channel: str, data: dict[str, Any], row: dict[str, str]) -> None:
    k = data["k"]
    interval = channel.removeprefix("kline_")
    assert k["i"] == interval.removesuffix("@+08:00")
    assert (row["symbol"], row["interval"], row["ts_open"]) == (k["s"], interval, str(k["t"] * MS))
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"]) == (
        k["o"], k["h"], k["l"], k["c"], k["v"],
    )  # fmt: skip
    assert (row["trades"], row["first_trade_id"], row["last_trade_id"]) == (
        str(k["n"]), str(k["f"]), str(k["L"]),
    )  # fmt: skip
    assert (row["final"], row["ts_event"]) == ("1" if k["x"] else "0", str(data["E"] * MS))


_WINDOWS = {"24hrTicker": "24h", "24hrMiniTicker": "24h", "1hTicker": "1h", "4hTicker": "4h",
            "1dTicker": "1d"}  # fmt: skip


def _check_ticker(channel: str, data: dict[str, Any], row: dict[str, str]) -> None:
    assert (row["symbol"], row["channel"], row["ts_event"]) == (
        data["s"], channel, str(data["E"] * MS),
    )  # fmt: skip
    if channel == "avgPrice":
        assert (row["window"], row["weighted_avg"]) == (data["i"], data["w"])
        assert row["ts_close"] == str(data["T"] * MS)
        return
    assert row["window"] == _WINDOWS[data["e"]]
    assert (row["open"], row["high"], row["low"], row["last"]) == (
        data["o"], data["h"], data["l"], data["c"],
    )  # fmt: skip
    assert (row["volume"], row["quote_volume"]) == (data["v"], data["q"])
    if channel == "miniTicker":
        assert row["weighted_avg"] == row["price_change"] == row["first_trade_id"] == ""
        return
    assert (row["price_change"], row["price_change_pct"], row["weighted_avg"]) == (
        data["p"], data["P"], data["w"],
    )  # fmt: skip
    assert (row["first_trade_id"], row["last_trade_id"], row["trades"]) == (
        str(data["F"]), str(data["L"]), str(data["n"]),
    )  # fmt: skip
    assert (row["ts_open"], row["ts_close"]) == (str(data["O"] * MS), str(data["C"] * MS))
    if channel == "ticker":
        assert (row["bid_price"], row["ask_price"]) == (data["b"], data["a"])


Check = Callable[[str, dict[str, Any], dict[str, str]], None]


def _table(channel: str) -> tuple[str, Check]:
    """The output stream of ``channel`` and how its entries must mirror the frames."""
    if channel in ("trade", "aggTrade"):
        return "trades", _check_trade
    if channel == "bookTicker":
        return "quotes", _check_quote
    if channel in PARTIALS:
        return "partial-depth", _check_partial
    if channel in KLINES:
        return "venue-bars", _check_kline
    return "tickers", _check_ticker


def test_the_settings_accept_exactly_every_channel_binance_offers() -> None:
    assert sorted(CHANNEL_NAMES) == sorted(EVERY_CHANNEL)
    for channel in EVERY_CHANNEL:
        settings = load_settings({"TICKPIPE_CHANNELS": channel}, dotenv_path=None)
        assert settings.channels == (channel,)


@pytest.mark.parametrize("channel", [c for c in EVERY_CHANNEL if c not in DIFFS])
def test_every_frame_of_a_channel_is_one_entry_of_its_stream_with_the_frames_values(
    channel: str,
) -> None:
    frames = SESSION[0].get(channel, [])
    assert frames, f"the mock sent no frame of {channel}"
    commit, counters = _run(channel, frames)
    suffix, check = _table(channel)
    rows = _outputs(commit, suffix)
    assert _outputs(commit, "dead-letters") == [] and counters["ignored"] == 0
    assert len(rows) == len(frames), f"{len(frames)} frames of {channel}, {len(rows)} entries"
    for (_, frame), row in zip(frames, rows, strict=True):
        check(channel, frame["data"], row)
    if suffix == "venue-bars":  # each push of a candle is one more revision of it
        seen: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row["interval"], row["ts_open"])
            assert row["revision"] == str(seen.get(key, -1) + 1)
            seen[key] = int(row["revision"])


@pytest.mark.parametrize("channel", DIFFS)
def test_every_diff_of_a_diff_channel_is_applied_and_the_book_equals_the_mocks(
    channel: str,
) -> None:
    frames, snapshot, books = SESSION[0].get(channel, []), SESSION[1], SESSION[2]
    assert len(frames) >= 2, f"the mock sent {len(frames)} frames of {channel}"
    body = {"symbol": SYMBOL, "request": {"path": "/api/v3/depth", "params": {}},
            "reason": "test", "response": snapshot}  # fmt: skip
    rest = RawFrame("rest", "binance", "", 0, T0_MS * MS, orjson.dumps(body).decode(),
                    "depth_snapshot")  # fmt: skip
    commit, counters = _run(channel, frames, (rest,))
    assert counters["depth_diffs"] == len(frames)
    assert (counters["diffs_dropped"], counters["book_gaps"]) == (0, 0)
    tops = _outputs(commit, "book")
    last = frames[-1][1]["data"]
    step = str((frames[-1][0] // MS - T0_MS) // 1000)
    truth = books[step]
    assert tops[-1]["update_id"] == str(last["u"]) == str(truth["lastUpdateId"])
    assert (tops[-1]["bids"], tops[-1]["asks"]) == (
        _levels(truth["bids"]), _levels(truth["asks"]),
    )  # fmt: skip


@pytest.mark.parametrize(
    "value,message",
    [
        ("klines_1m", "unknown channel(s) klines_1m (did you mean kline_1m?)"),
        ("trade,depht5", "unknown channel(s) depht5 (did you mean depth5?)"),
        ("depth,depth@100ms", "depth and depth@100ms both feed the order book from diffs"),
        (" , ", "name at least one channel"),
    ],
)
def test_a_wrong_channel_is_one_line_naming_the_setting_and_the_fix(
    value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"TICKPIPE_CHANNELS": value}, dotenv_path=None)
    text = str(caught.value)
    assert text.startswith("TICKPIPE_CHANNELS=") and message in text and "\n" not in text


def test_utc_and_utc8_klines_of_one_interval_stay_two_series() -> None:
    """Both series of ``1m`` open on the same minutes: they must not share revisions."""
    frames = SESSION[0]
    both = sorted(frames["kline_1m"] + frames["kline_1m@+08:00"], key=lambda f: f[0])
    commit, _ = _run("kline_1m,kline_1m@+08:00", both)
    rows = _outputs(commit, "venue-bars")
    assert len(rows) == len(both)
    for interval in ("1m", "1m@+08:00"):
        mine = [r for r in rows if r["interval"] == interval]
        sent = [f["data"]["k"] for _, f in both if f["stream"].endswith("@kline_" + interval)]
        assert [(r["ts_open"], r["close"]) for r in mine] == [
            (str(k["t"] * MS), k["c"]) for k in sent
        ]
        opened: dict[str, int] = {}
        for row in mine:  # 0, 1, 2... per candle of this series alone
            assert row["revision"] == str(opened.get(row["ts_open"], -1) + 1)
            opened[row["ts_open"]] = int(row["revision"])
    assert {r["ts_open"] for r in rows if r["interval"] == "1m"} & {
        r["ts_open"] for r in rows if r["interval"] == "1m@+08:00"
    }, "the two series should share open times for this test to mean anything"


@pytest.mark.parametrize(
    ("sent", "channel", "reason", "output"),
    [
        (
            "kline_5m",
            "kline_15m",
            "kline of interval 5m arrived on channel kline_15m",
            "venue-bars",
        ),
        ("ticker_4h", "ticker_1h", "4hTicker event arrived on channel ticker_1h", "tickers"),
    ],
)
def test_a_frame_of_another_series_than_its_stream_is_a_dead_letter(
    sent: str, channel: str, reason: str, output: str
) -> None:
    """A kline of another interval, a ticker of another window than its stream names."""
    _, frame = SESSION[0][sent][0]
    wrong = {"stream": frame["stream"].replace(sent, channel), "data": frame["data"]}
    commit, _ = _run(channel, [(T0_MS * MS, wrong)])
    (letter,) = _outputs(commit, "dead-letters")
    assert reason in letter["reason"]
    assert _outputs(commit, output) == []
