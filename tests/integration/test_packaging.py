"""The built wheel: one import root, a light core, and stages that run on the core alone."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: What ``pip install tickpipe`` brings without extras (see pyproject.toml for why each is core).
CORE = {"websockets", "redis", "msgpack", "python-dotenv", "orjson", "aiohttp", "cryptography"}
#: Packages only extras bring; the core must run without any of them.
EXTRA_ONLY = (
    "pandas", "pyarrow", "dash", "plotly", "flask", "prometheus_client", "uvloop", "picows",
)  # fmt: skip
#: Modules that need an extra (they are imported only when that feature is used).
NEEDS_EXTRA = ("tickpipe.dashboard", "tickpipe.tools.frames", "tickpipe.common.metrics")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the source (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "tickpipe", src / "tickpipe", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (built,) = out.glob("tickpipe-*.whl")
    return built


def _requirements(metadata: str) -> list[str]:
    message = email.parser.Parser().parsestr(metadata)
    return message.get_all("Requires-Dist") or []


def test_the_wheel_adds_tickpipe_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tops = {name.split("/")[0] for name in names}
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    (info,) = tops - {"tickpipe"}
    assert info.startswith("tickpipe-") and info.endswith(".dist-info")
    for package in ("common", "venues", "tools", "deploy"):
        assert f"tickpipe/{package}/__init__.py" in names, package
    for stage in ("ingestor", "processor", "trader", "mock_ws", "dashboard", "archive"):
        assert f"tickpipe/{stage}/__main__.py" in names, stage
    assert "tickpipe/py.typed" in names
    assert not [n for n in names if n.startswith(("tickpipe/tests", "tickpipe/bench"))]
    assert "tickpipe = tickpipe.tools.cli:main" in scripts


def test_the_core_dependencies_are_light_and_the_rest_are_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requirements = _requirements(archive.read(metadata).decode())
    core = {r.split(";")[0].split(">")[0].split("[")[0].strip() for r in requirements
            if "extra ==" not in r}  # fmt: skip
    assert core == CORE
    extras = {r.split("extra ==")[1].strip().strip("'\"") for r in requirements if "extra ==" in r}
    assert {"dashboard", "pandas", "parquet", "metrics", "dev", "fast"} <= extras


BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {blocked!r}
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (not in the core install)")
            return None
    sys.meta_path.insert(0, Block())
    """
)


def _core_only(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with every extra-only package unimportable, as on a core install."""
    script = BLOCKER.format(blocked=set(EXTRA_ONLY)) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
        cwd=REPO, env=env, check=False,
    )  # fmt: skip


def test_every_core_module_imports_without_the_extras() -> None:
    result = _core_only(
        f"""
        import importlib, pkgutil, tickpipe
        skip = {NEEDS_EXTRA!r}
        done = 0
        for info in pkgutil.walk_packages(tickpipe.__path__, "tickpipe."):
            if info.name.startswith(skip) or info.name.endswith(".__main__"):
                continue
            importlib.import_module(info.name)
            done += 1
        print(done)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 100  # the walk found the packages


@pytest.mark.parametrize(
    "module", ["tickpipe", "tickpipe.ingestor", "tickpipe.processor", "tickpipe.trader",
               "tickpipe.mock_ws"],
)  # fmt: skip
def test_each_stage_runs_as_python_m_tickpipe_stage_on_the_core(module: str) -> None:
    result = _core_only(
        f"""
        import runpy, sys
        sys.argv = [{module!r}, "--help"]
        runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
        """
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage" in result.stdout.lower()


def test_a_feature_whose_extra_is_missing_says_which_extra() -> None:
    result = _core_only(
        """
        import runpy, sys
        sys.argv = ["tickpipe", "dashboard", "--help"]
        runpy.run_module("tickpipe.dashboard", run_name="__main__", alter_sys=True)
        """
    )
    assert result.returncode == 2
    assert "tickpipe[dashboard]" in result.stderr
    assert "Traceback" not in result.stderr
