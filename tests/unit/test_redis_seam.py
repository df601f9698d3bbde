"""The direct-Redis seam is the only module that reaches below redis-py's public commands."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEAM = REPO / "common" / "redis_link.py"
#: Names that reach into redis-py's connections: only the seam may use them.
PRIVATE = {"send_packed_command", "read_response", "direct_pool", "get_connection"}
PACKAGES = ("common", "ingestor", "processor", "trader", "mock_ws", "bench", "dashboard", "archive")


def _uses(path: Path) -> set[str]:
    """Return the private names ``path`` mentions (attributes, names, imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE:
            found.add(node.attr)
        elif isinstance(node, ast.Name) and node.id in PRIVATE:
            found.add(node.id)
        elif isinstance(node, ast.alias) and node.name in PRIVATE:
            found.add(node.name)
    return found


def test_only_the_seam_drives_redis_connections_directly() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(names)
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if path != SEAM and (names := _uses(path))
    }
    assert offenders == {}, f"use common.redis_link instead: {offenders}"
    assert _uses(SEAM) >= {"send_packed_command", "read_response", "get_connection"}
