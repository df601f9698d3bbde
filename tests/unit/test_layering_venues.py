"""Check the layering of stages, ``common`` and the venue packages from every module's imports.

The rules (docs/architecture.md, "Layout"):

* a stage (``ingestor``, ``processor``, ``trader``, ``dashboard``) reaches venue code only
  through ``venues.registry`` (or the neutral ``venues`` package itself), never a venue package
  such as ``venues.binance`` directly;
* ``common`` imports no stage, nothing under ``venues`` and none of the operator's ``tools``;
* no stage imports another stage, nor the operator's ``tools``;
* nothing under ``venues`` imports a stage;
* a venue module whose docstring says it is pure imports no I/O (asyncio, redis, websockets,
  aiohttp, time, os, socket), not even inside a function.

Imports are read with :mod:`ast` (function-level imports included), so the check needs no
import of the modules. :data:`KNOWN` lists the stage modules that still import a venue package
directly, each waiting to move behind the registry; the list may only shrink: an entry that no
longer occurs fails the test too, so that it is deleted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingestor", "processor", "trader", "dashboard", "archive")
#: Modules under ``venues`` that hold no venue's code.
VENUE_NEUTRAL = frozenset({"registry", "clients", "adapters", "books"})

#: (importing module, imported venue module) pairs still to move behind the registry: none (the
#: combined-stream slot reaches Binance's protocol through ``venues.registry.CombinedStreams``).
#: The list may only shrink; keep it empty.
KNOWN: frozenset[tuple[str, str]] = frozenset()


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, with ``from a import b`` counted as ``a.b``."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {_unrooted(module) for module in found}


def _unrooted(module: str) -> str:
    """``tickpipe.venues.x`` -> ``venues.x``: the import root maps onto the repository's folders."""
    return module.removeprefix("tickpipe.") if module.startswith("tickpipe.") else module


IO_MODULES = frozenset({"asyncio", "redis", "websockets", "aiohttp", "time", "os", "socket"})


def impure_imports(root: Path) -> set[tuple[str, str]]:
    """Return (module, I/O module) for every module that says it is pure but imports I/O."""
    out: set[tuple[str, str]] = set()
    tops = ("common", *STAGES, "venues", "tools", "mock_ws")
    for path in sorted(
        p for top in tops if (root / top).is_dir() for p in (root / top).rglob("*.py")
    ):
        doc = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
        if "pure" not in doc.partition("\n\n")[0].lower():
            continue
        name = module_name(root, path)
        out.update((name, i) for i in imports_of(root, path) if i.partition(".")[0] in IO_MODULES)
    return out


def _top(module: str) -> str:
    return module.partition(".")[0]


def _is_venue_package(module: str) -> bool:
    """``venues.<name>...``: a venue's own code (the registry and ``venues`` itself are neutral)."""
    parts = module.split(".")
    return parts[0] == "venues" and len(parts) > 1 and parts[1] not in VENUE_NEUTRAL


def violations(root: Path) -> set[tuple[str, str]]:
    """Return every (module, imported module) pair under ``root`` that breaks a layering rule."""
    out: set[tuple[str, str]] = set()
    for path in sorted(root.rglob("*.py")):
        if ".venv" in path.parts or "tests" in path.relative_to(root).parts:
            continue
        name = module_name(root, path)
        top = _top(name)
        if top not in (*STAGES, "common", "venues"):
            continue
        for imported in imports_of(root, path):
            other = _top(imported)
            if top in STAGES and (_is_venue_package(imported) or other == "tools"):
                out.add((name, imported))
            elif top in STAGES and other in STAGES and other != top:
                out.add((name, imported))
            elif top == "common" and (other in STAGES or other in ("venues", "tools")):
                out.add((name, imported))
            elif top == "venues" and _top(imported) in STAGES:
                out.add((name, imported))
    return out


def _by_module(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Keep the imported module, not its names (``a.b`` and ``a.b.name`` -> ``a.b``)."""
    return {(m, i) for m, i in pairs if not any(i.startswith(j + ".") for n, j in pairs if n == m)}


def test_stages_reach_venues_only_through_the_registry() -> None:
    found = _by_module(violations(ROOT))
    new = sorted(found - KNOWN)
    assert not new, "layering broken (see docs/architecture.md, Layout):\n" + "\n".join(
        f"  {module} imports {imported}" for module, imported in new
    )
    gone = sorted(KNOWN - found)
    assert not gone, "fixed: delete from KNOWN:\n" + "\n".join(f"  {pair}" for pair in gone)


def test_pure_venue_modules_import_no_io() -> None:
    assert impure_imports(ROOT) == set()


def test_an_impure_pure_module_is_caught(tmp_path: Path) -> None:
    text = '"""Parse frames (pure, no I/O)."""\n\ndef f():\n    import time\n    return time\n'
    root = _tree(tmp_path, {"venues/ibkr/wire.py": text, "venues/ibkr/rest.py": "import aiohttp\n"})
    assert impure_imports(root) == {("venues.ibkr.wire", "time")}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for directory in {p.parent for p in root.rglob("*.py")}:
        (directory / "__init__.py").touch()
    return root


@pytest.mark.parametrize(
    ("rel", "text", "broken"),
    [
        ("ingestor/shell.py", "from venues.binance.session import plan_links\n", True),
        ("processor/core.py", "from venues import alpaca\n", True),
        ("trader/owner.py", "def f():\n    import venues.alpaca.rest as rest\n", True),
        ("dashboard/app.py", "from venues.binance import wire as binance\n", True),
        ("common/settings.py", "from trader.core import build_intent\n", True),
        ("common/names.py", "from venues.registry import venue\n", True),
        ("venues/alpaca/adapter.py", "from ingestor.adapter import Step\n", True),
        ("venues/binance/orders.py", "from ..alpaca import wire\nfrom trader import core\n", True),
        ("venues/registry.py", "from processor.records import VenueStatus\n", True),
        ("trader/owner.py", "from tickpipe.processor.core import process_batch\n", True),
        ("ingestor/shell.py", "import tickpipe.trader.control\n", True),
        ("processor/shell.py", "from tickpipe.tools.ops import tail\n", True),
        ("common/stage.py", "from tickpipe.tools import supervisor\n", True),
        ("trader/owner.py", "from tickpipe.venues.binance import wire\n", True),
        ("trader/shell.py", "from tickpipe.common.names import Keys\n", False),
        ("trader/shell.py", "from trader import owner\n", False),
        ("ingestor/shell.py", "from venues.registry import venue\n", False),
        ("trader/shell.py", "from venues import registry\n", False),
        (
            "venues/registry.py",
            "from venues.binance import session\nfrom common import names\n",
            False,
        ),
        ("venues/alpaca/rest.py", "from common.errors import VenueError\n", False),
        ("mock_ws/alpaca/server.py", "from venues.alpaca.wire import parse_trade\n", False),
    ],
)
def test_a_tree_that_breaks_a_rule_is_caught(
    tmp_path: Path, rel: str, text: str, broken: bool
) -> None:
    root = _tree(tmp_path, {rel: text, "venues/binance/wire.py": "", "common/errors.py": ""})
    found = violations(root)
    assert bool(found) is broken, found
    if broken:
        assert {module for module, _ in found} == {module_name(root, root / rel)}


def test_relative_imports_resolve_against_the_package(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"venues/binance/orders.py": "from ...trader import core\n"})
    assert imports_of(root, root / "venues/binance/orders.py") >= {"trader", "trader.core"}
