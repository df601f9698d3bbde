"""The contracts the IBKR gateway mock lists, and its contract-lookup answers (pure).

Each simulated symbol is a US stock with a fixed contract id: the real ids of the few symbols the
docs use as examples (AAPL 265598, ...) and a stable made-up id for any other. The answers have
the shapes of ``GET /iserver/secdef/search?symbol=`` (a list of matches, ``conid`` as a string)
and ``GET /trsrv/stocks?symbols=`` (symbol -> companies -> ``contracts`` with integer
``conid``), as the Client Portal Web API reference documents them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["KNOWN_CONIDS", "ContractTable"]

#: Contract ids of the symbols the Client Portal docs use in their examples.
KNOWN_CONIDS = {"AAPL": 265598, "MSFT": 272093, "IBM": 8314, "SPY": 756733, "TSLA": 76792991}
_NAMES = {
    "AAPL": "APPLE INC",
    "MSFT": "MICROSOFT CORP",
    "IBM": "INTL BUSINESS MACHINES CORP",
    "SPY": "SPDR S&P 500 ETF TRUST",
    "TSLA": "TESLA INC",
}


def _made_up_conid(symbol: str) -> int:
    return 100_000_000 + zlib.crc32(symbol.encode()) % 800_000_000


class ContractTable:
    """Symbol <-> conid for the simulated symbols, and the lookup answers."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.by_symbol: dict[str, int] = {
            s: KNOWN_CONIDS.get(s, _made_up_conid(s)) for s in symbols
        }
        self.by_conid: dict[int, str] = {c: s for s, c in self.by_symbol.items()}

    def name(self, symbol: str) -> str:
        return _NAMES.get(symbol, f"{symbol} SIMULATED INC")

    def secdef_search(self, query: Mapping[str, str]) -> tuple[int, Any]:
        """Answer ``/iserver/secdef/search``: matches of ``symbol`` (prefix), or an error."""
        wanted = (query.get("symbol") or "").upper()
        if not wanted:
            return 400, {"error": "Bad Request: symbol required"}
        matches = [s for s in self.by_symbol if s.startswith(wanted)]
        if not matches:
            return 200, {"error": f"No symbol found {wanted}"}
        return 200, [
            {
                "conid": str(self.by_symbol[s]),
                "companyHeader": f"{self.name(s)} - NASDAQ",
                "companyName": self.name(s),
                "symbol": s,
                "description": "NASDAQ",
                "restricted": None,
                "fop": None,
                "opt": None,
                "war": None,
                "sections": [{"secType": "STK"}],
            }
            for s in sorted(matches, key=lambda s: (s != wanted, s))
        ]

    def stocks(self, query: Mapping[str, str]) -> tuple[int, Any]:
        """Answer ``/trsrv/stocks``: every asked symbol the venue lists (unknown ones omitted)."""
        asked = [s.strip().upper() for s in (query.get("symbols") or "").split(",") if s.strip()]
        if not asked:
            return 400, {"error": "Bad Request: symbols required"}
        return 200, {
            s: [
                {
                    "name": self.name(s),
                    "chineseName": None,
                    "assetClass": "STK",
                    "contracts": [{"conid": self.by_symbol[s], "exchange": "NASDAQ", "isUS": True}],
                }
            ]
            for s in asked
            if s in self.by_symbol
        }
