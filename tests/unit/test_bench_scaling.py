"""The scaling benchmark's pure parts: symbols, their spreading over the feed's connections,
the members' leases, the hop latencies, the "limit hit" verdict, the table, and the processor
lane's cost probe."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.__main__ import BENCHES, main
from bench.blast import BlastServer
from bench.frames import streams_symbols, symbol_names, trade_frames, trade_key
from bench.lane_cost import lane_cost
from bench.scaling import (
    Result,
    Setup,
    cpu_busy_ticks,
    format_scaling,
    hop_latencies,
    limit_hit,
    machine_busy_pct,
    member_leases,
    read_feed_log,
    setups,
)
from bench.stage_cost import main as stage_cost_main
from tickpipe.common.names import Partition, partitions_for
from tickpipe.ingestor.subscriptions import parse_symbols


def test_symbol_names_are_distinct_valid_symbols_starting_with_the_mock_pair() -> None:
    names = symbol_names(1000)
    assert len(set(names)) == 1000
    assert names[:3] == ("BTCUSDT", "ETHUSDT", "S0003USDT")
    assert parse_symbols(",".join(names)) == list(names)  # what TICKPIPE_SYMBOLS accepts
    assert symbol_names(1) == ("BTCUSDT",)
    with pytest.raises(ValueError):
        symbol_names(0)


def test_trade_key_names_the_symbol_and_id_of_each_frame() -> None:
    symbols = symbol_names(3)
    frames = trade_frames(symbols, 10, start_ms=0)
    for index, text in enumerate(frames):
        data = orjson.loads(text)["data"]
        assert trade_key(index, symbols) == (data["s"], data["t"])


def test_streams_symbols_reads_stream_names() -> None:
    assert streams_symbols(["btcusdt@trade", "s0003usdt@trade", "junk"]) == {
        "BTCUSDT",
        "S0003USDT",
    }


def test_the_feed_gives_each_partition_its_own_symbols_and_every_trade_once() -> None:
    symbols = symbol_names(200)
    count = 1003  # not a multiple of the symbols: the last round is partial
    feed = BlastServer(count, symbols=symbols)
    seen: list[tuple[str, int]] = []
    for part_symbols in partitions_for("binance", symbols, 4).values():
        indices = feed.indices_for(set(part_symbols))
        keys = [trade_key(n, symbols) for n in indices]
        assert {s for s, _ in keys} <= set(part_symbols)
        for symbol in part_symbols:  # each symbol's ids rise from 1 without a hole
            ids = [i for s, i in keys if s == symbol]
            assert ids == list(range(1, len(ids) + 1))
        for n in indices[:3]:  # the frame at an index is that index's trade
            frame = feed.frames[n]
            data = orjson.loads(frame[frame.index(b"{") :])["data"]
            assert (data["s"], data["t"]) == trade_key(n, symbols)
        seen += keys
    assert sorted(seen) == sorted(trade_key(n, symbols) for n in range(count))
    assert feed.indices_for(None) == list(range(count))
    assert feed.indices_for(set(symbols)) == list(range(count))


def test_member_leases_spread_the_partitions_round_robin() -> None:
    parts = [Partition("binance", n) for n in range(4)]
    assert set(member_leases(parts, 1).values()) == {"m1"}
    assert list(member_leases(parts, 2).values()) == ["m1", "m2", "m1", "m2"]
    assert sorted(member_leases(parts, 4).values()) == ["m1", "m2", "m3", "m4"]
    with pytest.raises(ValueError):
        member_leases(parts, 0)


def test_hop_latencies_time_each_trade_from_the_feed_and_skip_untimed_ones() -> None:
    sent = {("BTCUSDT", 1): 1_000, ("BTCUSDT", 2): 2_000}
    trades = [("BTCUSDT", 1, 1_500, 4_500), ("BTCUSDT", 2, 2_100, 2_600), ("ETHUSDT", 1, 9, 9)]
    assert hop_latencies(sent, trades) == ([500, 100], [3_000, 500])


@pytest.mark.parametrize(
    ("cpu", "machine", "verdict"),
    [
        ({"feed": 5, "ingestor": 97, "processor": 60, "redis": 30}, None, "CPU of the ingestor"),
        ({"feed": 5, "ingestor": 40, "processor": 99, "redis": 30}, 190, "CPU of the processor"),
        ({"feed": 3, "ingestor": 40, "processor": 50, "redis-2": 92}, None, "Redis: redis-2"),
        ({"feed": 96, "ingestor": 40, "processor": 50, "redis": 30}, None, "the feed"),
        ({"feed": 5, "ingestor": 60, "processor": 70, "redis": 50}, None, "the machine's 2 cores"),
        ({"feed": 5, "ingestor": 30, "processor": 40, "redis": 20}, 185, "the machine's 2 cores"),
        ({"feed": 5, "ingestor": 30, "processor": 40, "redis": 20}, 120, "none saturated"),
    ],
)
def test_limit_hit_names_the_saturated_process_else_the_machine_else_none(
    cpu: dict[str, float], machine: float | None, verdict: str
) -> None:
    assert limit_hit(cpu, 2, machine_pct=machine).startswith(verdict)


def test_limit_hit_without_figures_says_so() -> None:
    assert limit_hit({}, 2).startswith("unknown")


def test_machine_busy_counts_everything_but_idle_and_iowait() -> None:
    before = cpu_busy_ticks("cpu  100 0 50 800 50 0 0 0 0 0")
    after = cpu_busy_ticks("cpu  250 0 100 850 100 0 0 0 0 0")
    assert before == (150, 1000)
    assert after == (350, 1300)
    # 200 busy of 300 jiffies on 2 cores: 133 % of one core.
    assert machine_busy_pct(before, after, 2) == pytest.approx(133.33, abs=0.01)
    assert machine_busy_pct(after, after, 2) == 0.0


def test_setups_are_the_issue_rows_in_order() -> None:
    rows = setups()
    assert [(s.symbols, s.members, s.cluster) for s in rows] == [
        (1, 1, False),
        (10, 1, False),
        (200, 1, False),
        (1000, 1, False),
        (200, 1, True),
        (200, 2, True),
        (200, 4, True),
    ]
    assert all(s.shards >= 4 for s in rows if s.cluster)  # a partition for each of 4 members


def test_the_table_has_one_line_per_row_and_shows_a_failed_row() -> None:
    good = Result(
        Setup(10, 1, 1, False),
        trades_per_s=12_345.6,
        cpu_pct={"feed": 3.0, "ingestor": 40.0},
        limit="none saturated",
        us_per_trade=55.2,
        machine_pct=120.0,
        checkpoint_bytes=4_321,
        latency="0.10/1.00, 0.50/5.00 (n=6,000)",
        paced_per_s=2000.0,
    )
    bad = Result(Setup(200, 4, 4, True), problem="TimeoutError: stages ready")
    table = format_scaling([good, bad], 2000, 2).splitlines()
    assert len(table) == 4
    assert "latency at 2,000/s" in table[0]
    assert "| 10 symbols, 1 partition, 1 member, 1 redis-server | 12,346 |" in table[2]
    assert "feed 3, ingestor 40; machine 120" in table[2]
    assert "| 55 | 4,321 |" in table[2]
    assert "4 members, 3-master Cluster | FAILED | TimeoutError: stages ready" in table[3]


def test_scaling_is_a_bench_and_its_sizes_must_be_positive(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "scaling" in BENCHES
    assert main(["--scaling-trades", "0", "scaling"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_lane_cost_counts_one_bar_per_symbol_touched_per_batch_and_the_checkpoint() -> None:
    few = lane_cost(symbols=3, trades=30, batch=10)
    many = lane_cost(symbols=30, trades=30, batch=10)
    assert few.outputs_per_trade["trades"] == many.outputs_per_trade["trades"] == 1.0
    # Each batch flushes the open bar of every symbol it touched, per interval.
    assert few.outputs_per_trade["bars:1s"] == pytest.approx(3 * 3 / 30)
    assert many.outputs_per_trade["bars:1s"] == pytest.approx(1.0)
    assert many.checkpoint_bytes > few.checkpoint_bytes > 0


def test_the_feed_log_leaves_a_line_still_being_written_for_later(tmp_path: Path) -> None:
    log = tmp_path / "feed.jsonl"
    assert read_feed_log(log) == []
    log.write_bytes(b'{"ev":"first_frame","conn":1}\n{"ev":"sent_all","conn":1,"sent":[[0,')
    assert read_feed_log(log) == [{"ev": "first_frame", "conn": 1}]


@pytest.mark.parametrize("argv", [["--batch", "0"], ["--batch", "ten"], ["--runs", "0"]])
def test_stage_cost_refuses_sizes_that_are_not_positive_whole_numbers(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        stage_cost_main(argv)
    assert stopped.value.code == 2
