"""Binance balance events become entries of the venue's ``balances`` stream."""

from __future__ import annotations

import orjson
import pytest

from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.processor.lanes import PrivateLane
from tickpipe.processor.private import VenueState, process_private_batch

# The documented shapes (Binance Spot "User Data Streams"; the WebSocket API wraps each event).
POSITION = {"e": "outboundAccountPosition", "E": 1564034571105, "u": 1564034571073,
            "B": [{"a": "ETH", "f": "10000.000000", "l": "0.000000"},
                  {"a": "BTC", "f": "1.5", "l": "0.25"}]}  # fmt: skip
UPDATE = {"e": "balanceUpdate", "E": 1573200697110, "a": "BTC", "d": "-100.00000000",
          "T": 1573200697068}  # fmt: skip


def _frame(payload: dict, seq: int = 1) -> RawFrame:
    data = orjson.dumps({"subscriptionId": 0, "event": payload}).decode()
    return RawFrame("ws", "binance", "p1", seq, 5, data)


def test_positions_and_balance_updates_are_written_to_the_balances_stream() -> None:
    settings = Settings(namespace="bl", symbols=("BTCUSDT",))
    lane = PrivateLane(settings, "binance")
    lane.load(None)
    commit = lane.process([("1-0", _frame(POSITION)), ("1-1", _frame(UPDATE, 2))], 77)
    written = [f for key, f in commit.outputs if key == settings.keys.balances("binance")]
    eth, btc, update = written
    assert (eth["event"], eth["asset"], eth["free"], eth["locked"]) == (
        "position", "ETH", "10000.000000", "0.000000",
    )  # fmt: skip
    assert (btc["asset"], btc["free"], btc["locked"], btc["delta"]) == ("BTC", "1.5", "0.25", "")
    assert eth["ts_account"] == str(1564034571073 * 1_000_000)
    assert eth["ts_event"] == str(1564034571105 * 1_000_000) and eth["ts_proc"] == "77"
    assert (update["event"], update["asset"], update["delta"], update["free"]) == (
        "update", "BTC", "-100.00000000", "",
    )  # fmt: skip
    assert update["ts_account"] == str(1573200697068 * 1_000_000) and update["ts_recv"] == "5"
    assert commit.stats["balances"] == 3 and commit.stats["order_updates"] == 0


@pytest.mark.parametrize(
    "payload,reason",
    [({**POSITION, "B": None}, "'B'"), ({**UPDATE, "d": "lots"}, "'d'"),
     ({**POSITION, "B": [{"a": "ETH", "f": "-1", "l": "0"}]}, "'f'")],
)  # fmt: skip
def test_a_malformed_balance_event_is_a_dead_letter(payload: dict, reason: str) -> None:
    state = VenueState("binance")
    out = process_private_batch(state, [("1-0", _frame(payload))], 1)
    (letter,) = out.dead_letters
    assert reason in letter.reason and out.balances == []
