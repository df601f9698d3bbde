"""The IBKR venue package against the gateway mock: orders with questions, the ingest slot.

Faults named here: a confirmation question answered blindly (only allow-listed message ids are
confirmed; anything else is declined, dead-lettered and never reaches the market), and an
``smd`` subscription that lapses after the gateway's expiry unless it is sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.builders import build_order_intent
from tickpipe.common.errors import AmbiguousOutcome, OrderNotFound, OrderRejected, RateLimited
from tickpipe.common.links import Link, Step
from tickpipe.common.names import Partition
from tickpipe.common.schema import OrderIntent
from tickpipe.common.settings import load_settings
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.trader import actions as act
from tickpipe.trader.core import RiskLimits, TraderCore
from tickpipe.venues.ibkr.ingest import IbkrAdapter
from tickpipe.venues.ibkr.order_adapter import IbkrOrders
from tickpipe.venues.ibkr.orders import QuestionDeclined
from tickpipe.venues.ibkr.pacing import RestBudget
from tickpipe.venues.ibkr.rest import IbkrRest
from tickpipe.venues.ibkr.session import GatewaySession


def run(scenario: Callable[[MockExchange], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        mock = await start_mock(ibkr_port=0, trades_per_s=40.0, ibkr_options=options)
        try:
            await asyncio.wait_for(scenario(mock), 40)
        finally:
            await mock.close()

    asyncio.run(main())


def intent(cid: str, qty: str = "2") -> OrderIntent:
    """A market buy of ``qty`` AAPL on IBKR."""
    return build_order_intent(
        client_order_id=cid,
        signal_id=f"sig-{cid}",
        venue="ibkr",
        symbol="AAPL",
        side="BUY",
        qty=qty,
    )


def orders(
    mock: MockExchange, allow: str, account: str = "DU1234567"
) -> tuple[IbkrOrders, list[Mapping[str, str]]]:
    assert mock.ibkr_rest_url is not None
    settings = load_settings(
        {},
        dotenv_path=None,
        overrides={
            "TICKPIPE_VENUE": "ibkr",
            "TICKPIPE_IBKR_ALLOW_QUESTIONS": allow,
            "TICKPIPE_IBKR_ACCOUNT": account,
            "TICKPIPE_IBKR_REST_URL": mock.ibkr_rest_url,
        },
    )
    letters: list[Mapping[str, str]] = []

    async def dead_letter(fields: Mapping[str, str]) -> None:
        letters.append(fields)

    async def no_id(cid: str) -> str:
        return ""

    rest = IbkrRest(mock.ibkr_rest_url)
    adapter = IbkrOrders(
        settings, rest, clock=time.time_ns, order_id_of=no_id, dead_letter=dead_letter
    )
    return adapter, letters


async def filled(adapter: IbkrOrders, order: OrderIntent) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = await adapter.lookup(order)
        if found["status"] == "FILLED":
            return found
        await asyncio.sleep(0.5)
    raise AssertionError("the order did not fill")


def test_an_allow_listed_question_is_confirmed_and_the_order_fills_once() -> None:
    async def scenario(mock: MockExchange) -> None:
        adapter, letters = orders(mock, "o10151", account="")  # learnt from the gateway
        placed = await adapter.placer(intent("tp-ok"))()
        assert adapter.account == "DU1234567"
        assert placed["status"] == "NEW" and placed["orderId"]
        found = await filled(adapter, intent("tp-ok"))
        assert found["executedQty"] == "2" and found["clientOrderId"] == "tp-ok"
        assert letters == [] and adapter.counts["questions_confirmed"] == 1
        assert mock.ibkr is not None and mock.ibkr.status()["positions"] == {"AAPL": "2"}
        await adapter.rest.aclose()

    run(scenario)


def test_a_lookup_never_reads_an_order_list_older_than_the_order() -> None:
    async def scenario(mock: MockExchange) -> None:
        adapter, _ = orders(mock, "o10151")
        order = intent("tp-race")
        await adapter.rest.conids_of(["AAPL"])  # cached: the order leaves without a lookup
        listing = asyncio.create_task(adapter._live())  # in flight as the order leaves
        for _ in range(1000):  # until the list request holds the gateway's turn
            if adapter.rest._turn.locked():
                break
            await asyncio.sleep(0)
        assert adapter.rest._turn.locked()
        await adapter.placer(order)()
        assert [o for o in await listing if o.get("order_ref") == "tp-race"] == []
        found = await adapter.lookup(order)  # not the list fetched while the order was sent
        assert found["clientOrderId"] == "tp-race" and found["status"] == "FILLED"
        await adapter.rest.aclose()

    run(scenario)


def test_intents_the_gateway_never_got_are_placed_once_each_after_one_order_list() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.ibkr is not None
        adapter, _ = orders(mock, "o10151")
        core = TraderCore(RiskLimits())  # what the trader's router does on a restart
        core.unique_client_ids = adapter.unique_client_ids
        queued = [intent(f"tp-queued-{n}", qty="1") for n in range(3)]  # a killed trader's
        for order in queued:
            with pytest.raises(OrderNotFound) as missing:
                await adapter.lookup(order)
            actions = core.on_lookup(
                order, missing.value, now_ns=time.time_ns(), source="restart", failures=0
            )
            send = actions[-1]
            assert (
                isinstance(send, act.Send) and send.intent.client_order_id == order.client_order_id
            )
            await adapter.placer(send.intent)()  # stamped when placed again: same order terms
        placed = [o.client_order_id for o in mock.ibkr.broker.engine.orders]
        assert sorted(placed) == sorted(o.client_order_id for o in queued)
        # One list, fetched after every queued intent was made, answered every lookup: a
        # placement in between does not make the next lookup wait out the gateway's 1 per 5 s.
        lists = [r for r in mock.ibkr.requests if r[2] == "/v1/api/iserver/account/orders"]
        assert len(lists) == 1 and core.counts["placed_again"] == 3
        await adapter.rest.aclose()

    run(scenario)


@pytest.mark.parametrize(("allow", "qty"), [("", "2"), ("o10151", "600")])
def test_a_question_outside_the_allow_list_is_declined_and_dead_lettered(
    allow: str, qty: str
) -> None:
    async def scenario(mock: MockExchange) -> None:
        adapter, letters = orders(mock, allow)
        with pytest.raises(QuestionDeclined) as caught:
            await adapter.placer(intent("tp-no", qty))()
        assert isinstance(caught.value, OrderRejected)
        assert len(letters) == 1 and letters[0]["client_order_id"] == "tp-no"
        assert letters[0]["message_ids"] and "TICKPIPE_IBKR_ALLOW_QUESTIONS" in letters[0]["reason"]
        assert mock.ibkr is not None
        assert mock.ibkr.status()["orders"] == 0 and mock.ibkr.status()["positions"] == {}
        await adapter.rest.aclose()

    run(scenario)


async def market_slot(mock: MockExchange) -> tuple[IbkrAdapter, str]:
    """The ingestor's market-data adapter for AAPL at the mock, prepared; and its raw stream."""
    assert mock.ibkr_rest_url is not None and mock.ibkr_ws_url is not None
    settings = load_settings(
        {},
        dotenv_path=None,
        overrides={
            "TICKPIPE_VENUE": "ibkr",
            "TICKPIPE_SYMBOLS": "AAPL",
            "TICKPIPE_IBKR_REST_URL": mock.ibkr_rest_url,
            "TICKPIPE_IBKR_WS_URL": mock.ibkr_ws_url,
        },
    )
    raw = settings.keys.raw(Partition("ibkr", 0))
    adapter = IbkrAdapter(settings, Link("ibkr:0", mock.ibkr_ws_url, raw, "market"))
    await adapter.prepare()
    return adapter, raw


async def drive(
    mock: MockExchange,
    adapter: IbkrAdapter,
    seconds: float,
    on_step: Callable[[float, Step], Awaitable[None]],
    **session: float,
) -> GatewaySession:
    """Run one session of ``adapter`` (its core built with ``session`` options) for a while,
    as the ingestor's slot does; ``on_step`` sees each step and the seconds since the start."""
    assert mock.ibkr_ws_url is not None
    shell = adapter.new_session("ibkr:0/t.1")
    shell.core = GatewaySession(shell.core.conids, time.time_ns(), **session)
    async with connect(mock.ibkr_ws_url) as ws:
        for text in shell.opening():
            await ws.send(text)
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            step = shell.receive(await asyncio.wait_for(ws.recv(), 3), time.time_ns())
            for out in step.send:
                await ws.send(out)
            await on_step(time.monotonic() - started, step)
    return shell.core


def has_last_price(step: Step) -> bool:
    return any(f.channel == "smd:AAPL" and '"31"' in f.data for _, f in step.items)


def test_the_ingest_slot_keeps_market_data_flowing_past_the_subscription_expiry() -> None:
    async def scenario(mock: MockExchange) -> None:
        adapter, raw = await market_slot(mock)
        assert adapter.rest.conids == {"AAPL": 265598}
        data_at: list[float] = []

        async def seen(at: float, step: Step) -> None:
            if has_last_price(step):
                assert {stream for stream, _ in step.items} == {raw}
                data_at.append(at)

        core = await drive(mock, adapter, 5.0, seen, resubscribe_s=1.5)
        assert core.resubscriptions >= 2
        assert data_at and data_at[-1] > 4.0, "data stopped at the gateway's expiry"

    run(scenario, md_interval_s=0.05, md_expiry_s=2.0, hb_interval_s=0.2)


def test_after_a_429_the_client_sends_nothing_until_the_penalty_is_over() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.ibkr_rest_url is not None and mock.ibkr is not None
        # A budget over the gateway's global rate (3/s here) earns a 429 and the penalty box.
        rest = IbkrRest(mock.ibkr_rest_url, budget=RestBudget(per_s=10, penalty_s=2.0))
        with pytest.raises(RateLimited) as caught:
            for _ in range(10):
                await rest.auth_status()
        assert caught.value.retry_after_s == pytest.approx(2.0, abs=0.1)
        refused_at = time.monotonic()
        status = await rest.auth_status()  # waits out the penalty, then goes once
        assert status["authenticated"] is True
        assert time.monotonic() - refused_at >= 1.9
        pacing = mock.ibkr.status()["pacing"]
        assert pacing["penalties"] == 1 and pacing["penalty_violations"] == 0

    run(scenario, global_per_s=3, penalty_s=1.5)


def test_a_competing_login_is_taken_back_and_market_data_resumes() -> None:
    async def scenario(mock: MockExchange) -> None:
        adapter, _ = await market_slot(mock)
        data_at: list[float] = []
        competed_at: list[float] = []

        async def seen(at: float, step: Step) -> None:
            if has_last_price(step):
                data_at.append(at)
            if not competed_at and len(data_at) >= 3:
                competed_at.append(at)
                assert mock.ibkr_rest_url is not None
                async with aiohttp.ClientSession() as http:
                    await http.post(mock.ibkr_rest_url.replace("/v1/api", "/_mock/ibkr/compete"))

        await drive(mock, adapter, 8.0, seen)
        assert competed_at and adapter.counts["reauthentications"] == 1
        assert [t for t in data_at if t > competed_at[0] + 0.5], "no data after the takeover"

    run(scenario, md_interval_s=0.05, hb_interval_s=0.2)


def test_a_lost_reply_is_settled_by_lookup_and_never_sent_again() -> None:
    async def scenario(mock: MockExchange) -> None:
        adapter, _ = orders(mock, "o10151")
        await mock.inject(
            {
                "type": "order_error",
                "kind": "rest",
                "path": "/iserver/reply",
                "mode": "lost",
                "hang": 0.3,
            }
        )
        order = intent("tp-lost")
        with pytest.raises(AmbiguousOutcome):
            await adapter.placer(order)()
        found = await filled(adapter, order)  # what the router does with an ambiguous outcome
        assert found["executedQty"] == "2"
        assert mock.ibkr is not None and mock.ibkr.status()["orders"] == 1

    run(scenario)


def test_a_restarted_client_waits_out_its_predecessors_order_list_not_the_penalty() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.ibkr is not None and mock.ibkr_rest_url is not None
        before = IbkrRest(mock.ibkr_rest_url)  # the trader that was killed
        await before.request("GET", "/iserver/accounts")
        assert (await before.request("GET", "/iserver/account/orders")).status == 200
        after = IbkrRest(mock.ibkr_rest_url)  # its successor, a moment later, same address
        with pytest.raises(RateLimited) as refused:
            await after.request("GET", "/iserver/account/orders")
        assert refused.value.retry_after_s == 5.5  # that endpoint's interval, not 600 s
        assert (await after.request("GET", "/iserver/auth/status")).status == 200  # not silent
        listed = await after.request("GET", "/iserver/account/orders")  # waits 5.5 s, once
        assert listed.status == 200 and after.budget.penalties == 0
        assert mock.ibkr.status()["pacing"]["penalties"] == 0

    run(scenario)


def test_keepalive_holds_a_session_that_would_expire_without_tickle() -> None:
    async def scenario(mock: MockExchange) -> None:
        adapter, _ = await market_slot(mock)

        async def nothing(at: float, step: Step) -> None:
            return None

        await drive(mock, adapter, 6.0, nothing, keepalive_s=1.0)
        assert adapter.counts["tickles"] >= 4
        assert mock.ibkr is not None and mock.ibkr.status()["session"]["expirations"] == 0

    run(scenario, session_timeout_s=2.5, hb_interval_s=0.2)


def test_an_order_refused_for_an_expired_session_waits_for_it_and_is_placed_once() -> None:
    """The session expires with nobody else to re-authenticate it: the order's 401 placed
    nothing, so the adapter brings the session back and sends the order again, once."""

    async def scenario(mock: MockExchange) -> None:
        assert mock.ibkr is not None and mock.ibkr_rest_url is not None
        adapter, letters = orders(mock, "o10151")
        await adapter.rest.conids_of(["AAPL"])
        base = mock.ibkr_rest_url.removesuffix("/v1/api")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/_mock/ibkr/expire") as answer:
                assert (await answer.json())["authenticated"] is False
        order = intent("tp-expired")
        placed = await adapter.placer(order)()
        assert placed["status"] == "NEW" and placed["orderId"]
        found = await filled(adapter, order)
        assert found["executedQty"] == "2"
        assert adapter.counts["session_waits"] == 1 and letters == []
        status = mock.ibkr.status()
        assert status["session"]["authenticated"] and status["session"]["expirations"] == 1
        assert status["orders"] == 1 and status["positions"] == {"AAPL": "2"}
        await adapter.rest.aclose()

    run(scenario)
