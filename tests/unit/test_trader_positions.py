"""Unit tests of positions, average cost and profit and loss."""

from __future__ import annotations

from decimal import Decimal as D

from tickpipe.trader.positions import Position, PositionBook, qty_text


def test_buys_average_their_cost() -> None:
    p = Position().fill(D("1"), D("100")).fill(D("1"), D("110"))
    assert (p.qty, p.avg_cost, p.realized_pnl) == (D("2"), D("105"), 0)


def test_a_sell_realises_against_the_average_cost() -> None:
    p = Position().fill(D("2"), D("200")).fill(D("-0.5"), D("60"))  # sold at 120
    assert (p.qty, p.avg_cost, p.realized_pnl) == (D("1.5"), D("100"), D("10"))


def test_short_positions_gain_when_the_price_falls() -> None:
    p = Position().fill(D("-1"), D("100")).fill(D("0.5"), D("45"))  # bought back at 90
    assert (p.qty, p.avg_cost, p.realized_pnl) == (D("-0.5"), D("100"), D("5"))


def test_crossing_zero_closes_then_opens_at_the_fill_price() -> None:
    p = Position().fill(D("1"), D("100")).fill(D("-3"), D("330"))  # sold 3 at 110
    assert (p.qty, p.avg_cost, p.realized_pnl) == (D("-2"), D("110"), D("10"))
    flat = p.fill(D("2"), D("200"))  # bought back 2 at 100
    assert (flat.qty, flat.avg_cost, flat.realized_pnl) == (0, 0, D("30"))


def test_unrealised_profit_is_marked_to_the_last_price() -> None:
    book = PositionBook()
    book.fill("BTCUSDT", D("2"), D("200"))
    assert book.get("BTCUSDT").unrealized_pnl == 0  # no price yet
    assert book.mark("BTCUSDT", D("103")).unrealized_pnl == D("6")
    book.fill("ETHUSDT", D("-1"), D("50"))
    assert book.mark("ETHUSDT", D("55")).unrealized_pnl == D("-5")


def test_hash_fields_are_readable_and_round_trip() -> None:
    book = PositionBook()
    book.fill("BTCUSDT", D("0.0010"), D("61.80"))
    book.mark("BTCUSDT", D("62000"))
    fields = PositionBook.fields("BTCUSDT", book.get("BTCUSDT"))
    assert fields == {
        "BTCUSDT": "0.001",
        "BTCUSDT:avg_cost": "61800",
        "BTCUSDT:realized_pnl": "0",
        "BTCUSDT:unrealized_pnl": "0.2",
        "BTCUSDT:mark_price": "62000",
    }
    again = PositionBook.from_fields({**fields, "BTCUSDT:other": "x"})
    assert again.get("BTCUSDT") == book.get("BTCUSDT")
    assert PositionBook.from_fields({"ETHUSDT": "2"}).qty("ETHUSDT") == D("2")
    assert qty_text(D("1E+1")) == "10" and qty_text(D("0E-8")) == "0"
