"""Private files: what tickpipe writes is 0600 in 0700 directories; open modes are narrowed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tickpipe.common.privacy import make_private, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_missing_data_directory_is_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert make_private(tmp_path / "state") == []
    finally:
        os.umask(old)
    assert _mode(tmp_path / "state") == 0o700


def test_open_modes_are_narrowed_with_one_warning_each(tmp_path: Path) -> None:
    root = tmp_path / "state"
    (root / "logs").mkdir(parents=True)
    (root / "logs" / "a.log").write_text("x")
    (root / "run.sh").write_text("x")
    (root / "ok").write_text("x")
    (root / "link").symlink_to("/etc/passwd")
    for path, mode in ((root, 0o755), (root / "logs", 0o750), (root / "logs" / "a.log", 0o644),
                       (root / "run.sh", 0o775), (root / "ok", 0o600)):  # fmt: skip
        path.chmod(mode)
    warnings = make_private(root)
    assert sorted(warnings) == sorted([
        f"{root} had mode 755, open to other users; made it private (700)",
        f"{root / 'logs'} had mode 750, open to other users; made it private (700)",
        f"{root / 'logs' / 'a.log'} had mode 644, open to other users; made it private (600)",
        f"{root / 'run.sh'} had mode 775, open to other users; made it private (700)",
    ])  # fmt: skip
    assert [_mode(p) for p in (root, root / "logs", root / "logs" / "a.log", root / "ok")] == [
        0o700, 0o700, 0o600, 0o600,
    ]  # fmt: skip
    assert _mode(Path("/etc/passwd")) & 0o004  # a link's target is left alone
    assert make_private(root) == []


def test_write_private_replaces_an_open_file_with_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("old")
    path.chmod(0o644)
    old = os.umask(0o022)
    try:
        write_private(path, "new")
    finally:
        os.umask(old)
    assert path.read_text() == "new" and _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.txt"]
