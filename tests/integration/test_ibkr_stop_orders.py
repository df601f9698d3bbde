"""Stop orders through the IBKR gateway adapter, against the mock, to their end state.

A STOP intent goes out as ``orderType`` ``STP`` with ``price`` = the stop, a STOP_LIMIT one as
``STOP_LIMIT`` with ``price`` = the limit and ``auxPrice`` = the stop. Both rest at the gateway
untriggered until the mock's market crashes through their stops, then fill; the lookups follow
them to ``FILLED`` and the gateway's position equals the fills. What the gateway cannot take
(a quote-quantity order, post-only, FOK) is refused by the adapter with a reason.
"""

from __future__ import annotations

from decimal import Decimal

from tests.builders import build_order_intent
from tests.integration.test_ibkr_venue import orders, run
from tests.waits import until
from tickpipe.common.schema import OrderIntent
from tickpipe.mock_ws import MockExchange

CENT = Decimal("0.01")


def _intent(cid: str, **fields: str) -> OrderIntent:
    base = {"client_order_id": cid, "signal_id": f"sig-{cid}", "venue": "ibkr",
            "symbol": "AAPL", "side": "sell", "qty": "2", "price": None}  # fmt: skip
    return build_order_intent(**(base | fields))


def test_stop_and_stop_limit_orders_rest_trigger_and_fill_at_the_gateway() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.ibkr is not None
        adapter, letters = orders(mock, "o10151")
        last = Decimal(mock.ibkr.sim.last_price("AAPL"))
        print(f"AAPL at {last} when the orders were made")

        def near(factor: str) -> str:
            return str((last * Decimal(factor)).quantize(CENT))

        stop = _intent("tp-stop", order_type="STOP", stop_price=near("0.98"))
        stop_limit = _intent("tp-stoplimit", order_type="STOP_LIMIT", time_in_force="GTC",
                             stop_price=near("0.985"), price=near("0.975"))  # fmt: skip
        for order in (stop, stop_limit):
            assert adapter.order_refusal(order) is None
            placed = await adapter.placer(order)()
            assert placed["status"] == "NEW", placed
        resting = {o.client_order_id: o for o in mock.ibkr.broker.engine.orders}
        assert not resting["tp-stop"].working and not resting["tp-stoplimit"].working
        assert (resting["tp-stop"].type, resting["tp-stoplimit"].type) == (
            "STOP_LOSS", "STOP_LOSS_LIMIT"
        )  # fmt: skip
        assert resting["tp-stoplimit"].stop_price == Decimal(stop_limit.stop_price)
        mock.ibkr.sim.schedule(
            {"name": "crash", "symbol": "AAPL", "duration": 2, "pct": 10}, mock.ibkr.clock()
        )

        async def both_filled() -> list[dict[str, str]]:
            found = [await adapter.lookup(o) for o in (stop, stop_limit)]
            return found if all(f["status"] == "FILLED" for f in found) else []

        found = await until(both_filled, 30, what="both stops triggered and filled")
        assert [f["type"] for f in found] == ["STOP", "STOP_LIMIT"]
        filled = sum((Decimal(f["executedQty"]) for f in found), Decimal(0))
        assert filled == 4
        assert mock.ibkr.status()["positions"] == {"AAPL": "-4"}
        assert letters == []
        assert adapter.order_refusal(_intent("q", qty="", quote_qty="500")) == (
            "ibkr: no quote-quantity orders (no cash quantity in the gateway protocol): use qty"
        )
        assert adapter.order_refusal(
            _intent("f", order_type="LIMIT", price="1", time_in_force="FOK")
        ) == ("ibkr: orders take GTC (sent as DAY) or IOC, not FOK")
        await adapter.rest.aclose()

    run(scenario)
