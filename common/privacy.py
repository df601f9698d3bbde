"""Keep tickpipe's files private to the user who runs it: directories 0700, files 0600.

``tickpipe up`` and every stage run under :data:`PRIVATE_UMASK`, so what they (and the
``redis-server`` they start) create is private from the start. :func:`make_private` checks a
tree that already exists: what is ours and open to others is narrowed, with one warning each;
what belongs to another user is only reported, since we cannot change it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "make_private", "write_private"]

#: No permission bit for group or others on anything created.
PRIVATE_UMASK = 0o077


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (mode 0600) in one step: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o600)  # an old tmp file keeps its mode through O_CREAT
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_private(root: Path) -> list[str]:
    """Create ``root`` (0700) if missing; narrow every path under it that others may use.

    Returns one warning per path that was open to group or others: fixed when it is ours,
    reported when it belongs to another user. Symbolic links are not followed.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    uid = os.getuid()
    warnings = _narrow(root, uid)
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            warnings.extend(_narrow(Path(top) / name, uid))
    return warnings


def _narrow(path: Path, uid: int) -> list[str]:
    try:
        info = path.lstat()
    except FileNotFoundError:  # removed while we walked
        return []
    if stat.S_ISLNK(info.st_mode):
        return []
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return []
    wanted = mode & 0o700 | (0o700 if stat.S_ISDIR(info.st_mode) else 0)
    if info.st_uid != uid:
        return [
            f"{path} had mode {mode:o} and belongs to uid {info.st_uid}, not us: cannot make "
            "it private; fix its owner or mode"
        ]
    os.chmod(path, wanted)
    return [f"{path} had mode {mode:o}, open to other users; made it private ({wanted:o})"]
