"""The registry: one description per venue, a clear error for an unknown one."""

from __future__ import annotations

import dataclasses

import pytest

from common.errors import AuthError, ConfigError
from common.schema import RawFrame
from common.settings import Secret, Settings, load_settings
from venues.registry import VENUES, venue


def test_an_unknown_venue_is_a_config_error_naming_the_known_ones() -> None:
    known = r"unknown venue 'kraken': known venues are alpaca, binance"
    with pytest.raises(ConfigError, match=known):
        venue("kraken")


def test_every_venue_settings_accept_has_a_description_and_no_other() -> None:
    for name in VENUES:
        assert venue(name).name == name
        assert load_settings({"TICKPIPE_VENUE": name}).venue == name
    with pytest.raises(ConfigError, match="supported venues"):
        load_settings({"TICKPIPE_VENUE": "kraken"})


def test_each_description_plans_links_onto_its_own_streams() -> None:
    for name in VENUES:
        settings = Settings(
            venue=name,
            binance_api_key=Secret("k"),
            binance_api_secret=Secret("s"),
            alpaca_api_key=Secret("k"),
            alpaca_api_secret=Secret("s"),
        )
        spec = venue(name)
        spec.check_keys(settings)
        links = spec.plan_links(settings)
        private = [link for link in links if link.private]
        assert [link.stream for link in private] == [settings.keys.private_raw(name)]
        raws = {settings.keys.raw(p) for p in settings.partitions()}
        assert {link.stream for link in links if not link.private} <= raws
        if spec.ingest_adapters is not None:
            assert len(spec.ingest_adapters(settings, links)) == len(links)


def test_private_frames_of_each_venue_parse_through_its_description() -> None:
    reply = '{"id":1,"status":200,"result":null}'
    binance = RawFrame("ws", "binance", "c/1", 1, 5, reply, "private")
    alpaca = RawFrame(
        "ws", "alpaca", "c/1", 1, 5, '{"stream":"listening","data":{"streams":[]}}', "private"
    )
    assert venue("binance").parse_private(binance) == "replies"
    assert venue("alpaca").parse_private(alpaca) == "replies"


def test_a_refused_key_is_a_config_error_only_where_the_venue_says_so() -> None:
    refused = venue("alpaca").refused_key
    assert refused is not None
    error = refused(AuthError("forbidden", status=403))
    assert isinstance(error, ConfigError) and "ALPACA_API_KEY" in str(error)
    assert venue("binance").refused_key is None


def test_descriptions_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        venue("binance").name = "other"  # type: ignore[misc]
