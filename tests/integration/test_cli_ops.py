"""The operator commands on fakeredis: tail, subscribe, kill switch, replay, export, --help."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import fakeredis
import pandas as pd
import pytest

from tests.realdata import BTCUSDT_CAPTURE
from tickpipe.common.names import Partition, shard_for
from tickpipe.common.schema import RawFrame, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.tools import cli
from tickpipe.tools.cli_ops import run_operator_command
from tickpipe.tools.ops import (
    change_subscription,
    read_recording,
    replay_file,
    resolve_streams,
    set_kill_switch,
    tail,
)

SETTINGS = Settings(namespace="ops", symbols=("BTCUSDT", "ETHUSDT"), shards=2, instance="t")
K = SETTINGS.keys


def test_stream_names_resolve_from_kinds_and_full_names() -> None:
    assert resolve_streams(SETTINGS, "trades") == [K.trades(Partition("binance", 0)),
                                                   K.trades(Partition("binance", 1))]  # fmt: skip
    assert resolve_streams(SETTINGS, "bars:1m")[0].endswith("bars:1m")
    assert resolve_streams(SETTINGS, "orders") == [K.orders("binance")]
    assert resolve_streams(SETTINGS, "ops:{binance:0}:raw") == ["ops:{binance:0}:raw"]
    with pytest.raises(ValueError, match="unknown stream"):
        resolve_streams(SETTINGS, "nope")


def test_tail_prints_new_entries_decoded() -> None:
    async def go() -> str:
        r = fakeredis.FakeAsyncRedis()
        stream = K.orders("binance")
        await r.xadd(stream, {"event": "old"})
        out = io.StringIO()
        ready = asyncio.Event()  # the starting point is fixed: what comes next is shown
        task = asyncio.create_task(tail(r, [stream], out, count=2, block_ms=50, on_ready=ready.set))
        await asyncio.wait_for(ready.wait(), 5)
        await r.xadd(stream, {"v": "1", "event": "intent", "symbol": "BTCUSDT"})
        await r.xadd(stream, {"event": "ack"})
        assert await asyncio.wait_for(task, 5) == 2
        return out.getvalue()

    text = asyncio.run(go())
    assert "event=old" not in text
    lines = text.splitlines()
    assert lines[0].endswith("orders       event=intent symbol=BTCUSDT") and "event=ack" in lines[1]


@pytest.mark.parametrize("through_ingestor", [True, False])
def test_subscribe_writes_one_control_entry_per_partition(
    through_ingestor: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not through_ingestor:  # the command writes the entry itself when ingestor.control is absent

        def missing(name: str) -> object:
            raise ImportError(name)

        monkeypatch.setattr("tickpipe.tools.ops.importlib.import_module", missing)

    async def go() -> tuple[list[str], list[dict[str, str]]]:
        r = fakeredis.FakeAsyncRedis()
        written = await change_subscription(r, SETTINGS, "subscribe", ["solusdt", "BTCUSDT", ""])
        entries = []
        for shard in range(2):
            for _, fields in await r.xrange(K.control(Partition("binance", shard))):
                entries.append({**decode_fields(fields), "shard": str(shard)})
        return written, entries

    written, entries = asyncio.run(go())
    assert len(written) == len(entries) >= 1
    for symbol in ("SOLUSDT", "BTCUSDT"):
        shard = str(shard_for(symbol, 2))
        assert any(e["shard"] == shard and symbol in e["symbols"].split(",")
                   and e["action"] == "subscribe" for e in entries)  # fmt: skip
    with pytest.raises(ValueError):
        asyncio.run(change_subscription(fakeredis.FakeAsyncRedis(), SETTINGS, "drop", ["X"]))


def test_kill_switch_turns_on_off_and_reports() -> None:
    async def go() -> None:
        r = fakeredis.FakeAsyncRedis()
        assert await set_kill_switch(r, SETTINGS, "status") is False
        assert await set_kill_switch(r, SETTINGS, "on") is True
        assert await r.exists(K.kill_switch("binance"))
        assert await set_kill_switch(r, SETTINGS, "off") is False

    asyncio.run(go())


def test_replay_writes_real_frames_as_raw_entries_per_partition() -> None:
    frames = list(read_recording(BTCUSDT_CAPTURE))[:3000]
    assert frames[0][0] > 10**18  # nanoseconds
    ticks = iter(range(0, 10**15, 250_000_000))  # an injected clock: 0.25 s per reading

    async def go() -> tuple[int, list[RawFrame], str]:
        r = fakeredis.FakeAsyncRedis()
        out = io.StringIO()
        stats = await replay_file(r, SETTINGS, iter(frames), conn="rep", out=out, limit=2500,
                                  batch=300, clock=lambda: next(ticks))  # fmt: skip
        part = Partition("binance", shard_for("BTCUSDT", 2))
        raw = [RawFrame.from_fields(f) for _, f in await r.xrange(K.raw(part))]
        return stats.frames, raw, out.getvalue()

    n, raw, progress = asyncio.run(go())
    assert n == 2500 and len(raw) == 2501
    assert raw[0].kind == "marker" and [f.seq for f in raw[1:4]] == [1, 2, 3]
    assert raw[1].data == frames[0][1] and raw[1].ts_recv == frames[0][0]
    assert [f.seq for f in raw[1:]] == list(range(1, 2501))
    # the recorder's REST depth snapshot (line 8, no symbol in it) is kept, in place, as the
    # ingestor writes one
    snap = raw[8]
    assert (snap.kind, snap.channel) == ("rest", "depth_snapshot")
    assert '"symbol":"BTCUSDT"' in snap.data and '"lastUpdateId":50093239218' in snap.data
    lines = progress.splitlines()
    assert len(lines) > 3 and lines[0].startswith("replayed ")
    assert lines[-1].startswith("replayed 2,500 frames (1 rest, 2,499 ws) into 1 partition(s)")


def test_microsecond_recordings_are_scaled(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text('1680652800004107 {"stream":"btcusdt@trade","data":{}}\nbad line\n')
    assert [r[:2] for r in read_recording(path)] == [
        (1680652800004107000, '{"stream":"btcusdt@trade","data":{}}')
    ]


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("tail", "subscribe", "unsubscribe", "kill-switch", "replay", "export", "up"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: tickpipe " + command in capsys.readouterr().out


def test_export_needs_a_symbol_for_trades(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli._parser().parse_args(["export", "trades", "--out", str(tmp_path / "x.csv")])
    assert run_operator_command(SETTINGS, "redis://127.0.0.1:1/0", args) == 2
    assert "trades needs a symbol" in capsys.readouterr().err


def test_an_unreachable_redis_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli._parser().parse_args(["kill-switch", "status"])
    # Port 1 refuses connections at once.
    assert run_operator_command(SETTINGS, "redis://127.0.0.1:1/0", args) == 1
    assert "Redis unreachable" in capsys.readouterr().err


def test_export_writes_parquet_and_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = fakeredis.FakeServer()
    part = Partition("binance", shard_for("BTCUSDT", 2))

    async def seed() -> None:
        r = fakeredis.FakeAsyncRedis(server=server)
        for i in range(3):
            await r.xadd(K.trades(part), {"symbol": "BTCUSDT", "price": f"1{i}.5", "qty": "0.1",
                                          "side": "buy", "trade_id": str(i), "ts_event": str(i),
                                          "ts_recv": str(i), "ts_proc": "0"})  # fmt: skip

    asyncio.run(seed())
    monkeypatch.setattr("tickpipe.tools.cli_ops.connect_redis",
                        lambda url: fakeredis.FakeAsyncRedis(server=server))  # fmt: skip
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"t.{fmt}"
        args = cli._parser().parse_args(
            ["export", "trades", "--symbol", "btcusdt", "--start", "1", "--format", fmt,
             "--out", str(out)]
        )  # fmt: skip
        assert run_operator_command(SETTINGS, "redis://fake", args) == 0
        frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out, index_col=0)
        assert list(frame["price"]) == [11.5, 12.5]
