"""Packed raw entries (several frames per entry) give the processor exactly what one-frame
entries give: every trade once, every entry acknowledged once, replays after a crash silent."""

from __future__ import annotations

import dataclasses
import random

import fakeredis
import hiredis

from tests.unit.test_processor_core import PARTITION, new_state, real_entries, restore, view
from tickpipe.common.contract import base_entry_id
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.writer import APPEND_SCRIPT, encode_append
from tickpipe.processor.core import BatchOutput, PartitionState, process_batch
from tickpipe.processor.entries import BadEntry
from tickpipe.processor.shell import read_count
from tickpipe.processor.wire import decode_flat_entries

TS_NOW = 1_800_000_000_000_000_000


def _written(frames: list[RawFrame], rng: random.Random) -> list[list[object]]:
    """Append ``frames`` as the ingestor does (calls of random sizes); return the flat entries."""
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    at = 0
    while at < len(frames):
        size = rng.choice([1, 2, 7, 64, 100, 300])
        reader = hiredis.Reader()
        reader.feed(encode_append("raw", frames[at : at + size]))
        command = reader.gets()
        assert redis.eval(APPEND_SCRIPT, 1, "raw", *command[4:]) == []
        at += size
    entries: list[list[object]] = redis.eval(
        "return redis.call('XRANGE', KEYS[1], '-', '+')", 1, "raw"
    )
    return entries


def _outcome(outs: list[BatchOutput]) -> dict[str, object]:
    """What must not depend on batching or packing (frame ids aside): see ``view``."""
    seen = view(outs)
    return {
        "trades": [(t.symbol, t.trade_id, t.price, t.qty, t.ts_recv) for t in seen["trades"]],  # type: ignore[attr-defined]
        "signals": [s.signal_id for s in seen["signals"]],  # type: ignore[attr-defined]
        "final_bars": seen["final_bars"],
        "latest_bars": seen["latest_bars"],
    }


def test_packed_entries_give_every_trade_once_and_ack_every_entry_once() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    frames = [frame for _, frame in real_entries()]
    # ground truth: the same frames as one-frame entries, in one batch
    truth = process_batch(new_state(), [(f"1-{n}", f) for n, f in enumerate(frames)], TS_NOW)
    assert truth.trades

    flat = _written(frames, rng)
    decoded = decode_flat_entries(flat)
    assert [f for _, f in decoded] == frames and not any(
        isinstance(f, BadEntry) for _, f in decoded
    )
    assert len(flat) < len(frames) // 4  # the capture's bursts did share entries
    entry_ids = [e[0].decode() for e in flat]  # type: ignore[index, union-attr]

    # batches of whole entries, a checkpoint round trip after each; some commits are lost with
    # the member, and the next one reads those entries again as pending, from the checkpoint
    state, outs, acked, at, lost = new_state(), [], [], 0, 0
    while at < len(flat):
        size = rng.randrange(1, 12)
        batch = decode_flat_entries(flat[at : at + size])
        before = state.to_bytes()
        out = process_batch(state, batch, TS_NOW)
        if rng.random() < 0.3:  # lost: its outputs never written, its checkpoint never set
            lost += 1
            state = PartitionState.from_bytes(before, PARTITION, "binance", new_state().strategies)
            out = process_batch(state, batch, TS_NOW, pending=True)
        outs.append(out)
        acked += out.acked
        state = restore(state)
        at += size
    print(f"{len(flat)} entries, {len(frames)} frames, {lost} commits lost")
    assert acked == entry_ids  # every entry once, by its own id; frames never acked by frame id
    assert _outcome(outs) == _outcome([truth])
    assert {base_entry_id(t.src.partition("#")[0]) for o in outs for t in o.trades} <= set(
        entry_ids
    )
    assert len({t.src for o in outs for t in o.trades}) == len(truth.trades)  # frame ids unique
    signal_ids = [s.signal_id for o in outs for s in o.signals]
    assert len(signal_ids) == len(set(signal_ids)) == len(truth.signals)


def test_a_member_reads_about_batch_size_frames_whatever_the_packing() -> None:
    frame = RawFrame("ws", "binance", "c1", 1, 2, "x")
    ones = [(f"1-{n}", frame) for n in range(500)]
    packed = [(f"2-{n}" + (f".{k}" if k else ""), frame) for n in range(8) for k in range(64)]
    assert read_count(500, ones, 500) == 500
    assert read_count(500, packed, 500) == 7  # 8 entries held 512 frames
    assert read_count(500, [], 9) == 9
    assert read_count(500, [("3-1.5", dataclasses.replace(frame))], 9) == 9  # no entry start
    assert read_count(1, packed, 500) == 1
