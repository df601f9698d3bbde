"""Secrets in settings: Redis passwords masked, .env permissions checked, URLs validated."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest

from tickpipe.common.errors import ConfigError
from tickpipe.common.logs import setup_logging
from tickpipe.common.redis_io import connect_redis, is_cluster_url, redacted
from tickpipe.common.settings import load_settings

PASSWORD = "s3cr3t-Redis-pw"
URL = f"redis://processor:{PASSWORD}@10.0.0.5:6379/0"


def test_redis_password_is_a_secret_masked_in_every_log_line() -> None:
    settings = load_settings({"REDIS_URL": URL}, dotenv_path=None)
    assert PASSWORD in settings.secrets()
    out = io.StringIO()
    setup_logging("processor", "p1", secrets=settings.secrets(), stream=out)
    try:
        logging.getLogger("tickpipe.test").warning("connecting to %s", settings.redis_url)
    finally:
        logging.getLogger().handlers.clear()
    assert PASSWORD not in out.getvalue() and "processor:***@" in out.getvalue()


def test_percent_encoded_password_is_masked_decoded_too() -> None:
    settings = load_settings({"REDIS_URL": "redis://u:p%40ss%2Fw0rd@h:1/0"}, dotenv_path=None)
    assert "p@ss/w0rd" in settings.secrets()


def test_a_bad_redis_url_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"REDIS_URL": f"http://u:{PASSWORD}@h:1"}, dotenv_path=None)
    assert PASSWORD not in str(info.value) and "u:***@h:1" in str(info.value)


def test_redacted() -> None:
    assert redacted(URL) == "redis://processor:***@10.0.0.5:6379/0"
    assert redacted("redis://h:1/0") == "redis://h:1/0"
    assert redacted(f"rediss://:{PASSWORD}@h:1/0?ssl_ca_certs=/ca.pem") == (
        "rediss://:***@h:1/0?ssl_ca_certs=/ca.pem"
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_dotenv_with_secrets_readable_by_others_warns(
    tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    env.write_text(f"REDIS_URL={URL}\nBINANCE_API_SECRET=abc-secret-1\n")
    env.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="tickpipe.settings"):
        load_settings({}, dotenv_path=env)
    assert "chmod 600" in caplog.text
    assert "abc-secret-1" not in caplog.text and PASSWORD not in caplog.text


def test_private_dotenv_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = tmp_path / ".env"
    env.write_text("BINANCE_API_SECRET=abc-secret-1\n")
    env.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="tickpipe.settings"):
        load_settings({}, dotenv_path=env)
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://h:1/0?ssl_ca_certs=/ca.pem", "rediss://"),
        ("rediss://h:1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("rediss://h:1/0?ssl_ca_cert=/ca.pem", "unknown parameter 'ssl_ca_cert'"),
        ("redis://h:1/0?cluster=perhaps", "yes or no"),
        ("unix:///tmp/r.sock?cluster=yes", "unix socket"),
        (f"http://u:{PASSWORD}@h:1", "scheme"),
    ],
)
def test_connect_redis_refuses_a_url_it_cannot_use(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        connect_redis(url)
    assert PASSWORD not in str(info.value)


def test_connect_redis_reads_tls_options_from_the_url() -> None:
    async def kwargs() -> dict[str, object]:
        client = connect_redis(
            "rediss://u:pw@h:6380/2?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=no"
            "&ssl_cert_reqs=required&socket_timeout=3"
        )
        try:
            return dict(client.connection_pool.connection_kwargs)
        finally:
            await client.aclose()

    got = asyncio.run(kwargs())
    assert got["ssl_ca_certs"] == "/etc/ca.pem" and got["ssl_check_hostname"] is False
    assert (got["username"], got["password"], got["db"]) == ("u", "pw", 2)
    assert got["socket_timeout"] == 3.0


def test_cluster_urls() -> None:
    assert is_cluster_url("redis+cluster://h:7000") and is_cluster_url("rediss+cluster://h:7000")
    assert is_cluster_url("redis://h:7000?cluster=yes")
    assert not is_cluster_url("redis://h:7000/0?cluster=no")
    url = "rediss+cluster://u:cluster-pw-1@h:7000"
    settings = load_settings({"REDIS_URL": url}, dotenv_path=None)
    assert settings.redis_url.startswith("rediss+cluster://")
    assert "cluster-pw-1" in settings.secrets()


@pytest.mark.parametrize("symbols", ["BTC USDT", "BTC}USDT", "*", "../x", "BTC{x}", ","])
def test_symbols_that_could_escape_a_key_are_refused(symbols: str) -> None:
    with pytest.raises(ConfigError, match="TICKPIPE_SYMBOLS"):
        load_settings({"TICKPIPE_SYMBOLS": symbols}, dotenv_path=None)


@pytest.mark.parametrize("namespace", ["tp{x}", "tp:*", "a b", "", "x" * 33, "tp\n"])
def test_namespaces_that_could_widen_an_acl_pattern_are_refused(namespace: str) -> None:
    with pytest.raises(ConfigError, match="TICKPIPE_NAMESPACE"):
        load_settings({"TICKPIPE_NAMESPACE": namespace}, dotenv_path=None)


def test_misspelt_redis_key_in_dotenv_names_the_right_one(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("REDIS_ULR=redis://h:1/0\n")
    env.chmod(0o600)
    with pytest.raises(ConfigError, match=r"REDIS_ULR.*did you mean REDIS_URL"):
        load_settings({}, dotenv_path=env)


def test_a_refused_login_or_command_is_a_configuration_error() -> None:
    import redis.exceptions as rexc

    from tickpipe.common.redis_io import redis_errors

    async def fail(exc: Exception) -> None:
        async with redis_errors():
            raise exc

    with pytest.raises(ConfigError, match="user and password"):
        asyncio.run(fail(rexc.AuthenticationError("invalid username-password pair")))
    with pytest.raises(ConfigError, match="ACL"):
        asyncio.run(fail(rexc.NoPermissionError("no permissions to run the 'xadd' command")))


def test_settings_check_the_redis_url_parameters_up_front() -> None:
    with pytest.raises(ConfigError, match=r"REDIS_URL=.*unknown parameter 'ssl_ca'") as info:
        load_settings({"REDIS_URL": f"rediss://u:{PASSWORD}@h:1/0?ssl_ca=/x"}, dotenv_path=None)
    assert PASSWORD not in str(info.value)
    url = "rediss://h:1/0?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    assert load_settings({"REDIS_URL": url}, dotenv_path=None).redis_url == url
