"""Real Binance frames from ../shared/realdata, hypothesis strategies that damage them, and the
fuzz tests' hypothesis settings."""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.realdata import REALDATA

SPOT = REALDATA / "hftbacktest" / "spot"
EXEC_REPORT = REALDATA / "nautilus_trader" / "ws_spot_execution_report_binance_us.json"

#: Values that must never pass as a price or a quantity.
BAD_NUMBERS = ["NaN", "nan", "-1", "-0.00000001", "Infinity", "-inf", "1e999", "abc", "", " ",
               "0x10", "1,5", None, 1.5, -3, [], {}, True]  # fmt: skip
#: Replacement values of any type, for type swaps.
ANY_VALUES = [None, True, 0, -1, 10**40, 1.5, float("nan"), "", "x", "NaN", "-1", [], {}, [1],
              {"a": 1}, "1e999", "9" * 400]  # fmt: skip


def fuzz_settings(max_examples: int) -> settings:
    """Return the fuzz tests' settings: ``max_examples`` examples, the same ones on every run (CI
    does not flake on a new find), no deadline, and large real frames welcome."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example],
    )


def _lines(path: Path, limit: int) -> list[str]:
    out = []
    with gzip.open(path, "rt") as lines:
        for line in lines:
            _, _, frame = line.rstrip("\n").partition(" ")
            if frame.startswith('{"stream"'):
                out.append(frame)
            if len(out) >= limit:
                break
    return out


@cache
def real_frames() -> tuple[str, ...]:
    """Trade, depth and bookTicker frames of two captures (2023 and 2024 trade schemas)."""
    frames = _lines(SPOT / "btcusdt_20240808.gz", 3000)
    frames += _lines(SPOT / "btcusdt_20230405.dat.gz", 300)
    assert frames, "realdata is missing"
    return tuple(frames)


@cache
def real_trade_frames() -> tuple[str, ...]:
    out = tuple(f for f in real_frames() if '@trade"' in f)
    assert len(out) >= 100
    return out


@cache
def execution_report() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(EXEC_REPORT.read_bytes())["data"]
    return data


def _mutate_json(frame: str, draw: Any) -> str:
    obj = orjson.loads(frame)
    data = obj["data"] if "data" in obj else obj
    keys = sorted(data)
    how = draw(st.sampled_from(["delete", "swap", "bad_number", "nest", "extra"]))
    if how == "delete":
        del data[draw(st.sampled_from(keys))]
    elif how == "swap":
        data[draw(st.sampled_from(keys))] = draw(st.sampled_from(ANY_VALUES))
    elif how == "bad_number":
        numeric = [k for k in ("p", "q", "b", "a", "t", "T") if k in data] or keys
        data[draw(st.sampled_from(numeric))] = draw(st.sampled_from(BAD_NUMBERS))
    elif how == "nest":
        obj = {"stream": obj.get("stream"), "data": [obj]}
    else:
        data["zz"] = "x" * draw(st.sampled_from([0, 10, 100_000]))
    # The standard library writes big integers and NaN, which a venue could send too.
    return json.dumps(obj)


@st.composite
def damaged_frames(draw: Any, frames: tuple[str, ...] | None = None) -> str | bytes:
    """A real frame with one kind of damage: bytes flipped, truncated, JSON field changed."""
    frame = draw(st.sampled_from(frames or real_frames()))
    how = draw(st.sampled_from(["flip", "truncate", "json", "json", "json", "oversized", "junk"]))
    raw = frame.encode()
    if how == "flip":
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if how == "oversized":
        return frame[:-1] + ',"pad":"' + "y" * 1_000_000 + '"}'
    if how == "junk":
        return draw(st.binary(max_size=200))
    return _mutate_json(frame, draw)
