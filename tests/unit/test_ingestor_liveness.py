"""Unit tests of the ingestor's cadence-based liveness judgement."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.realdata import REALDATA
from tickpipe.ingestor.liveness import Cadence, stream_of

S = 1_000_000_000


def cadence(**extra: int) -> Cadence:
    return Cadence(0, **({"max_silence_ns": 60 * S, "floor_ns": 2 * S} | extra))


def feed(c: Cadence, streams: list[str], times: int, every_ns: int, now: int = 0) -> int:
    """Let each of ``streams`` deliver ``times`` frames ``every_ns`` apart after ``now``.

    Returns the time of the last frames.
    """
    for _ in range(times):
        now += every_ns
        for name in streams:
            c.seen(name, now)
    return now


def feed_mixed(
    c: Cadence, ticks: int, tick_ns: int, streams: dict[str, Callable[[int], bool]]
) -> int:
    """Let ``ticks`` ticks pass ``tick_ns`` apart from 0; at tick n, each of ``streams`` whose
    test passes n delivers a frame. Returns the time of the last tick."""
    now = 0
    for n in range(ticks):
        now += tick_ns
        for name, delivers in streams.items():
            if delivers(n):
                c.seen(name, now)
    return now


def every(ticks: int) -> Callable[[int], bool]:
    return lambda n: n % ticks == 0


def test_stream_of_reads_the_stream_name_without_decoding() -> None:
    assert stream_of('{"stream":"btcusdt@trade","data":{}}') == "btcusdt@trade"
    assert stream_of(b'{"stream":"!serverShutdown","data":{}}') == "!serverShutdown"
    assert stream_of('{"result":null,"id":1}') is None
    assert stream_of(b"\x00\x01") is None


def test_stream_of_does_not_depend_on_whitespace_or_key_order() -> None:
    """A proxy that re-encodes frames must not blind liveness and gap detection."""
    frames = captured()[:200]
    assert len(frames) == 200
    for _, frame in frames:
        obj = json.loads(frame)
        name = obj["stream"]
        spaced = json.dumps(obj)  # '{"stream": "...", "data": {...}}'
        pretty = json.dumps(obj, indent=2)
        reordered = json.dumps({"data": obj["data"], "stream": name}, separators=(",", ":"))
        for text in (spaced, pretty, " " + spaced, reordered):
            assert stream_of(text) == name, text[:60]
            assert stream_of(text.encode()) == name
    escaped = '{"stream":"btcusdt\\u0040trade","data":{}}'
    assert stream_of(escaped) == "btcusdt@trade"
    assert stream_of('{ "result": null, "id": 1 }') is None
    assert stream_of('{"stream": "x@trade"}') is None  # no data: not a combined frame
    assert stream_of('{"subscriptionId":0,"event":{"e":"balanceUpdate"}}') is None
    assert stream_of('{"stream": "btcusdt@trade", "data": {"e": "tra') is None  # truncated


def captured() -> list[tuple[int, str]]:
    path = REALDATA / "cryptofeed" / "20210814_4fe0297" / "BINANCE.ws.1.0"
    out = []
    for line in path.read_text().splitlines():
        stamp, sep, frame = line.partition(": ")
        if sep and frame.startswith("{"):
            out.append((int(float(stamp) * S), frame))
    return out


def test_stream_of_reads_real_combined_frames_and_a_real_session_is_never_stale() -> None:
    frames = captured()
    assert len(frames) > 100
    c = Cadence(frames[0][0], max_silence_ns=60 * S, floor_ns=2 * S)
    for ts, frame in frames:
        name = stream_of(frame)
        assert name == json.loads(frame)["stream"]
        assert c.stale(ts) is None
        c.seen(name, ts)
    assert len(c.streams) > 4
    last = frames[-1][0]
    assert c.stale(last + 120 * S) is not None  # the same session gone mute


def test_a_quiet_symbol_on_a_busy_connection_is_not_stale() -> None:
    c = cadence()
    # The quiet stream learns a 0.1 s cadence, then stops.
    now = feed(c, ["ethusdt@trade"], 5, S // 10)
    for _ in range(600):  # the busy stream keeps going for 60 s
        now += S // 10
        c.seen("btcusdt@trade", now)
        assert c.stale(now) is None


def test_all_streams_far_past_their_cadence_is_stale() -> None:
    c = cadence()
    now = feed(c, ["btcusdt@trade", "ethusdt@trade"], 10, S // 10)
    assert c.stale(now + S) is None  # within the 2 s floor
    why = c.stale(now + 3 * S)
    assert why is not None and "all 2 streams" in why


def test_slow_streams_get_proportionally_more_room() -> None:
    c = cadence()
    now = feed(c, ["btcusdt@kline_1m"], 5, 5 * S)  # one frame every 5 s
    assert c.stale(now + 40 * S) is None  # 10 x 5 s = 50 s allowed
    assert c.stale(now + 55 * S) is not None


def test_no_frame_at_all_for_the_maximum_is_stale_even_while_learning() -> None:
    c = cadence(max_silence_ns=10 * S)
    assert c.stale(9 * S) is None
    why = c.stale(11 * S)
    assert why is not None and "no frame" in why
    c.seen(None, 11 * S)  # a reply counts as a frame of the connection
    assert c.stale(12 * S) is None


def test_one_silent_stream_among_flowing_ones_is_named() -> None:
    """A subscription that stops while its siblings on the connection flow is lost, not quiet."""
    c = cadence()
    # Both streams learn a 0.1 s cadence.
    now = feed(c, ["btcusdt@trade", "btcusdt@depth@100ms"], 20, S // 10)
    silent_at = now
    for _ in range(100):  # the trade stream goes silent; depth keeps flowing for 10 s
        now += S // 10
        c.seen("btcusdt@depth@100ms", now)
        assert c.stale(now) is None  # the connection as a whole is alive
        lost = c.silent_streams(now)
        if now - silent_at <= 2 * S:  # within the floor: no alarm yet
            assert lost == []
    assert [name for name, _ in c.silent_streams(now)] == ["btcusdt@trade"]
    c.seen("btcusdt@trade", now + 1)  # it comes back: no longer silent
    assert c.silent_streams(now + 1) == []


def test_a_stream_that_was_always_irregular_gets_its_longest_gap_as_room() -> None:
    """Quiet by nature: a symbol that trades in bursts with long pauses raises no false alarm."""
    c = cadence()
    now = 0
    for burst in range(4):  # ten trades 10 ms apart, then a 20 s pause, four times
        now = feed(c, ["ethusdt@trade"], 10, S // 100, now)
        if burst < 3:
            now += 20 * S
            c.seen("ethusdt@trade", now)
    for _ in range(300):  # 30 s with depth flowing and no trade: within 2 x the longest gap
        now += S // 10
        c.seen("ethusdt@depth@100ms", now)
        assert c.silent_streams(now) == []


def test_silent_streams_wait_until_the_connection_itself_is_judged() -> None:
    """When every stream stops, the connection is stale; no stream is singled out."""
    c = cadence()
    now = feed(c, ["btcusdt@trade", "ethusdt@trade"], 20, S // 10)
    assert c.silent_streams(now + 5 * S) == []
    assert c.stale(now + 5 * S) is not None


def test_every_stream_of_one_symbol_quiet_is_a_quiet_symbol_not_a_lost_one() -> None:
    """A halted symbol stops trading and its book stops moving: that is the market, not a
    lost subscription. A lost one leaves the symbol's other streams flowing."""
    c = cadence()
    names = [f"{s}@{k}" for s in ("btcusdt", "ethusdt") for k in ("trade", "depth@100ms")]
    now = feed(c, names, 20, S // 10)
    # BTCUSDT halts: both of its streams stop; ETHUSDT flows.
    now = feed(c, ["ethusdt@trade", "ethusdt@depth@100ms"], 100, S // 10, now)
    assert c.silent_streams(now) == []
    assert c.quiet_symbols(now) == ["btcusdt"]
    c.seen("btcusdt@trade", now + 1)  # trading resumes
    assert c.quiet_symbols(now + 1) == []


def test_a_whole_connection_stalling_singles_out_no_stream() -> None:
    """Streams with different cadences run past their bounds at different times after a stall;
    none of them is a lost subscription, since nothing flowed after the first bound ran out."""
    c = cadence(floor_ns=S // 2)
    streams = {"btcusdt@trade": every(1), "ethusdt@trade": every(5)}  # 20 ms and 100 ms
    now = feed_mixed(c, 200, S // 50, streams)
    for step in range(1, 400):  # silence everywhere, checked every 10 ms
        assert c.silent_streams(now + step * S // 100) == []
        assert c.quiet_symbols(now + step * S // 100) == []


def test_a_halt_flags_no_stream_while_its_streams_run_past_their_bounds_one_by_one() -> None:
    """A halted symbol's streams have different bounds (a regular depth stream runs out first);
    none is a lost subscription while its own siblings are silent too."""
    c = cadence(floor_ns=S // 2)
    streams = {
        "ethusdt@depth@100ms": every(1),  # 10 ms
        "btcusdt@depth@100ms": every(10),  # 100 ms, regular
        "btcusdt@trade": lambda n: n % 7 == 0 or n in (100, 101, 102),  # a 0.7 s longest gap
        "btcusdt@bookTicker": every(3),
    }
    now = feed_mixed(c, 300, S // 100, streams)
    quiet_seen = False
    for step in range(1, 500):  # BTCUSDT halts; ETHUSDT flows
        now += S // 100
        c.seen("ethusdt@depth@100ms", now)
        assert c.silent_streams(now) == [], step
        quiet_seen = quiet_seen or c.quiet_symbols(now) == ["btcusdt"]
    assert quiet_seen


def test_a_halts_streams_resume_one_by_one_and_none_is_flagged() -> None:
    """When a halt ends, the symbol's trades resume before its next depth diff: the depth stream,
    long past its bound, must get its bound again from the moment its symbol resumed. A stream
    that stays silent for that long after its siblings resumed is still a lost subscription."""
    c = cadence(floor_ns=S // 2)
    names = ["btcusdt@trade", "btcusdt@bookTicker", "btcusdt@depth@100ms", "ethusdt@trade"]
    now = feed(c, names, 30, S // 10)
    # BTCUSDT halts for 9 s; ETHUSDT flows.
    now = feed(c, ["ethusdt@trade"], 90, S // 10, now)
    assert c.quiet_symbols(now) == ["btcusdt"] and c.silent_streams(now) == []
    # The halt ends: a trade and a book ticker first, the depth diff some time later.
    resumed = now + S // 100
    c.seen("btcusdt@trade", resumed)
    c.seen("btcusdt@bookTicker", resumed)
    for step in range(1, 50):  # 0.49 s with no depth diff yet, while the rest flows
        t = resumed + step * S // 100
        c.seen("ethusdt@trade", t)
        c.seen("btcusdt@trade", t)
        assert c.silent_streams(t) == [], step
    # The depth stream never comes back: past its bound after the resumption, it is named.
    later = resumed + 3 * S
    c.seen("btcusdt@trade", later)
    c.seen("ethusdt@trade", later)
    assert [name for name, _ in c.silent_streams(later)] == ["btcusdt@depth@100ms"]
