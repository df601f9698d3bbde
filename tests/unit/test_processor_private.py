"""process_private_batch: executionReports become order updates; the rest is passed over."""

from __future__ import annotations

import pytest

from tests.realdata import REALDATA
from tickpipe.common.errors import DecodeError
from tickpipe.common.schema import RawFrame
from tickpipe.common.units import MS
from tickpipe.processor.core import BadEntry
from tickpipe.processor.private import VenueState, process_private_batch

REAL_REPORT = REALDATA / "nautilus_trader" / "ws_spot_execution_report_binance_us.json"

# protocols.md 2.6: the WS-API user-data form.
NEW_ORDER = (
    '{"subscriptionId":0,"event":{"e":"executionReport","E":1499405658658,"s":"ETHBTC",'
    '"c":"mUvoqJxFIILMdfAW5iGSOW","S":"BUY","o":"LIMIT","f":"GTC","q":"1.00000000",'
    '"p":"0.10264410","P":"0.00000000","F":"0.00000000","g":-1,"C":"","x":"NEW","X":"NEW",'
    '"r":"NONE","i":4293153,"l":"0.00000000","z":"0.00000000","L":"0.00000000","n":"0",'
    '"N":null,"T":1499405658657,"t":-1,"I":8641984,"w":true,"m":false,"M":false,'
    '"O":1499405658657,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1499405658657,'
    '"V":"NONE"}}'
)
CANCELED = (
    NEW_ORDER.replace('"x":"NEW","X":"NEW"', '"x":"CANCELED","X":"CANCELED"')
    .replace('"c":"mUvoqJxFIILMdfAW5iGSOW"', '"c":"cancel-req-1"')
    .replace('"C":""', '"C":"mUvoqJxFIILMdfAW5iGSOW"')
    .replace('"I":8641984', '"I":8641990')  # every execution has its own id
)


def raw(data: str, kind: str = "ws") -> RawFrame:
    return RawFrame(kind, "binance", "private-1", 3, 77, data)


def test_real_execution_report_becomes_an_order_update() -> None:
    state = VenueState("binance")
    out = process_private_batch(state, [("1-0", raw(REAL_REPORT.read_text()))], 123)
    (update,) = out.order_updates
    assert update.symbol == "BTCUSD"
    assert update.client_order_id == "T0ESHzso0banw0QiPFZYgj"
    assert (update.side, update.status, update.exec_type) == ("sell", "FILLED", "TRADE")
    assert (update.last_qty, update.last_price, update.trade_id) == (
        "0.00042000",
        "117290.77000000",
        "88685053",
    )
    assert (update.ts_event, update.ts_recv, update.ts_proc) == (1759347763167 * MS, 77, 123)
    assert out.acked == ["1-0"] and out.dead_letters == []


def test_ws_api_events_and_cancels_use_the_original_client_id() -> None:
    state = VenueState("binance")
    out = process_private_batch(state, [("1-0", raw(NEW_ORDER)), ("1-1", raw(CANCELED))], 1)
    assert [(u.exec_type, u.client_order_id, u.order_id) for u in out.order_updates] == [
        ("NEW", "mUvoqJxFIILMdfAW5iGSOW", "4293153"),
        ("CANCELED", "mUvoqJxFIILMdfAW5iGSOW", "4293153"),
    ]
    assert state.counters["order_updates"] == 2


def test_other_frames_are_passed_over_or_dead_lettered() -> None:
    entries: list[tuple[str, RawFrame | BadEntry]] = [
        ("1-0", raw('{"event":"connect"}', kind="marker")),
        ("1-1", raw('{"id":"d3","status":200,"result":{"subscriptionId":0}}')),
        ("1-2", raw('{"subscriptionId":0,"event":{"e":"listStatus","E":1}}')),
        ("1-3", raw('{"subscriptionId":0,"event":{"e":"eventStreamTerminated","E":1}}')),
        ("1-4", raw("{oops")),
        ("1-5", raw('{"subscriptionId":0,"event":{"e":"executionReport","E":1}}')),
        ("1-6", raw("[]")),
        ("1-7", BadEntry("entry was deleted before it was processed", "")),
        ("1-8", raw(NEW_ORDER)),
    ]
    state = VenueState("binance")
    out = process_private_batch(state, entries, 1)
    assert len(out.order_updates) == 1
    assert [d.entry_id for d in out.dead_letters] == ["1-4", "1-5", "1-6", "1-7"]
    assert "missing field" in out.dead_letters[1].reason
    c = state.counters
    assert (c["markers"], c["replies"], c["ignored"], c["dead_letters"]) == (1, 1, 2, 4)


def test_checkpoint_round_trip_and_replays_are_acked_without_output() -> None:
    state = VenueState("binance")
    entries: list[tuple[str, RawFrame | BadEntry]] = [("5-0", raw(NEW_ORDER))]
    process_private_batch(state, entries, 1)
    restored = VenueState.from_bytes(state.to_bytes(), "binance")
    assert restored.to_bytes() == state.to_bytes()
    again = process_private_batch(restored, [*entries, ("5-1", raw(CANCELED))], 1)
    assert [u.exec_type for u in again.order_updates] == ["CANCELED"]
    assert again.acked == ["5-0", "5-1"]
    assert restored.counters["replayed"] == 1
    with pytest.raises(DecodeError):
        VenueState.from_bytes(state.to_bytes(), "alpaca")


def test_a_repeated_execution_id_is_dropped_even_after_a_checkpoint() -> None:
    state = VenueState("binance")
    out = process_private_batch(
        state, [("6-0", raw(NEW_ORDER)), ("6-1", raw(NEW_ORDER.replace("0,", "0 ,", 1)))], 1
    )
    assert len(out.order_updates) == 1 and state.counters["duplicate_executions"] == 1
    restored = VenueState.from_bytes(state.to_bytes(), "binance")
    again = process_private_batch(restored, [("6-2", raw(NEW_ORDER)), ("6-3", raw(CANCELED))], 1)
    assert [u.exec_type for u in again.order_updates] == ["CANCELED"]
    assert restored.counters["duplicate_executions"] == 2


def test_execution_ids_are_remembered_within_a_bound() -> None:
    from tickpipe.processor.private import SEEN_EXECUTIONS

    state = VenueState("binance")
    for n in range(SEEN_EXECUTIONS + 1):
        assert not state.seen(n)
    assert state.seen(SEEN_EXECUTIONS) and not state.seen(0)  # the oldest was forgotten
    assert len(state.executions) == SEEN_EXECUTIONS


def test_a_malformed_execution_id_is_a_dead_letter() -> None:
    state = VenueState("binance")
    out = process_private_batch(state, [("7-0", raw(NEW_ORDER.replace("8641984", '"x"')))], 1)
    assert out.order_updates == [] and "execution id" in out.dead_letters[0].reason
