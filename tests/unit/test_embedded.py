"""The embedded default's users: one private passwords file, reused; the CLI finds the operator."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tickpipe.common.embedded import discover_redis_url, ensure_passwords, read_passwords, user_url
from tickpipe.common.errors import ConfigError
from tickpipe.common.settings import load_settings
from tickpipe.deploy.acl import USERS


def test_passwords_are_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "redis.passwords"
    first = ensure_passwords(path)
    assert set(first) == set(USERS) and len(set(first.values())) == len(USERS)
    assert all(len(password) >= 24 for password in first.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_passwords(path) == first == read_passwords(path)


def test_a_user_missing_from_the_file_is_added_and_the_others_kept(tmp_path: Path) -> None:
    path = tmp_path / "redis.passwords"
    path.write_text("# older file\ningestor kept-ingestor-pw\n")
    passwords = ensure_passwords(path)
    assert passwords["ingestor"] == "kept-ingestor-pw" and set(passwords) == set(USERS)
    assert read_passwords(path) == passwords


def test_a_malformed_passwords_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "redis.passwords"
    path.write_text("ingestor a b\n")
    with pytest.raises(ConfigError, match=rf"{path}:1: write USER PASSWORD"):
        read_passwords(path)


def test_the_operator_commands_find_a_running_embedded_default(tmp_path: Path) -> None:
    settings = load_settings({"TICKPIPE_DATA_DIR": str(tmp_path)}, dotenv_path=None)
    assert discover_redis_url(settings) == settings.redis_url  # nothing running: the default
    (tmp_path / "redis.url").write_text("redis://127.0.0.1:4567/0\n")
    assert discover_redis_url(settings) == "redis://127.0.0.1:4567/0"  # started without users
    passwords = ensure_passwords(tmp_path / "redis.passwords")
    url = discover_redis_url(settings)
    assert url == user_url("redis://127.0.0.1:4567/0", "operator", passwords["operator"])
    assert url == f"redis://operator:{passwords['operator']}@127.0.0.1:4567/0"
    explicit = load_settings({"REDIS_URL": "redis://h:1/2"}, dotenv_path=None)
    assert discover_redis_url(explicit, tmp_path) == "redis://h:1/2"  # REDIS_URL wins
