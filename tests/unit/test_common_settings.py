"""Settings: defaults, parsing, unknown keys, secrets."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tickpipe.common.errors import ConfigError
from tickpipe.common.settings import KNOWN_KEYS, Secret, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults_run_against_local_mock() -> None:
    s = load_settings({}, dotenv_path=None)
    assert s.symbols == ("BTCUSDT", "ETHUSDT")
    assert s.binance_ws_url.startswith("ws://127.0.0.1")
    assert not s.redis_url_set


def test_symbols_are_upper_cased_and_partitioned() -> None:
    s = load_settings({"TICKPIPE_SYMBOLS": "btcusdt, ethusdt,bnbusdt", "TICKPIPE_SHARDS": "2"},
                      dotenv_path=None)  # fmt: skip
    assert s.symbols == ("BTCUSDT", "ETHUSDT", "BNBUSDT")
    parts = s.partitions()
    assert sorted(sym for syms in parts.values() for sym in syms) == sorted(s.symbols)
    assert all(p.venue == "binance" and p.shard in (0, 1) for p in parts)


def test_unknown_environment_key_names_the_closest_known_one() -> None:
    with pytest.raises(ConfigError, match=r"TICKPIPE_SYMBLS \(did you mean TICKPIPE_SYMBOLS\?\)"):
        load_settings({"TICKPIPE_SYMBLS": "BTCUSDT"}, dotenv_path=None)


def test_unrelated_environment_keys_are_ignored() -> None:
    s = load_settings({"HOME": "/root", "PATH": "/bin"}, dotenv_path=None)
    assert s.namespace == "tp"


def test_unknown_key_in_dotenv_is_rejected(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("REDIS_URL=redis://127.0.0.1:1/0\nBINANCE_API_KYE=x\n")
    with pytest.raises(ConfigError, match="BINANCE_API_KYE"):
        load_settings({}, dotenv_path=env)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("TICKPIPE_SHARDS", "0", "positive integer"),
        ("TICKPIPE_SHARDS", "two", "TICKPIPE_SHARDS"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("TICKPIPE_SYMBOLS", "BTC-USDT", "not a symbol"),
        ("TICKPIPE_THRESHOLDS", "BTCUSDT:61800", "SYMBOL=PRICE"),
        ("TICKPIPE_ORDER_QTY", "NaN", "finite"),
        ("TICKPIPE_VENUE", "kraken", "supported venues"),
        ("TICKPIPE_NAMESPACE", "a b", "namespace"),
        ("TICKPIPE_TRADER_LEASE_MS", "100", "TICKPIPE_TRADER_LEASE_MS=.*at least 300"),
        ("TICKPIPE_PRICE_BAND_BPS", "-5", "TICKPIPE_PRICE_BAND_BPS=.*non-negative"),
        ("TICKPIPE_MAX_PRICE_AGE_S", "0", "TICKPIPE_MAX_PRICE_AGE_S=.*positive"),
        ("TICKPIPE_RECONCILE_EVERY_S", "soon", "TICKPIPE_RECONCILE_EVERY_S"),
    ],
)
def test_bad_values_give_one_clear_message(key: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings({key: value}, dotenv_path=None)


def test_threshold_for_unknown_symbol_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not in TICKPIPE_SYMBOLS"):
        load_settings({"TICKPIPE_THRESHOLDS": "XRPUSDT=1"}, dotenv_path=None)


def test_secrets_never_show_in_repr_or_errors() -> None:
    s = load_settings({"BINANCE_API_KEY": "k-123456", "BINANCE_API_SECRET": "s-abcdef"},
                      dotenv_path=None)  # fmt: skip
    assert "k-123456" not in repr(s) and "s-abcdef" not in repr(s)
    assert s.binance_api_secret.reveal() == "s-abcdef"
    assert f"{s.binance_api_key}" == "Secret('***')"
    assert set(s.secrets()) == {"k-123456", "s-abcdef"}
    assert repr(Secret("")) == "Secret('')"


def test_environment_overrides_dotenv_and_overrides_win(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TICKPIPE_NAMESPACE=fromfile\nTICKPIPE_SHARDS=3\n")
    env.chmod(0o600)
    s = load_settings({"TICKPIPE_NAMESPACE": "fromenv"}, dotenv_path=env,
                      overrides={"TICKPIPE_SHARDS": "4"})  # fmt: skip
    assert s.namespace == "fromenv" and s.shards == 4


def test_world_readable_dotenv_with_secrets_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    env.write_text("BINANCE_API_SECRET=abc-secret-1\n")
    os.chmod(env, 0o644)
    with caplog.at_level(logging.WARNING):
        load_settings({}, dotenv_path=env)
    assert "chmod 600" in caplog.text and "abc-secret-1" not in caplog.text


def test_env_example_documents_every_setting() -> None:
    text = (REPO / ".env.example").read_text()
    missing = [key for key in KNOWN_KEYS if key not in text]
    assert missing == []


def test_several_venues_each_with_its_symbols_and_thresholds() -> None:
    settings = load_settings(
        {
            "TICKPIPE_VENUES": "binance,alpaca",
            "TICKPIPE_SYMBOLS": "binance:BTCUSDT,alpaca:FAKEPACA",
            "TICKPIPE_THRESHOLDS": "BTCUSDT=61800,FAKEPACA=100",
        },
        dotenv_path=None,
    )
    assert settings.all_venues() == ("binance", "alpaca")
    assert (settings.venue, settings.symbols) == ("binance", ("BTCUSDT",))
    alpaca = settings.for_venue("alpaca")
    assert (alpaca.venue, alpaca.all_venues(), alpaca.symbols) == (
        "alpaca",
        ("alpaca",),
        ("FAKEPACA",),
    )
    assert alpaca.thresholds == (("FAKEPACA", "100"),)
    assert [p.venue for p in alpaca.partitions()] == ["alpaca"]
    # A venue given no symbol trades its defaults; TICKPIPE_VENUE picks the primary venue.
    primary = load_settings(
        {"TICKPIPE_VENUES": "binance,alpaca", "TICKPIPE_VENUE": "alpaca"}, dotenv_path=None
    )
    assert primary.all_venues() == ("alpaca", "binance")
    assert primary.for_venue("binance").symbols == ("BTCUSDT", "ETHUSDT")
    # A symbol that names no venue is the primary venue's.
    mixed = load_settings(
        {"TICKPIPE_VENUES": "binance,alpaca", "TICKPIPE_SYMBOLS": "BTCUSDT,alpaca:AAPL"},
        dotenv_path=None,
    )
    assert mixed.symbols == ("BTCUSDT",) and mixed.for_venue("alpaca").symbols == ("AAPL",)


def test_one_venue_keeps_working_as_before() -> None:
    settings = load_settings({"TICKPIPE_VENUE": "alpaca"}, dotenv_path=None)
    assert (settings.all_venues(), settings.symbols) == (("alpaca",), ("FAKEPACA",))
    assert settings.for_venue("alpaca").symbols == ("FAKEPACA",)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TICKPIPE_VENUES": "binance,kraken"}, "TICKPIPE_VENUES=kraken: supported venues"),
        ({"TICKPIPE_VENUES": "binance,binance"}, "named twice"),
        ({"TICKPIPE_VENUES": "binance", "TICKPIPE_VENUE": "alpaca"}, "not one of TICKPIPE_VENUES"),
        (
            {"TICKPIPE_VENUES": "binance", "TICKPIPE_SYMBOLS": "alpaca:AAPL"},
            "not a venue of this deployment",
        ),
    ],
)
def test_venue_mistakes_are_one_line_config_errors(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, dotenv_path=None)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_the_websocket_client_setting_names_one_of_the_two() -> None:
    assert load_settings({"TICKPIPE_WS_CLIENT": "WebSockets"}, dotenv_path=None).ws_client == (
        "websockets"
    )
    assert load_settings({}, dotenv_path=None).ws_client == ""
    with pytest.raises(ConfigError, match="TICKPIPE_WS_CLIENT"):
        load_settings({"TICKPIPE_WS_CLIENT": "aiohttp"}, dotenv_path=None)
