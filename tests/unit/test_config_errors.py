"""Configuration mistakes: one message naming the file, line or key; secrets masked whole."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tickpipe.common.errors import ConfigError
from tickpipe.common.logs import JsonFormatter
from tickpipe.common.redis_io import check_redis_url
from tickpipe.common.settings import MIN_SECRET_CHARS, load_settings


def _dotenv(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "stage.env"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        (b'TICKPIPE_SHARDS=2\nTICKPIPE_SYMBOLS="BTCUSDT\nTICKPIPE_SHARDS=3\n', 2, "quote"),
        (b"TICKPIPE_SHARDS=2\nTICKPIPE_SYMBOLS='BTCUSDT\n", 2, "quote"),
        (b"# settings\n\nTICKPIPE_SHARDS\n", 3, "no '='"),
        (b"TICKPIPE_SHARDS=2\nexport TICKPIPE_SYMBOLS\n", 2, "no '='"),
        (b"=BTCUSDT\n", 1, "no name"),
        (b"TICKPIPE SHARDS=2\n", 1, "not a valid name"),
    ],
)
def test_a_malformed_dotenv_line_is_an_error_naming_file_and_line(
    tmp_path: Path, content: bytes, line: int, fragment: str
) -> None:
    path = _dotenv(tmp_path, content)
    with pytest.raises(ConfigError) as info:
        load_settings({}, dotenv_path=path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message and "\n" not in message


def test_a_malformed_secret_line_does_not_show_the_value(tmp_path: Path) -> None:
    path = _dotenv(tmp_path, b'BINANCE_API_SECRET="hunter2hunter2\n')
    with pytest.raises(ConfigError) as info:
        load_settings({}, dotenv_path=path)
    assert "hunter2" not in str(info.value)
    assert "BINANCE_API_SECRET" in str(info.value)


def test_a_dotenv_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = _dotenv(tmp_path, b"TICKPIPE_SHARDS=2\nTICKPIPE_INSTANCE=caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, dotenv_path=path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: ") and "UTF-8" in message, message


def test_a_well_formed_dotenv_still_loads(tmp_path: Path) -> None:
    path = _dotenv(
        tmp_path,
        b"\xef\xbb\xbf# comment\n\nexport TICKPIPE_SHARDS=3\nTICKPIPE_INSTANCE = 'a b' # note\n"
        b'TICKPIPE_NAMESPACE="ns1"\nTICKPIPE_LOG_LEVEL=\n',
    )
    with pytest.raises(ConfigError, match="TICKPIPE_LOG_LEVEL"):
        load_settings({}, dotenv_path=path)  # an empty value is still parsed, and checked
    path.write_bytes(path.read_bytes().replace(b"TICKPIPE_LOG_LEVEL=\n", b""))
    settings = load_settings({}, dotenv_path=path)
    assert (settings.shards, settings.instance, settings.namespace) == (3, "a b", "ns1")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://h:6379/abc", "database 'abc'"),
        ("redis://h:6379/-1", "database '-1'"),
        ("redis://h:6379/0/1", "database '0/1'"),
        ("redis://h:abc/0", "port"),
        ("redis://h:70000/0", "port"),
        ("redis://h:0/0", "port"),
        ("redis://:6379/0", "host"),
        ("http://h:6379/0", "scheme"),
        ("redis:/h:6379/0", "scheme"),
        ("redis://h:6379/0?foo=1", "unknown parameter 'foo'"),
        ("redis://h:6379/0?socket_timeout=abc", "socket_timeout"),
        ("redis://h:6379/0?socket_timeout=-1", "socket_timeout"),
        ("redis://h:6379/0?socket_connect_timeout=", "socket_connect_timeout"),
        ("redis://h:6379/0?health_check_interval=x", "health_check_interval"),
        ("redis://h:6379?db=x", "db"),
        ("redis://h:6379/1?db=2", "db"),
        ("redis://h:6379/0?socket_timeout=1&socket_timeout=2", "more than once"),
        ("redis://h:6379/0#frag", "fragment"),
        ("redis+cluster://h:7000/1", "database"),
        ("unix:///tmp/r.sock?db=one", "db"),
        ("unix://", "socket path"),
        ("redis://h 1:6379/0", "host"),
    ],
)
def test_every_bad_part_of_redis_url_is_named(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as info:
        load_settings({"REDIS_URL": url}, dotenv_path=None)
    assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://h/15",
        "redis://user:long-enough-pw@h:6379/2?socket_timeout=1.5&health_check_interval=10",
        "rediss://h:6380/0?ssl_ca_certs=/ca.pem&ssl_check_hostname=no",
        "redis+cluster://h:7000",
        "redis+cluster://h:7000/0",
        "redis://h:7000/0?cluster=yes",
        "unix:///var/run/redis.sock?db=3",
        "redis://[::1]:6379/0",
    ],
)
def test_good_redis_urls_pass(url: str) -> None:
    check_redis_url(url)
    assert load_settings({"REDIS_URL": url}, dotenv_path=None).redis_url_set


@pytest.mark.parametrize(
    "key",
    ["BINANCE_API_KEY", "BINANCE_API_SECRET", "ALPACA_API_KEY", "ALPACA_API_SECRET",
     "TICKPIPE_DASHBOARD_TOKEN"],
)  # fmt: skip
def test_a_secret_too_short_to_mask_is_refused(key: str) -> None:
    short = "x7" * (MIN_SECRET_CHARS // 2 - 1) + "q"
    with pytest.raises(ConfigError) as info:
        load_settings({key: short}, dotenv_path=None)
    assert key in str(info.value) and f"at least {MIN_SECRET_CHARS}" in str(info.value)
    assert short not in str(info.value)
    long_enough = "k" * MIN_SECRET_CHARS
    load_settings({key: long_enough}, dotenv_path=None)


def test_a_redis_password_too_short_to_mask_is_refused() -> None:
    with pytest.raises(ConfigError, match="REDIS_URL") as info:
        load_settings({"REDIS_URL": "redis://u:pw7@h:6379/0"}, dotenv_path=None)
    assert "pw7" not in str(info.value) and "password" in str(info.value)


def test_the_mock_keys_pass() -> None:
    settings = load_settings(
        {"BINANCE_API_KEY": "mock-key", "BINANCE_API_SECRET": "mock-secret"}, dotenv_path=None
    )
    assert len(settings.secrets()) == 2


def _format(secrets: list[str], message: str) -> str:
    formatter = JsonFormatter("svc", "i1", secrets)
    record = logging.LogRecord("tickpipe.test", logging.INFO, __file__, 1, message, (), None)
    return formatter.format(record)


def test_masking_replaces_whole_secrets_longest_first() -> None:
    short, longer = "abcdefgh", "abcdefgh-and-more"
    line = _format([short, longer], f"key={longer} other={short} plain=abcdefg")
    assert "and-more" not in line and line.count("***") == 2
    assert "plain=abcdefg" in line


def test_masking_catches_escaped_and_percent_encoded_forms() -> None:
    secret = 'pa"ss/w0rd\\x'
    line = _format([secret], "url=redis://u:pa%22ss%2Fw0rd%5Cx@h")
    assert "w0rd" not in line and "u:***@h" in line
    line = _format([secret], f"value={secret}")  # JSON escapes the quote and the backslash
    assert "w0rd" not in line and "value=***" in line


def test_masking_leaves_ordinary_text_alone() -> None:
    line = _format(["s3cr3t-value-1"], "connected to 127.0.0.1 as user s3cr3t")
    assert "as user s3cr3t" in line
