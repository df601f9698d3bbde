"""Optional features and the extra that brings each (``pip install 'tickpipe[EXTRA]'``).

The core install runs the stages, the mock exchange and the command line. The dashboard, the
DataFrame readers, Parquet export and Prometheus metrics need packages the core does not bring;
their modules are imported only when the feature is used, and a missing package is one line
naming the extra, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tickpipe.common.errors import ConfigError

__all__ = ["EXTRAS", "has_extra", "need"]

#: extra -> the top-level modules it must make importable
EXTRAS = {
    "dashboard": ("dash", "plotly"),
    "pandas": ("pandas",),
    "parquet": ("pandas", "pyarrow"),
    "metrics": ("prometheus_client",),
    "fast": ("uvloop", "picows"),
}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as missing
        return False


def has_extra(extra: str) -> bool:
    """Tell whether every package of ``extra`` is installed (without importing it)."""
    return all(_installed(name) for name in EXTRAS[extra])


def need(extra: str, feature: str, module: str | None = None) -> ModuleType | None:
    """Fail with one line naming ``extra`` unless it is installed; import ``module`` if given."""
    if not has_extra(extra):
        missing = ", ".join(n for n in EXTRAS[extra] if not _installed(n))
        raise ConfigError(
            f"{feature} needs {missing}, which the core install does not bring: "
            f"pip install 'tickpipe[{extra}]'"
        )
    return importlib.import_module(module) if module is not None else None
